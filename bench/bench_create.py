"""Creates/s over HTTP with validation, one worker, SQLite, beside two ceilings measured in the same run.

    python bench/bench_create.py [--seconds 10] [--connections 8,16] [--modes FULL,NORMAL]

Gateway: `POST /fhir/Patient` and `POST /fhir/Encounter` alternately, with realistic UK Core bodies
(50 distinct of each), through the full path (parse, structural validation, index extraction, two
resource rows + index rows, commit per request), served by uvicorn (one worker, no access log)
pinned to CPU 0; wrk pinned to CPU 1. Run once per GATEWAY_SQLITE_SYNCHRONOUS mode.

Ceilings:
* raw SQLite: the same statements the store issues per create (change_seq bump, resource INSERT
  RETURNING pk, resource_version INSERT, executemany of the same index rows) with the same
  pre-serialised bytes, one BEGIN IMMEDIATE/COMMIT per create, same pragmas, in a tight loop;
  and the same with max(--connections) creates per COMMIT (what a group-committing store can reach);
* bare FastAPI: a POST endpoint that reads the body and echoes it back with 201, same uvicorn flags.
Also reported: the gateway's handler called in-process (`router.dispatch`, no HTTP), to split the
gap between HTTP/ASGI and the handler. Target: >= 1,500 creates/s over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from starlette.responses import Response  # noqa: E402

TARGET = 1500
CT = "application/fhir+json"


def _echo() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> Response:
        return Response(b"ok")

    @app.post("/fhir/{rtype}")
    async def create(rtype: str, request: Request) -> Response:
        body = await request.body()
        return Response(body, status_code=201, media_type=CT)

    return app


echo_app = _echo()


def bodies(n: int = 50) -> list[tuple[str, bytes]]:
    """Alternating (type, JSON bytes) Patient / Encounter create bodies."""
    import _data

    rng = random.Random(11)
    out = []
    for i in range(n):
        out.append(("Patient", orjson.dumps(_data.patient(i, rng))))
        out.append(("Encounter", orjson.dumps(_data.encounter(i, rng, _data.rid("Patient", i)))))
    return out


def raw_sqlite(path: str, synchronous: str, items: list[tuple[str, bytes]], seconds: float,
               per_commit: int = 1) -> float:
    """The store's per-create statements on pre-built rows, `per_commit` creates per transaction; creates/s."""
    from gateway.store.indexing import extract_index
    from gateway.store.sql import _INDEX_INSERT, now_us, with_meta
    from gateway.store.sqlite import SqliteStore, _connect
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Europe/London")
    store = SqliteStore(path, tz, synchronous)
    asyncio.run(store.open())
    asyncio.run(store.close())
    prepared = []
    for rtype, raw in items:
        rid = str(uuid.uuid4())
        body = with_meta(orjson.loads(raw), rid, 1, now_us())
        idx = extract_index(body, tz)
        prepared.append((rtype, orjson.dumps(body), [(t, rows) for t, rows in idx.items() if rows]))
    db = _connect(path, synchronous)
    n, i = 0, 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        rtype, content, idx = prepared[i % len(prepared)]
        i += 1
        rid = str(uuid.uuid4())
        ts = now_us()
        if n % per_commit == 0:
            db.execute("BEGIN IMMEDIATE")
        seq = db.execute("UPDATE change_seq SET n = n + 1 RETURNING n").fetchone()[0]
        pk = db.execute(
            "INSERT INTO resource (type, id, version, last_updated, deleted, seq, content) "
            "VALUES (?, ?, ?, ?, 0, ?, ?) RETURNING pk", (rtype, rid, 1, ts, seq, content)).fetchone()[0]
        db.execute(
            "INSERT INTO resource_version (seq, pk, type, id, version, last_updated, deleted, method, content) "
            "VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)", (seq, pk, rtype, rid, 1, ts, "POST", content))
        for table, rows in idx:
            db.executemany(_INDEX_INSERT[table], [(pk, rtype, *r) for r in rows])
        n += 1
        if n % per_commit == 0:
            db.execute("COMMIT")
    if n % per_commit:
        db.execute("COMMIT")
    rate = n / (time.perf_counter() - t0)
    db.close()
    return rate


async def in_process(path: str, synchronous: str, items: list[tuple[str, bytes]], seconds: float) -> float:
    """The gateway's create handler (parse + validate + store + commit) without HTTP; creates/s."""
    from gateway.config import load_settings
    from gateway.fhir.context import GatewayContext
    from gateway.fhir.request import FhirRequest
    from gateway.fhir.router import Router
    from gateway.formats import parse_body
    from gateway.store import open_store

    settings = load_settings(database_url=f"sqlite:///{path}", sqlite_synchronous=synchronous)
    store = open_store(settings)
    await store.open()
    ctx = GatewayContext(settings=settings, store=store)
    ctx.router = Router(ctx)
    n, i = 0, 0
    t0 = time.perf_counter()
    try:
        while time.perf_counter() - t0 < seconds:
            rtype, raw = items[i % len(items)]
            i += 1
            req = FhirRequest("POST", rtype, [], {"content-type": CT}, body=parse_body(CT, raw), content_type=CT,
                              base_url="http://127.0.0.1/fhir")
            resp = await ctx.router.dispatch(req)
            assert resp.status == 201, resp.status
            resp.json_bytes()
            n += 1
    finally:
        await store.close()
    return n / (time.perf_counter() - t0)


