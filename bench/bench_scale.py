"""Search and $everything latency on a large store, over HTTP, beside raw SQL fetching the same rows.

    python bench/bench_scale.py --size 1000000                  # SQLite and PostgreSQL
    python bench/bench_scale.py --size 20000 --backend sqlite   # quick run
    python bench/bench_scale.py --size 20000 --load-only --loader session   # the store's own write path

Steps, per back end:
1. Load N realistic resources (Patients, Encounters, Observations, Conditions, ServiceRequests,
   CarePlans, plus reference Organizations/Practitioners/Locations; patient 0 has 200 resources in
   its compartment). `--loader bulk` (default) writes exactly the rows the store writes (same
   `with_meta` content, `extract_index` rows, pk/seq numbering) with executemany (SQLite) or COPY
   (PostgreSQL), secondary indexes dropped during the load and rebuilt from the store's own DDL.
   `--loader session` goes through `store.session(write=True)` + `s.create()` in batches of 1000.
2. Ceiling: a hand-written SQL query (or three for $everything) returning the same resource
   bodies, timed in this process (sqlite3 / asyncpg), p50/p95 over the same parameter values.
3. Gateway in-process: `router.dispatch()` of the same request, no HTTP (attributes the gap).
4. Gateway over HTTP: `gateway serve` pinned to CPU 0, wrk with one connection pinned to CPU 1,
   p50/p95 from wrk's latency histogram.

PostgreSQL uses its own schema (`bench_scale_<pid>` unless --schema), dropped at the end unless --keep.
SQLite uses a file under --workdir (deleted at the end unless --keep).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402

import _data  # noqa: E402
from _common import free_port, gateway_serve, machine_notes, note_contention, percentiles, table, wrk  # noqa: E402
from gateway.config import load_settings  # noqa: E402
from gateway.fhir.search_parameters import PATIENT_COMPARTMENT  # noqa: E402
from gateway.store import open_store  # noqa: E402
from gateway.store.indexing import extract_index  # noqa: E402
from gateway.store.schema import INDEX_TABLES, ddl  # noqa: E402
from gateway.store.sql import with_meta  # noqa: E402

TZ = ZoneInfo("Europe/London")
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
IDX_COLS = {
    "idx_string": ("pk", "type", "param", "value_norm", "value_exact"),
    "idx_token": ("pk", "type", "param", "system", "code", "text_norm"),
    "idx_reference": ("pk", "type", "param", "target_type", "target_id", "target_url"),
    "idx_date": ("pk", "type", "param", "low", "high"),
    "idx_number": ("pk", "type", "param", "value", "system", "code"),
    "idx_uri": ("pk", "type", "param", "uri"),
}
RES_COLS = ("pk", "type", "id", "version", "last_updated", "deleted", "seq", "content")
VER_COLS = ("seq", "pk", "type", "id", "version", "last_updated", "deleted", "method", "content")


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------

def _rows(batch: list[tuple[str, str, dict]], pk0: int, ts0: int):
    """The resource, resource_version and idx_* rows the store writes for a batch of creates."""
    res, ver = [], []
    idx: dict[str, list[tuple]] = {t: [] for t in INDEX_TABLES}
    for k, (rtype, rid, resource) in enumerate(batch):
        pk = seq = pk0 + k
        ts = ts0 + pk * 1000
        body = with_meta(resource, rid, 1, ts)
        content = orjson.dumps(body)
        res.append((pk, rtype, rid, 1, ts, 0, seq, content))
        ver.append((seq, pk, rtype, rid, 1, ts, 0, "POST", content))
        for tbl, rows in extract_index(body, TZ).items():
            if rows:
                idx[tbl].extend((pk, rtype, *r) for r in rows)
    return res, ver, idx


def _batches(size: int, n: int):
    batch = []
    for item in _data.generate(size):
        batch.append(item)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def _ts0(size: int) -> int:
    return (time.time_ns() // 1_000_000 - size - 10) * 1000  # all in the past, ms resolution


def load_sqlite_bulk(path: str, size: int, progress: bool = True) -> dict:
    settings = load_settings(database_url=f"sqlite:///{path}")
    store = open_store(settings)
    asyncio.run(store.open())  # the store's own DDL
    asyncio.run(store.close())
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-1048576")
    secondary = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index' AND sql IS NOT NULL")]
    for name in secondary:
        db.execute(f"DROP INDEX {name}")
    pk0 = (db.execute("SELECT COALESCE(MAX(pk), 0) FROM resource").fetchone()[0] or 0) + 1
    seq0 = db.execute("SELECT n FROM change_seq").fetchone()[0] + 1
    pk0 = max(pk0, seq0)
    ts0 = _ts0(size)
    ins_res = f"INSERT INTO resource ({', '.join(RES_COLS)}) VALUES ({', '.join('?' * len(RES_COLS))})"
    ins_ver = f"INSERT INTO resource_version ({', '.join(VER_COLS)}) VALUES ({', '.join('?' * len(VER_COLS))})"
    ins_idx = {t: f"INSERT INTO {t} ({', '.join(c)}) VALUES ({', '.join('?' * len(c))})" for t, c in IDX_COLS.items()}
    t0 = time.perf_counter()
    done, n_idx, pk = 0, 0, pk0
    for batch in _batches(size, 5000):
        res, ver, idx = _rows(batch, pk, ts0)
        pk += len(batch)
        db.execute("BEGIN")
        db.executemany(ins_res, res)
        db.executemany(ins_ver, ver)
        for t, rows in idx.items():
            if rows:
                db.executemany(ins_idx[t], rows)
                n_idx += len(rows)
        db.execute("COMMIT")
        done += len(batch)
        if progress and done % 100_000 < 5000:
            print(f"  sqlite: {done:,} rows, {done / (time.perf_counter() - t0):,.0f}/s", flush=True)
    t_rows = time.perf_counter() - t0
    db.execute("BEGIN")
    for stmt in ddl("sqlite"):
        db.execute(stmt)  # CREATE INDEX IF NOT EXISTS ... exactly as the store declares them
    db.execute("UPDATE change_seq SET n = ?", (pk - 1,))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    total = time.perf_counter() - t0
    return {"resources": done, "index_rows": n_idx, "rows_s": t_rows, "total_s": total, "rate": done / total}


async def load_session(settings, size: int, progress: bool = True) -> dict:
    """Through the store's own write path: one write session per 1000 creates."""
    store = open_store(settings)
    await store.open()
    t0 = time.perf_counter()
    done = 0
    try:
        for batch in _batches(size, 1000):
            async with store.session(write=True) as s:
                for _, rid, resource in batch:
                    await s.create(resource, rid)
            done += len(batch)
            if progress and done % 100_000 < 1000:
                print(f"  session: {done:,} rows, {done / (time.perf_counter() - t0):,.0f}/s", flush=True)
    finally:
        await store.close()
    total = time.perf_counter() - t0
    return {"resources": done, "index_rows": None, "rows_s": total, "total_s": total, "rate": done / total}


