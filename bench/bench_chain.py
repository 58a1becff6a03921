"""Chained search (`Encounter?subject:Patient.family=x`) in-process, beside a hand-written ceiling.

    python bench/bench_chain.py [--patients 10000] [--database-url postgresql://...?schema=bench_chain]

Loads N patients (every tenth named Smith, the others Fam<i>), each with one Encounter (two thirds
finished), through the store's session API; then times the gateway's search handler (first page
with its total, best of 5) and, as the ceiling, one hand-written SQL statement that finds the same
first page from the index tables (name index → patient → reference index). On PostgreSQL the
tables are ANALYZEd after loading, as autovacuum would.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUERIES = [
    ("subject.name=smith", "smith"),
    ("subject:Patient.family=fam123", "fam123"),
    ("subject:Patient.identifier=https://fhir.nhs.uk/Id/nhs-number|9000000500", None),
    ("subject:Patient.family=smith&status=finished", None),
]

CEILING = """SELECT x.pk FROM idx_string s JOIN resource t ON t.pk = s.pk
 JOIN idx_reference x ON x.target_id = t.id AND x.target_type = 'Patient' AND x.param = 'subject' AND x.type = 'Encounter'
 WHERE s.type = 'Patient' AND s.param = ? AND s.value_norm >= ? AND s.value_norm < ? ORDER BY x.pk LIMIT 21"""


async def main() -> None:
    from gateway.config import load_settings
    from gateway.fhir.context import GatewayContext
    from gateway.fhir.request import FhirRequest
    from gateway.fhir.router import Router
    from gateway.store import open_store

    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--database-url", default="")
    args = ap.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp(prefix='bench-chain-')}/chain.db"
    settings = load_settings(database_url=url, sqlite_synchronous="OFF", profile_policy="off")
    store = open_store(settings)
    await store.open()
    ctx = GatewayContext(settings=settings, store=store)
    ctx.router = Router(ctx)
    t0 = time.perf_counter()
    for start in range(0, args.patients, 500):
        async with store.session(write=True) as s:
            for i in range(start, min(args.patients, start + 500)):
                family = "Smith" if i % 10 == 0 else f"Fam{i}"
                p = (await s.create({"resourceType": "Patient", "name": [{"family": family, "given": ["A"]}],
                                     "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number",
                                                     "value": f"9{i:09d}"}]})).resource
                await s.create({"resourceType": "Encounter", "status": "finished" if i % 3 else "in-progress",
                                "class": {"code": "IMP"}, "subject": {"reference": f"Patient/{p.id}"}})
    print(f"loaded {args.patients} patients + encounters in {time.perf_counter() - t0:.1f} s ({store.dialect_name})")
    if store.dialect_name == "postgres":
        async with store.session(write=True) as s:
            for table in ("resource", "idx_string", "idx_token", "idx_reference"):
                await s.conn.execute(f"ANALYZE {table}")
    for query, prefix in QUERIES:
        params = [tuple(kv.split("=", 1)) for kv in query.split("&")]
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            resp = await ctx.router.dispatch(FhirRequest("GET", "Encounter", params, {}, base_url="http://x/fhir"))
            resp.json_bytes()
            best = min(best, time.perf_counter() - t)
        line = f"{best * 1000:9.2f} ms  Encounter?{query}"
        if prefix is not None:
            param = "name" if query.startswith("subject.name") else "family"
            ceiling = float("inf")
            async with store.session() as s:
                for _ in range(5):
                    t = time.perf_counter()
                    await s.conn.fetch(CEILING, [param, prefix, prefix + "\uffff"])
                    ceiling = min(ceiling, time.perf_counter() - t)
            line += f"   (ceiling, hand-written SQL: {ceiling * 1000:.2f} ms)"
        print(line)
    await store.close()
    if store.dialect_name == "postgres":
        from gateway.store.postgres import drop_schema

        await drop_schema(url)


if __name__ == "__main__":
    asyncio.run(main())