def _post(base: str, rtype: str, raw: bytes) -> int:
    req = urllib.request.Request(f"{base}/fhir/{rtype}", data=raw, method="POST", headers={"Content-Type": CT})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def main() -> None:
    from _common import free_port, machine_notes, note_contention, table, uvicorn_server, wrk

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--connections", default="8,16")
    ap.add_argument("--modes", default="FULL,NORMAL")
    args = ap.parse_args()
    items = bodies()
    reqs = [("POST", f"/fhir/{t}", raw.decode()) for t, raw in items]
    conns = [int(c) for c in args.connections.split(",")]
    avg = sum(len(r) for _, r in items) / len(items)
    print(f"bench_create: Patient/Encounter bodies avg {avg:.0f} bytes, {args.seconds:.0f}s per run; {machine_notes()}")
    work = Path(tempfile.mkdtemp(prefix="bench-create-"))
    hdrs = {"Content-Type": CT}

    port = free_port()
    with uvicorn_server("bench_create:echo_app", port, app_dir=str(Path(__file__).parent), name="echo",
                        ready_path="/health") as srv:
        note_contention("bare echo", {srv.proc.pid})
        wrk(srv.base, reqs, connections=max(conns), duration=2, headers=hdrs)
        echo = {c: wrk(srv.base, reqs, connections=c, duration=args.seconds, headers=hdrs) for c in conns}
    for c in conns:
        print(f"  bare FastAPI echo c={c}: {echo[c]['rps']:,.0f} req/s", flush=True)

    rows = []
    for mode in args.modes.split(","):
        mode = mode.strip().upper()
        note_contention(f"{mode} ceilings")
        raw_db = str(work / f"raw-{mode}.db")
        raw_rate = raw_sqlite(raw_db, mode, items, min(args.seconds, 5))
        print(f"  raw SQLite {mode}: {raw_rate:,.0f} creates/s", flush=True)
        group = max(conns)
        raw_group = raw_sqlite(str(work / f"rawg-{mode}.db"), mode, items, min(args.seconds, 5), per_commit=group)
        print(f"  raw SQLite {mode}, {group} creates per commit: {raw_group:,.0f} creates/s", flush=True)
        ip_rate = asyncio.run(in_process(str(work / f"inproc-{mode}.db"), mode, items, min(args.seconds, 5)))
        print(f"  gateway in-process {mode}: {ip_rate:,.0f} creates/s", flush=True)
        db = str(work / f"gw-{mode}.db")
        port = free_port()
        env = {"GATEWAY_DATABASE_URL": f"sqlite:///{db}", "GATEWAY_SQLITE_SYNCHRONOUS": mode,
               "GATEWAY_LOG_LEVEL": "warning"}
        with uvicorn_server("gateway.app:app_from_env", port, factory=True, env=env, name=f"gw-{mode}",
                            ready_path="/fhir/metadata") as srv:
            for t, raw in items[:2]:
                status = _post(srv.base, t, raw)
                assert status == 201, f"{t} create answered {status}"
            note_contention(f"gateway {mode}", {srv.proc.pid})
            wrk(srv.base, reqs, connections=max(conns), duration=2, headers=hdrs)
            for c in conns:
                r = wrk(srv.base, reqs, connections=c, duration=args.seconds, headers=hdrs)
                print(f"  gateway {mode} c={c}: {r['rps']:,.0f} creates/s, p50 {r['p50']:.1f} ms, "
                      f"p99 {r['p99']:.1f} ms, errors {r['errors']}", flush=True)
                rows.append([f"create {mode}, c={c}", f"{r['rps']:,.0f}", f"{raw_rate:,.0f}",
                             f"{r['rps'] / raw_rate:.0%}", f"{raw_group:,.0f}", f"{echo[c]['rps']:,.0f}", f"{r['rps'] / echo[c]['rps']:.0%}",
                             f"{ip_rate:,.0f}", f">= {TARGET:,}", "yes" if r["rps"] >= TARGET and not r["errors"] else "NO",
                             r["errors"]])
        for p in work.glob(f"*-{mode}.db*"):
            p.unlink()
    print()
    print(table(["benchmark", "gateway creates/s", "raw SQLite/s (commit each)", "gw/raw",
                 f"raw SQLite/s ({max(conns)} per commit)", "bare echo req/s", "gw/echo",
                 "gw in-process/s", "target", "met?", "errors"], rows))
    for p in work.iterdir():
        p.unlink()
    work.rmdir()


if __name__ == "__main__":
    main()