def pg_url(base: str, schema: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}schema={schema}"


async def load_pg_bulk(base_url: str, schema: str, size: int, progress: bool = True) -> dict:
    import asyncpg

    settings = load_settings(database_url=pg_url(base_url, schema))
    store = open_store(settings)
    await store.open()  # creates the schema and the store's own DDL
    await store.close()
    conn = await asyncpg.connect(base_url, server_settings={"search_path": schema})
    try:
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SET maintenance_work_mem = '1GB'")
        secondary = await conn.fetch(
            "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "JOIN pg_namespace n ON n.oid = i.relnamespace WHERE n.nspname = $1 AND NOT x.indisprimary "
            "AND NOT x.indisunique", schema)
        for r in secondary:
            await conn.execute(f'DROP INDEX "{schema}"."{r[0]}"')
        pk0 = int(await conn.fetchval("SELECT COALESCE(MAX(pk), 0) FROM resource")) + 1
        seq0 = int(await conn.fetchval("SELECT last_value FROM change_seq")) + 1
        pk0 = max(pk0, seq0)
        ts0 = _ts0(size)
        t0 = time.perf_counter()
        done, n_idx, pk = 0, 0, pk0
        pending = None
        for batch in _batches(size, 5000):
            res, ver, idx = _rows(batch, pk, ts0)
            pk += len(batch)
            if pending is not None:
                await pending

            async def copy(res=res, ver=ver, idx=idx):
                async with conn.transaction():
                    await conn.copy_records_to_table("resource", records=res, columns=RES_COLS, schema_name=schema)
                    await conn.copy_records_to_table("resource_version", records=ver, columns=VER_COLS,
                                                     schema_name=schema)
                    for t, rows in idx.items():
                        if rows:
                            await conn.copy_records_to_table(t, records=rows, columns=IDX_COLS[t], schema_name=schema)

            pending = asyncio.ensure_future(copy())
            await asyncio.sleep(0)
            done += len(batch)
            n_idx += sum(len(v) for v in idx.values())
            if progress and done % 100_000 < 5000:
                print(f"  postgres: {done:,} rows, {done / (time.perf_counter() - t0):,.0f}/s", flush=True)
        if pending is not None:
            await pending
        t_rows = time.perf_counter() - t0
        for stmt in ddl("postgres"):
            if stmt.startswith("CREATE INDEX"):
                await conn.execute(stmt)
        await conn.execute("SELECT setval(pg_get_serial_sequence('resource', 'pk'), $1)", pk - 1)
        await conn.execute("SELECT setval('change_seq', $1)", pk - 1)
        # What autovacuum does after a load this size (PostgreSQL >= 13 also vacuums after
        # inserts): statistics, and the visibility map that lets index-only scans skip the heap.
        tables = [r[0] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)]
        for t in tables:
            await conn.execute(f'VACUUM ANALYZE "{schema}"."{t}"')
        total = time.perf_counter() - t0
    finally:
        await conn.close()
    return {"resources": done, "index_rows": n_idx, "rows_s": t_rows, "total_s": total, "rate": done / total}


