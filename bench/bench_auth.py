"""Read by id with token verification and audit on, beside the same reads with them off.

    python bench/bench_auth.py [--patients 1000] [--seconds 8] [--connections 1,8] [--rounds 2]

Three configurations of the same `gateway serve` (uvicorn, one worker, SQLite, pinned to CPU 0;
wrk on CPU 1, cycling through every patient id):

* off        - no clients file, GATEWAY_AUDIT=off (the loopback default);
* auth       - bearer token verified on every request (cached after the first check), SMART scope
               check, security-label filter (a partner without the R label), audit off;
* auth+audit - the same plus one AuditEvent per read, queued and written in batches.

The token comes from the gateway's own POST /auth/token (private_key_jwt). After the audited runs
the AuditEvents are counted, to show the queue kept up (written + dropped = reads).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import jwt  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from jwt.algorithms import ECAlgorithm  # noqa: E402

from bench_read import seed  # noqa: E402

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _client_setup(work: Path) -> tuple[Path, dict]:
    keys = {}
    clients = []
    for cid, scopes, labels, operator in (("partner", ["system/*.rs"], [], False),
                                          ("ops", ["system/*.rs", "system/AuditEvent.rs"], ["R", "V"], True)):
        key = ec.generate_private_key(ec.SECP384R1())
        jwk = {**json.loads(ECAlgorithm.to_jwk(key.public_key())), "kid": cid, "alg": "ES384"}
        keys[cid] = key
        clients.append({"client_id": cid, "organization": "X" + cid[:3].upper(), "scopes": scopes, "labels": labels,
                        "operator": operator, "jwks": {"keys": [jwk]}})
    path = work / "clients.json"
    path.write_text(json.dumps({"clients": clients}))
    return path, keys


def _token(origin: str, cid: str, key, scope: str) -> str:
    now = int(time.time())
    url = origin + "/auth/token"
    a = jwt.encode({"iss": cid, "sub": cid, "aud": url, "exp": now + 240, "jti": uuid.uuid4().hex}, key,
                   algorithm="ES384", headers={"kid": cid})
    r = httpx.post(url, data={"grant_type": "client_credentials", "scope": scope, "client_assertion_type": JWT_BEARER,
                              "client_assertion": a}, timeout=30)
    r.raise_for_status()
    return r.json()["access_token"]


def _audit_count(origin: str, token: str) -> int:
    r = httpx.get(origin + "/fhir/AuditEvent", params={"_summary": "count", "_total": "accurate"},
                  headers={"Authorization": f"Bearer {token}"}, timeout=60)
    return r.json()["total"]


def main() -> None:
    from _common import free_port, machine_notes, note_contention, table, uvicorn_server, wrk

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--connections", default="1,8")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-auth-"))
    db = str(work / "auth.db")
    ids = asyncio.run(seed(db, args.patients))
    clients_file, keys = _client_setup(work)
    reqs = [("GET", f"/fhir/Patient/{i}", None) for i in ids]
    conns = [int(c) for c in args.connections.split(",")]
    configs = {
        "off": {"GATEWAY_AUDIT": "off"},
        "auth": {"GATEWAY_CLIENTS_FILE": str(clients_file), "GATEWAY_AUDIT": "off"},
        "auth+audit": {"GATEWAY_CLIENTS_FILE": str(clients_file), "GATEWAY_AUDIT": "on"},
    }
    print(f"bench_auth: {args.patients} Patients, {args.seconds:.0f}s per run; {machine_notes()}")
    best: dict[tuple[str, int], dict] = {}
    audit_note = ""
    for rnd in range(args.rounds):
        for name, extra in configs.items():
            port = free_port()
            env = {"GATEWAY_DATABASE_URL": f"sqlite:///{db}", "GATEWAY_LOG_LEVEL": "warning",
                   "GATEWAY_DATA_DIR": str(work), "GATEWAY_PORT": str(port), **extra}
            srv = uvicorn_server("gateway.app:app_from_env", port, factory=True, name=f"gateway-{name}", env=env,
                                 ready_path="/fhir/metadata")
            with srv:
                headers = None
                if name != "off":
                    headers = {"Authorization": f"Bearer {_token(srv.base, 'partner', keys['partner'], 'system/*.rs')}"}
                before = _audit_count(srv.base, _token(srv.base, "ops", keys["ops"], "system/AuditEvent.rs")) \
                    if name == "auth+audit" else 0
                note_contention(f"round {rnd + 1} {name}", {srv.proc.pid})
                warm = wrk(srv.base, reqs, connections=max(conns), duration=2, headers=headers)
                total_reqs = warm["requests"]
                for c in conns:
                    r = wrk(srv.base, reqs, connections=c, duration=args.seconds, headers=headers)
                    total_reqs += r["requests"]
                    if r["errors"]:
                        print(f"  !! {name} c={c}: {r['errors']} errors")
                    print(f"  round {rnd + 1} {name:10s} c={c:<3d} {r['rps']:8,.0f} req/s  p50 {r['p50']:.2f} ms  "
                          f"p99 {r['p99']:.2f} ms", flush=True)
                    if (name, c) not in best or r["rps"] > best[(name, c)]["rps"]:
                        best[(name, c)] = r
                if name == "auth+audit":
                    time.sleep(3)  # let the writer drain
                    ops = _token(srv.base, "ops", keys["ops"], "system/AuditEvent.rs")
                    written = _audit_count(srv.base, ops) - before - 1  # less the count search itself
                    audit_note = (f"round {rnd + 1}: {total_reqs:,} audited reads (with the warm-up) -> "
                                  f"{written:,} AuditEvents written")
                    print("  " + audit_note, flush=True)
    rows = []
    for c in conns:
        off = best[("off", c)]
        for name in ("auth", "auth+audit"):
            r = best[(name, c)]
            rows.append([f"read by id, c={c}", name, f"{r['rps']:,.0f} req/s", f"{off['rps']:,.0f} req/s",
                         f"{r['rps'] / off['rps']:.0%}", f"{r['p50']:.2f}/{r['p99']:.2f}",
                         f"{off['p50']:.2f}/{off['p99']:.2f}"])
    print()
    print(table(["benchmark", "config", "with", "off", "ratio", "with p50/p99 ms", "off p50/p99 ms"], rows))
    if audit_note:
        print("\n" + audit_note)
    size = sqlite3.connect(db).execute("SELECT COUNT(*) FROM resource WHERE type = 'AuditEvent'").fetchone()[0]
    print(f"AuditEvents in the store at the end: {size:,}")


if __name__ == "__main__":
    main()
