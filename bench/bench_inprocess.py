"""CPU per operation of the three write paths, in-process (no sockets, no HTTP), SQLite FULL.

    python bench/bench_inprocess.py create|mllp|ingest [--n N] [--database-url URL]

* create: `POST Patient` / `POST Encounter` (bench_create's bodies) through the route table, 8
  concurrent tasks (group commit as over HTTP);
* mllp: ADT^A01 messages for new people through the HL7 v2 pipeline, 8 concurrent tasks;
* ingest: a generated council CLD file of N rows through `gateway.pipeline.ingest` (bulk path).

Prints operations/s and CPU per operation from getrusage (user + system, every thread of the
process). On a shared VM wall-clock figures move by ±25 % between runs; for a comparison that does
not, count instructions with callgrind at two sizes and divide the difference by the extra
operations (start-up and warm-up cancel out), e.g.

    valgrind --tool=callgrind --callgrind-out-file=/tmp/a python bench/bench_inprocess.py mllp --n 200
    valgrind --tool=callgrind --callgrind-out-file=/tmp/b python bench/bench_inprocess.py mllp --n 600
    # (Ir of b - Ir of a) / 400 = instructions per message ("summary:" line of each file)

(`create` runs N warm-up creates before its N measured ones, so there the difference covers 2 × 400.)
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

CT = "application/fhir+json"


async def _context(url: str):
    from gateway.config import load_settings
    from gateway.fhir.context import GatewayContext
    from gateway.fhir.router import Router
    from gateway.startup import load_conformance_resources
    from gateway.store import open_store

    settings = load_settings(database_url=url, sqlite_synchronous="FULL")
    ctx = GatewayContext(settings=settings, store=open_store(settings))
    ctx.router = Router(ctx)
    await ctx.store.open()
    await load_conformance_resources(ctx)
    return ctx


async def _lanes(items: list, one, lanes: int = 8) -> None:
    async def lane(k: int) -> None:
        for item in items[k::lanes]:
            await one(item)

    await asyncio.gather(*(lane(k) for k in range(lanes)))


async def run(what: str, n: int, url: str) -> tuple[int, float, float]:
    """(operations, seconds, CPU seconds) of the measured part."""
    ctx = await _context(url)
    try:
        if what == "create":
            from bench_create import bodies
            from gateway.fhir.request import FhirRequest
            from gateway.formats import parse_body

            items = bodies()

            async def op(item) -> None:
                rtype, raw = item
                req = FhirRequest("POST", rtype, [], {"content-type": CT}, body=parse_body(CT, raw),
                                  content_type=CT, base_url="http://127.0.0.1/fhir")
                resp = await ctx.router.dispatch(req)
                assert resp.status == 201, resp.status
                resp.json_bytes()

            work = [items[i % len(items)] for i in range(n)]
            await _lanes(work, op)  # warm-up: the same number again
        elif what == "mllp":
            from hl7_helpers import admit

            from gateway.pipeline.hl7v2 import Hl7v2Pipeline

            pipeline = Hl7v2Pipeline(ctx)

            async def op(raw: bytes) -> None:
                ack = await pipeline.receive(raw, "mllp")
                assert b"MSA|AA" in ack, ack

            await _lanes([admit(10**7 + i, control=f"W{i}") for i in range(300)], op)
            work = [admit(i, control=f"B{i}") for i in range(n)]
        else:
            from bench_ingest import generate

            from gateway.pipeline.ingest import ingest

            data = generate(n)
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            report = await ingest(ctx, "council", data, "bench.csv")
            assert not report.rejected, report.rejected[:3]
            return report.rows_read, time.perf_counter() - t0, _cpu(r0)
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        await _lanes(work, op)
        return n, time.perf_counter() - t0, _cpu(r0)
    finally:
        await ctx.store.close()


def _cpu(before) -> float:
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("create", "mllp", "ingest"))
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--database-url", default="")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-inprocess-"))
    url = args.database_url or f"sqlite:///{tmp / 'gw.db'}"
    if url.startswith("postgres"):
        from _common import drop_pg_schemas

        asyncio.run(drop_pg_schemas([url]))
    ops, seconds, cpu = asyncio.run(run(args.what, args.n, url))
    if url.startswith("postgres"):
        asyncio.run(drop_pg_schemas([url]))
    unit = {"create": "creates", "mllp": "messages", "ingest": "rows"}[args.what]
    print(f"{args.what}: {ops} {unit} in {seconds:.2f} s = {ops / seconds:,.0f} {unit}/s; "
          f"CPU {cpu / ops * 1e6:,.0f} µs per {unit[:-1]} (this process, all threads)")


if __name__ == "__main__":
    main()