async def drop_pg_schema(base_url: str, schema: str) -> None:
    from gateway.store.postgres import drop_schema

    await drop_schema(f"{base_url}{'&' if '?' in base_url else '?'}schema={schema}")


# --------------------------------------------------------------------------------------------
# queries
# --------------------------------------------------------------------------------------------

COMPARTMENT_PARAMS = sorted({p for ps in PATIENT_COMPARTMENT.values() for p in ps})
REFERENCED = ("Organization", "Practitioner", "PractitionerRole", "Location")


def _in(n: int) -> str:
    return ",".join("?" * n)


def queries(size: int) -> list[dict]:
    """Each: name, what it stresses, target p95 (ms), request paths, and per path the raw SQL steps."""
    counts = _data.plan(size)
    n_pat = counts["Patient"]
    typical = [1 + (k * 7919) % (n_pat - 1) for k in range(50)]
    big = _data.rid("Patient", 0)
    pcs = COMPARTMENT_PARAMS

    def everything(pid: str):
        return [
            ("one", "SELECT pk, content FROM resource WHERE type = 'Patient' AND id = ?", [pid]),
            ("pks", "SELECT DISTINCT r.pk, r.content FROM idx_reference x JOIN resource r ON r.pk = x.pk "
                    f"WHERE x.target_id = ? AND x.target_type = 'Patient' AND x.param IN ({_in(len(pcs))}) "
                    "AND r.deleted = 0 ORDER BY r.pk", [pid, *pcs]),
            ("refs", "SELECT DISTINCT r.pk, r.content FROM idx_reference x {cross} resource r "
                     "ON r.type = x.target_type AND r.id = x.target_id "
                     f"WHERE x.pk IN ({{pks}}) AND x.target_type IN ({_in(len(REFERENCED))}) AND r.deleted = 0",
             list(REFERENCED)),
        ]

    def first_page(rtype: str, table: str, conds: list[tuple[str, str]], count: int = 20):
        # The first page of matches straight off the token index. Equal keys sit in pk order (the
        # schema-2 index ends in pk; in a schema-1 store insertion order is pk order too), so these
        # are the rows (and the order) of the gateway's pk-ordered page; no total.
        cond = " AND ".join(f"i.{col} = ?" for col, _ in conds)
        return [("rows", f"SELECT r.content FROM {table} i {{cross}} resource r ON r.pk = i.pk "
                         f"WHERE i.type = ? AND {cond} AND r.deleted = 0 LIMIT {count + 1}",
                 [rtype, *[v for _, v in conds]])]

    def and_page(rtype: str, first: tuple[str, str], then: tuple[str, str], count: int = 20):
        # First page of an AND of two tokens: walk the first value's index entries (pk order) and
        # keep the rows that also hold the second
        return [("rows", f"SELECT r.content FROM idx_token i {{cross}} resource r ON r.pk = i.pk "
                         "WHERE i.type = ? AND i.param = ? AND i.code = ? AND r.deleted = 0 AND EXISTS "
                         "(SELECT 1 FROM idx_token j WHERE j.pk = i.pk AND j.param = ? AND j.code = ?) "
                         f"ORDER BY i.pk LIMIT {count + 1}", [rtype, *first, *then])]

    def ref_page(rtype: str, pid: str, count: int = 20):
        return [("rows", "SELECT r.content FROM idx_reference x JOIN resource r ON r.pk = x.pk "
                         "WHERE x.target_id = ? AND x.target_type = 'Patient' AND x.param = 'subject' "
                         f"AND x.type = ? AND r.deleted = 0 ORDER BY r.pk LIMIT {count + 1}", [pid, rtype])]

    def ident(n: int):
        return [("rows", "SELECT r.content FROM idx_token t JOIN resource r ON r.pk = t.pk WHERE t.type = 'Patient' "
                         "AND t.param = 'identifier' AND t.code = ? AND t.system = ? AND r.deleted = 0",
                 [_data.nhs_number(n), _data.NHS])]

    return [
        {"name": "$everything, 200-resource patient", "kind": "compartment of 201", "target": 30,
         "paths": [f"/fhir/Patient/{big}/$everything"], "raw": [everything(big)]},
        {"name": "$everything, typical patient", "kind": "compartment of ~9", "target": 30,
         "paths": [f"/fhir/Patient/{_data.rid('Patient', n)}/$everything" for n in typical],
         "raw": [everything(_data.rid("Patient", n)) for n in typical]},
        {"name": "Patient?identifier=nhs|value", "kind": "token, selective (1 row)", "target": 20,
         "paths": [f"/fhir/Patient?identifier={_data.NHS}|{_data.nhs_number(n)}" for n in typical],
         "raw": [ident(n) for n in typical]},
        {"name": "Encounter?status=finished&_count=20", "kind": "token, non-selective (~70% of Encounters)",
         "target": 20, "paths": ["/fhir/Encounter?status=finished&_count=20"],
         "raw": [first_page("Encounter", "idx_token", [("param", "status"), ("code", "finished")])]},
        {"name": "Encounter?status=finished&_count=20&_total=none", "kind": "same, no total",
         "target": 20, "paths": ["/fhir/Encounter?status=finished&_count=20&_total=none"],
         "raw": [first_page("Encounter", "idx_token", [("param", "status"), ("code", "finished")])]},
        {"name": "Observation?code=loinc|8867-4&_count=20", "kind": "token, medium (~10% of Observations)",
         "target": 20, "paths": [f"/fhir/Observation?code={_data.LOINC}|8867-4&_count=20"],
         "raw": [first_page("Observation", "idx_token",
                            [("param", "code"), ("system", _data.LOINC), ("code", "8867-4")])]},
        {"name": "Encounter?status=finished&class=IMP&_count=20", "kind": "two tokens ANDed (~17% of Encounters)",
         "target": 20, "paths": ["/fhir/Encounter?status=finished&class=IMP&_count=20"],
         "raw": [and_page("Encounter", ("status", "finished"), ("class", "IMP"))]},
        {"name": "Encounter?subject=Patient/x", "kind": "reference, selective (~2 rows)", "target": 20,
         "paths": [f"/fhir/Encounter?subject=Patient/{_data.rid('Patient', n)}" for n in typical],
         "raw": [ref_page("Encounter", _data.rid("Patient", n)) for n in typical]},
        {"name": "Observation?subject=Patient/big", "kind": "reference, 80 rows, first page 20", "target": 20,
         "paths": [f"/fhir/Observation?subject=Patient/{big}"], "raw": [ref_page("Observation", big)]},
    ]


