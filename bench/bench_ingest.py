"""`gateway ingest council` throughput: rows/s for a generated CLD file of N rows.

Printed beside three ceilings from the same run: reading the CSV with the csv module (raw CSV
read); writing the same number of minimal resources straight through the store (store only,
minimal); and writing exactly the resources the ingest wrote (Provenance included) through the
store session into a fresh database, with no mapping, matching or validation (store only, same
resources): the floor any ingest that keeps index rows, versions and the outbox has to pay.

    python bench/bench_ingest.py [--rows 100000] [--database-url URL] [--row-by-row]

The generated people have distinct fixed-width surnames (`Holroyd042`); an earlier version used
`Holroyd42`, a prefix of ten other names, so every new person had hundreds of demographic
candidates sharing a birth date, which no council's file looks like.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from _common import drop_pg_schemas  # noqa: E402
from hl7_helpers import nhs_number  # noqa: E402

HEADER = (FIXTURE := ROOT / "tests/fixtures/council/cld_valid.csv").read_text(encoding="utf-8-sig").splitlines()[0]
TEMPLATE = FIXTURE.read_text(encoding="utf-8-sig").splitlines()[1:5]  # Request, Assessment, Service, Review


def _store(url: str):
    from gateway.config import load_settings
    from gateway.fhir.context import GatewayContext
    from gateway.fhir.router import Router
    from gateway.store import open_store

    settings = load_settings(database_url=url)
    ctx = GatewayContext(settings=settings, store=open_store(settings))
    ctx.router = Router(ctx)
    return ctx


def _fresh_url(url: str, tmp: Path, name: str) -> str:
    if url.startswith("sqlite"):
        return f"sqlite:///{tmp / (name + '.db')}"
    base, _, query = url.partition("?")
    schema = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("schema", "bench_ingest")
    return f"{base}?schema={schema}_{name}"


def generate(rows: int) -> bytes:
    out = [HEADER]
    people = rows // 4
    for p in range(people):
        nhs = nhs_number(p)
        spaced = f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"
        for line in TEMPLATE:
            out.append(line.replace("LA00012345", f"LA{p:08d}").replace("999 000 0107", spaced)
                       .replace("Holroyd", f"Holroyd{p % 997:03d}").replace("EP-2025-0042", f"EP-{p}")
                       .replace("REQ-7781", f"REQ-{p}").replace("ASM-3301", f"ASM-{p}")
                       .replace("SVC-9902", f"SVC-{p}").replace("REV-4410", f"REV-{p}"))
    return ("\n".join(out) + "\n").encode()


async def run(args) -> None:
    import orjson

    from gateway.pipeline.ingest import ingest
    from gateway.startup import load_conformance_resources

    data = generate(args.rows)
    t0 = time.perf_counter()
    n = sum(1 for _ in csv.reader(io.StringIO(data.decode()))) - 1
    raw_rate = n / (time.perf_counter() - t0)

    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    url = _fresh_url(args.database_url, tmp, "ingest") if args.database_url else f"sqlite:///{tmp / 'gw.db'}"
    await drop_pg_schemas([url, _fresh_url(url, tmp, "floor")])  # a kept schema would make it a reload
    ctx = _store(url)
    await ctx.store.open()
    await load_conformance_resources(ctx)
    async with ctx.store.session() as s:
        start_seq = max([0] + [r.seq for r in await s.changes_since(0, 1_000_000)])
    t0 = time.perf_counter()
    report = await ingest(ctx, "council", data, "bench.csv", bulk=not args.row_by_row)
    elapsed = time.perf_counter() - t0
    created = report.created + report.updated
    assert not report.rejected, report.rejected[:3]
    written: list[dict] = []
    async with ctx.store.session() as s:
        after = start_seq
        while batch := await s.changes_since(after, 5000):
            written += [orjson.loads(r.content) for r in batch if r.content is not None]
            after = batch[-1].seq
    t0 = time.perf_counter()
    report2 = await ingest(ctx, "council", data, "bench.csv", bulk=not args.row_by_row)
    reload_rate = report2.rows_read / (time.perf_counter() - t0)
    assert report2.created + report2.updated == 0
    # store only, minimal: the same number of resources (Provenance not counted), tiny bodies
    t0 = time.perf_counter()
    left = created
    while left > 0:
        async with ctx.store.session(write=True) as s:
            for _ in range(min(800, left)):
                await s.create({"resourceType": "Basic", "code": {"text": "x"}})
                left -= 1
    store_rate = created / (time.perf_counter() - t0)
    await ctx.store.close()
    # store only, same resources: everything the ingest wrote, into a fresh database
    floor = _store(_fresh_url(url, tmp, "floor"))
    await floor.store.open()
    t0 = time.perf_counter()
    for i in range(0, len(written), 3000):
        async with floor.store.session(write=True) as s:
            for res in written[i:i + 3000]:
                await s.create(res, res["id"])
    floor_rate = report.rows_read / (time.perf_counter() - t0)
    await floor.store.close()
    await drop_pg_schemas([url, _fresh_url(url, tmp, "floor")])  # leave no bench schemas behind

    rate = report.rows_read / elapsed
    minimal = store_rate * report.rows_read / created
    print(f"backend={'postgres' if url.startswith('postgres') else 'sqlite'} rows={report.rows_read} "
          f"path={'row by row (transactions)' if args.row_by_row else 'bulk'} resources written={len(written)} "
          f"({created} + {len(written) - created} Provenance)")
    print(f"{'gateway ingest council':34s} {rate:10.0f} rows/s   ({elapsed:.1f} s)")
    print(f"{'reload of the same file (no-op)':34s} {reload_rate:10.0f} rows/s")
    print(f"{'ceiling: raw CSV read':34s} {raw_rate:10.0f} rows/s   (ingest is {rate / raw_rate:.2%})")
    print(f"{'ceiling: store only, minimal':34s} {minimal:10.0f} rows/s   "
          f"({store_rate:.0f} resources/s; ingest is {rate / minimal:.1%})")
    print(f"{'ceiling: store only, same resources':34s} {floor_rate:10.0f} rows/s   "
          f"({floor_rate * len(written) / report.rows_read:.0f} resources/s; ingest is {rate / floor_rate:.1%})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--row-by-row", action="store_true", help="the transaction path (before the bulk path)")
    asyncio.run(run(ap.parse_args()))
