"""`gateway ingest council` throughput: rows/s for a generated CLD file of N rows.

Printed beside two ceilings from the same run: reading the CSV with the csv module (raw CSV
read), and writing the same number of resources straight through the store (store only).

    python bench/bench_ingest.py [--rows 100000] [--database-url URL]
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

from hl7_helpers import nhs_number  # noqa: E402

HEADER = (FIXTURE := ROOT / "tests/fixtures/council/cld_valid.csv").read_text(encoding="utf-8-sig").splitlines()[0]
TEMPLATE = FIXTURE.read_text(encoding="utf-8-sig").splitlines()[1:5]  # Request, Assessment, Service, Review


def generate(rows: int) -> bytes:
    out = [HEADER]
    people = rows // 4
    for p in range(people):
        nhs = nhs_number(p)
        spaced = f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"
        for line in TEMPLATE:
            out.append(line.replace("LA00012345", f"LA{p:08d}").replace("999 000 0107", spaced)
                       .replace("Holroyd", f"Holroyd{p % 997}").replace("EP-2025-0042", f"EP-{p}")
                       .replace("REQ-7781", f"REQ-{p}").replace("ASM-3301", f"ASM-{p}")
                       .replace("SVC-9902", f"SVC-{p}").replace("REV-4410", f"REV-{p}"))
    return ("\n".join(out) + "\n").encode()


async def run(args) -> None:
    from gateway.config import load_settings
    from gateway.fhir.context import GatewayContext
    from gateway.fhir.router import Router
    from gateway.pipeline.ingest import ingest
    from gateway.startup import load_conformance_resources
    from gateway.store import open_store

    data = generate(args.rows)
    t0 = time.perf_counter()
    n = sum(1 for _ in csv.reader(io.StringIO(data.decode())))
    raw_rate = n / (time.perf_counter() - t0)

    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    url = args.database_url or f"sqlite:///{tmp / 'gw.db'}"
    settings = load_settings(database_url=url)
    ctx = GatewayContext(settings=settings, store=open_store(settings))
    ctx.router = Router(ctx)
    await ctx.store.open()
    await load_conformance_resources(ctx)
    t0 = time.perf_counter()
    report = await ingest(ctx, "council", data, "bench.csv")
    elapsed = time.perf_counter() - t0
    created = report.created + report.updated
    assert not report.rejected, report.rejected[:3]
    # store-only ceiling: the same number of resources, minimal bodies, same session size
    t0 = time.perf_counter()
    left = created
    while left > 0:
        async with ctx.store.session(write=True) as s:
            for _ in range(min(800, left)):
                await s.create({"resourceType": "Basic", "code": {"text": "x"}})
                left -= 1
    store_rate = created / (time.perf_counter() - t0)
    await ctx.store.close()
    rate = report.rows_read / elapsed
    print(f"backend={'postgres' if url.startswith('postgres') else 'sqlite'} rows={report.rows_read} "
          f"resources written={created}")
    print(f"{'gateway ingest council':28s} {rate:10.0f} rows/s")
    print(f"{'ceiling: raw CSV read':28s} {raw_rate:10.0f} rows/s   (ingest is {rate / raw_rate:.2%})")
    print(f"{'ceiling: store only':28s} {store_rate * report.rows_read / created:10.0f} rows/s   "
          f"({store_rate:.0f} resources/s; ingest is {rate / (store_rate * report.rows_read / created):.1%})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--database-url", default="")
    asyncio.run(run(ap.parse_args()))