def _pg_sql(sql: str) -> str:
    parts = sql.split("?")
    return parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], 1))


def _dialect(sql: str, sqlite: bool) -> str:
    # SQLite has no statistics in a store the gateway made (it never runs ANALYZE), so the ceiling
    # pins its join order (CROSS JOIN) and index choice (unary +) the way a DBA would.
    return sql.replace("{cross}", "CROSS JOIN" if sqlite else "JOIN").replace("{p}", "+" if sqlite else "")


def raw_sqlite(path: str, qs: list[dict], seconds: float) -> list[dict]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA cache_size=-65536")  # as the store's connections

    def run(steps) -> int:
        pks: list = []
        n = 0
        for label, sql, args in steps:
            if "{pks}" in sql:
                if not pks:
                    continue
                rows = db.execute(_dialect(sql.replace("{pks}", _in(len(pks))), True), [*pks, *args]).fetchall()
            else:
                rows = db.execute(_dialect(sql, True), args).fetchall()
            if label in ("one", "pks"):
                pks += [r[0] for r in rows]
            n += len(rows)
        return n

    out = []
    for q in qs:
        for steps in q["raw"][:3]:
            run(steps)  # warm
        samples, rows, deadline, i = [], 0, time.perf_counter() + seconds, 0
        while time.perf_counter() < deadline and len(samples) < 2000:
            steps = q["raw"][i % len(q["raw"])]
            t = time.perf_counter()
            rows = run(steps)
            samples.append(time.perf_counter() - t)
            i += 1
        out.append({**percentiles(samples), "rows": rows})
    db.close()
    return out


