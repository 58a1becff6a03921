"""Read by id over HTTP, one worker, SQLite: gateway vs a bare FastAPI app reading the same bytes.

    python bench/bench_read.py [--patients 1000] [--seconds 10] [--connections 1,8] [--rounds 2]

The store is seeded through the gateway's own session API. The ceiling is `bare_app` below: one
FastAPI endpoint that selects `content` by (type, id) from the same SQLite file with sqlite3 and
returns it. Both are run by uvicorn with identical flags (one worker, --no-access-log, the same
--loop/--http: uvloop/httptools only if both are installed, else asyncio/h11), pinned to CPU 0;
wrk (one thread) is pinned to CPU 1 and cycles through all patient ids. Target: gateway >= 70 %
of the bare app's requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi import FastAPI  # noqa: E402
from starlette.responses import Response  # noqa: E402

TARGET = 0.70


# --- the ceiling: a bare FastAPI app ------------------------------------------------------------

def _bare() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    path = os.environ.get("BENCH_READ_DB", ":memory:")
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA cache_size=-65536")  # as the gateway's connections

    @app.get("/health")
    async def health() -> Response:
        return Response(b"ok")

    @app.get("/fhir/Patient/{rid}")
    async def read(rid: str) -> Response:
        row = db.execute("SELECT content FROM resource WHERE type = ? AND id = ?", ("Patient", rid)).fetchone()
        if row is None:
            return Response(b"{}", status_code=404, media_type="application/fhir+json")
        return Response(row[0], media_type="application/fhir+json")

    return app


bare_app = _bare() if os.environ.get("BENCH_READ_DB") else None


# --- the run ------------------------------------------------------------------------------------

async def seed(path: str, n: int) -> list[str]:
    import _data
    from gateway.config import load_settings
    from gateway.store import open_store

    store = open_store(load_settings(database_url=f"sqlite:///{path}"))
    await store.open()
    rng = random.Random(7)
    ids = []
    try:
        async with store.session(write=True) as s:
            for i in range(n):
                res = await s.create(_data.patient(i, rng), _data.rid("Patient", i))
                ids.append(res.resource.id)
    finally:
        await store.close()
    return ids


def main() -> None:
    from _common import free_port, machine_notes, note_contention, table, uvicorn_server, wrk

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--connections", default="1,8")
    ap.add_argument("--rounds", type=int, default=2, help="alternate gateway/bare this many times; best round kept")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-read-"))
    db = str(work / "read.db")
    ids = asyncio.run(seed(db, args.patients))
    size = len(sqlite3.connect(db).execute("SELECT content FROM resource WHERE id = ?", (ids[0],)).fetchone()[0])
    reqs = [("GET", f"/fhir/Patient/{i}", None) for i in ids]
    conns = [int(c) for c in args.connections.split(",")]
    print(f"bench_read: {args.patients} Patients (~{size} bytes each), {args.seconds:.0f}s per run; {machine_notes()}")
    best: dict[tuple[str, int], dict] = {}
    for rnd in range(args.rounds):
        for name in ("gateway", "bare"):
            port = free_port()
            if name == "gateway":
                srv = uvicorn_server("gateway.app:app_from_env", port, factory=True, name="gateway",
                                     env={"GATEWAY_DATABASE_URL": f"sqlite:///{db}", "GATEWAY_LOG_LEVEL": "warning"},
                                     ready_path="/fhir/metadata")
            else:
                srv = uvicorn_server("bench_read:bare_app", port, app_dir=str(Path(__file__).parent), name="bare",
                                     env={"BENCH_READ_DB": db}, ready_path="/health")
            with srv:
                note_contention(f"round {rnd + 1} {name}", {srv.proc.pid})
                wrk(srv.base, reqs, connections=max(conns), duration=2)  # warm
                for c in conns:
                    r = wrk(srv.base, reqs, connections=c, duration=args.seconds)
                    if r["errors"]:
                        print(f"  !! {name} c={c}: {r['errors']} errors")
                    print(f"  round {rnd + 1} {name:7s} c={c:<3d} {r['rps']:8,.0f} req/s  p50 {r['p50']:.2f} ms  "
                          f"p99 {r['p99']:.2f} ms", flush=True)
                    k = (name, c)
                    if k not in best or r["rps"] > best[k]["rps"]:
                        best[k] = r
    rows = []
    for c in conns:
        g, b = best[("gateway", c)], best[("bare", c)]
        ratio = g["rps"] / b["rps"]
        rows.append([f"read by id, c={c}", f"{g['rps']:,.0f} req/s", f"{b['rps']:,.0f} req/s", f"{ratio:.0%}",
                     f">= {TARGET:.0%}", "yes" if ratio >= TARGET else "NO",
                     f"{g['p50']:.2f}/{g['p99']:.2f}", f"{b['p50']:.2f}/{b['p99']:.2f}"])
    print()
    print(table(["benchmark", "gateway", "bare FastAPI+sqlite3", "ratio", "target", "met?",
                 "gw p50/p99 ms", "bare p50/p99 ms"], rows))
    shutil.rmtree(work, ignore_errors=True)  # the store, its WAL and the events leader's lock file


if __name__ == "__main__":
    main()