async def raw_pg(base_url: str, schema: str, qs: list[dict], seconds: float) -> list[dict]:
    import asyncpg

    conn = await asyncpg.connect(base_url, server_settings={"search_path": schema})

    async def run(steps) -> int:
        pks: list = []
        n = 0
        for label, sql, args in steps:
            if "{pks}" in sql:
                if not pks:
                    continue
                rows = await conn.fetch(_pg_sql(_dialect(sql.replace("{pks}", _in(len(pks))), False)), *pks, *args)
            else:
                rows = await conn.fetch(_pg_sql(_dialect(sql, False)), *args)
            if label in ("one", "pks"):
                pks += [r[0] for r in rows]
            n += len(rows)
        return n

    out = []
    try:
        for q in qs:
            for steps in q["raw"][:3]:
                await run(steps)
            samples, rows, deadline, i = [], 0, time.perf_counter() + seconds, 0
            while time.perf_counter() < deadline and len(samples) < 2000:
                steps = q["raw"][i % len(q["raw"])]
                t = time.perf_counter()
                rows = await run(steps)
                samples.append(time.perf_counter() - t)
                i += 1
            out.append({**percentiles(samples), "rows": rows})
    finally:
        await conn.close()
    return out


async def in_process(database_url: str, qs: list[dict], seconds: float) -> list[dict]:
    """The gateway's handler for the same request, called without HTTP."""
    from gateway.fhir.context import GatewayContext
    from gateway.fhir.request import FhirRequest
    from gateway.fhir.router import Router

    settings = load_settings(database_url=database_url)
    store = open_store(settings)
    await store.open()
    ctx = GatewayContext(settings=settings, store=store)
    ctx.router = Router(ctx)
    out = []
    try:
        for q in qs:
            reqs = [FhirRequest.from_url("GET", p.removeprefix("/fhir/"), base_url="http://127.0.0.1/fhir")
                    for p in q["paths"]]
            for r in reqs[:3]:
                await ctx.router.dispatch(r)
            samples, deadline, i, status = [], time.perf_counter() + seconds, 0, 200
            size = 0
            while time.perf_counter() < deadline and len(samples) < 2000:
                r = reqs[i % len(reqs)]
                r = FhirRequest(r.method, r.path, list(r.params), {}, base_url=r.base_url)
                t = time.perf_counter()
                resp = await ctx.router.dispatch(r)
                samples.append(time.perf_counter() - t)
                status = resp.status
                size = len(resp.json_bytes() or b"")
                i += 1
            out.append({**percentiles(samples), "status": status, "bytes": size})
    finally:
        await store.close()
    return out


def over_http(database_url: str, qs: list[dict], seconds: float) -> list[dict]:
    out = []
    port = free_port()
    with gateway_serve(port, database_url) as srv:
        for q in qs:
            reqs = [("GET", p, None) for p in q["paths"]]
            wrk(srv.base, reqs, connections=1, duration=2)  # warm
            r = wrk(srv.base, reqs, connections=1, duration=seconds)
            out.append(r)
    return out


def measure(label: str, database_url: str, qs: list[dict], seconds: float, raw) -> list[list]:
    note_contention(f"{label} measurements")
    print(f"[{label}] raw SQL ceiling ...", flush=True)
    ceil = raw()
    print(f"[{label}] gateway in-process ...", flush=True)
    inproc = asyncio.run(in_process(database_url, qs, min(seconds, 3)))
    print(f"[{label}] gateway over HTTP ...", flush=True)
    http = over_http(database_url, qs, seconds)
    rows = []
    for q, c, ip, h in zip(qs, ceil, inproc, http):
        ok = h["requests"] > 0 and h["errors"] == 0
        met = "yes" if ok and h["p95"] < q["target"] else "NO"
        if h["requests"] == 0:  # nothing finished within the run: slower than the run itself
            h = {**h, "p50": float("nan"), "p95": float("nan")}
        rows.append([label, q["name"], q["kind"], f"{h['p50']:.2f}", f"{h['p95']:.2f}", f"{ip['p50']:.2f}",
                     f"{ip['p95']:.2f}", f"{c['p50']:.2f}", f"{c['p95']:.2f}", f"{h['p95'] / max(c['p95'], 1e-6):.1f}x",
                     f"<{q['target']}", met, h["requests"], h["errors"]])
    return rows


HEAD = ["backend", "request", "selectivity", "HTTP p50", "HTTP p95", "in-proc p50", "in-proc p95", "raw SQL p50",
        "raw SQL p95", "HTTP/raw p95", "target p95 ms", "met?", "HTTP requests", "errors"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1_000_000, help="resources in the store (default 1,000,000)")
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--loader", choices=["bulk", "session"], default="bulk")
    ap.add_argument("--pg-url", default=PG_DEFAULT)
    ap.add_argument("--schema", default=None, help="PostgreSQL schema (default bench_scale_<pid>)")
    ap.add_argument("--workdir", default=None, help="folder for the SQLite file (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the SQLite file / PostgreSQL schema")
    ap.add_argument("--skip-load", action="store_true", help="reuse a kept store (same --size, --workdir/--schema)")
    ap.add_argument("--load-only", action="store_true")
    ap.add_argument("--seconds", type=float, default=8, help="wrk seconds per request kind")
    args = ap.parse_args()

    qs = queries(args.size)
    print(f"bench_scale: size={args.size:,} loader={args.loader}; {machine_notes()}")
    print("plan:", _data.plan(args.size))
    all_rows, loads = [], []
    if args.backend in ("sqlite", "both"):
        workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-scale-"))
        workdir.mkdir(parents=True, exist_ok=True)
        path = str(workdir / f"scale-{args.size}.db")
        url = f"sqlite:///{path}"
        try:
            if not args.skip_load:
                for suffix in ("", "-wal", "-shm"):
                    Path(path + suffix).unlink(missing_ok=True)
                print(f"[sqlite] loading {args.size:,} into {path} ...", flush=True)
                if args.loader == "bulk":
                    ld = load_sqlite_bulk(path, args.size)
                else:
                    ld = asyncio.run(load_session(load_settings(database_url=url, sqlite_synchronous="NORMAL"),
                                                  args.size))
                loads.append(["sqlite", args.loader, ld["resources"], ld["index_rows"], f"{ld['total_s']:.1f}",
                              f"{ld['rate']:,.0f}", f"{os.path.getsize(path) / 2**30:.2f} GiB"])
                print(f"[sqlite] loaded: {ld}", flush=True)
            if not args.load_only:
                rows = measure("sqlite", url, qs, args.seconds, lambda: raw_sqlite(path, qs, min(args.seconds, 3)))
                print(table(HEAD, rows), flush=True)
                all_rows += rows
        finally:
            if not args.keep:
                for suffix in ("", "-wal", "-shm"):
                    Path(path + suffix).unlink(missing_ok=True)
    if args.backend in ("postgres", "both"):
        schema = args.schema or f"bench_scale_{os.getpid()}"
        url = pg_url(args.pg_url, schema)
        try:
            if not args.skip_load:
                asyncio.run(drop_pg_schema(args.pg_url, schema))
                print(f"[postgres] loading {args.size:,} into schema {schema} ...", flush=True)
                if args.loader == "bulk":
                    ld = asyncio.run(load_pg_bulk(args.pg_url, schema, args.size))
                else:
                    ld = asyncio.run(load_session(load_settings(database_url=url), args.size))
                loads.append(["postgres", args.loader, ld["resources"], ld["index_rows"], f"{ld['total_s']:.1f}",
                              f"{ld['rate']:,.0f}", ""])
                print(f"[postgres] loaded: {ld}", flush=True)
            if not args.load_only:
                rows = measure("postgres", url, qs, args.seconds,
                               lambda: asyncio.run(raw_pg(args.pg_url, schema, qs, min(args.seconds, 3))))
                print(table(HEAD, rows), flush=True)
                all_rows += rows
        finally:
            if not args.keep:
                asyncio.run(drop_pg_schema(args.pg_url, schema))
    if loads:
        print()
        print(table(["backend", "loader", "resources", "index rows", "seconds", "resources/s", "file"], loads))
    if all_rows:
        print()
        print(table(HEAD, all_rows))


if __name__ == "__main__":
    main()
