"""Paged search through the real stores, on SQLite and PostgreSQL: every match exactly once, in pk
order, with the right total, whichever filter the search starts from; paging while others write;
and a store made with schema version 1 upgrading when it is opened.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from conftest import PG_URL, drop_pg_schema
from test_search_sql import CASES, DELETED, RESOURCES, TZ, pairs

from gateway.config import load_settings
from gateway.store import open_store
from gateway.store.search_plan import search_page
from gateway.store.search_sql import compile_search

# `_lastUpdated` cases rely on fixed timestamps; the real store stamps writes with the clock.
PAGED_CASES = [c for c in CASES if "_lastUpdated" not in c[1]]


class Loop:
    """A store driven from synchronous tests by its own event loop."""

    def __init__(self, url: str):
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.store = open_store(load_settings(database_url=url))
        self.run(self.store.open())

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def close(self, drop: bool = True) -> None:
        self.run(self.store.close())
        if drop and self.url.startswith("postgresql"):
            self.run(drop_pg_schema(self.url))
        self.loop.close()


def new_url(backend: str, tmp_path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'{uuid.uuid4().hex[:8]}.db'}"
    return f"{PG_URL}?schema=paging_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def filled(request, tmp_path_factory):
    """The resources of test_search_sql, written through the store's own write path."""
    db = Loop(new_url(request.param, tmp_path_factory.mktemp("paging")))

    async def fill():
        async with db.store.session(write=True) as s:
            for res in RESOURCES:
                await s.create(dict(res), res["id"])
            for res in RESOURCES:
                if res["id"] in DELETED:
                    await s.delete(res["resourceType"], res["id"])

    db.run(fill())
    yield db
    db.close()


def walk(db: Loop, rtype: str, params: list, count: int, cap: int | None, index_total: bool = True):
    """Every page of a pk-ordered search: (ids in the order served, pks, totals of each page)."""
    compiled = compile_search(rtype, params, tz=TZ)

    async def go():
        got, pks, totals, after = [], [], [], None
        async with db.store.session() as s:
            for _ in range(100):
                page = await search_page(s, compiled, [], count, after, True, cap, index_total=index_total)
                got += [r.id for r in page.rows]
                pks += [r.pk for r in page.rows]
                totals.append(page.total)
                if page.next_after is None:
                    return got, pks, totals
                after = page.next_after
        raise AssertionError("paging did not end")

    return db.run(go())


@pytest.mark.parametrize("rtype,qs,expected", PAGED_CASES, ids=[f"{t}?{q}" for t, q, _ in PAGED_CASES])
def test_every_match_once_in_pk_order(filled, rtype, qs, expected):
    want = set(expected.split())
    for count in (1, 2, 20):
        got, pks, totals = walk(filled, rtype, pairs(qs), count, cap=None)
        assert sorted(got) == sorted(want), (count, got)  # none missing, none twice
        assert pks == sorted(pks)
        assert set(totals) == {len(want)}
        # a filtered caller's total is counted through `resource`: it must agree
        assert walk(filled, rtype, pairs(qs), count, cap=None, index_total=False)[2][0] == len(want)


def test_total_is_exact_up_to_the_cap_and_left_out_above(filled):
    params = [("gender", "male")]  # p1 only: p4 was deleted, so neither its rows nor its index count
    assert walk(filled, "Patient", params, 20, cap=1)[2] == [1]
    both = [("identifier", "9434765919,9000000009")]  # p1 and p2
    assert walk(filled, "Patient", both, 20, cap=2)[2] == [2]
    assert walk(filled, "Patient", both, 20, cap=1)[2] == [None]
    assert walk(filled, "Patient", both, 20, cap=1, index_total=False)[2] == [None]
    assert walk(filled, "Patient", both, 20, cap=2, index_total=False)[2] == [2]


def test_total_of_several_filters_is_exact_or_left_out(filled):
    """With several filters the default total may be left out, but is never a wrong number."""
    params = [("gender", "male,female"), ("family", "smith")]  # p1 (p3 has no gender, p4 deleted)
    for cap in (1, 2, 3, 100):
        totals = walk(filled, "Patient", params, 1, cap=cap)[2]
        assert totals[0] in (None, 1) and len(set(totals)) == 1
    assert walk(filled, "Patient", params, 1, cap=100)[2] == [1]


def test_several_filters_start_from_either(filled):
    """Two indexed filters: whichever the search starts from, the answer is their intersection."""
    got, _, totals = walk(filled, "Patient", [("gender", "male"), ("family", "smith")], 1, cap=None)
    assert got == ["p1"] and totals == [1]
    # e1 and e4 are finished, e1 is p1's; e1 and e3 are AMB, e3 cancelled
    got, _, totals = walk(filled, "Encounter", [("status", "finished"), ("subject", "Patient/p1")], 1, cap=None)
    assert got == ["e1"] and totals == [1]
    got, _, totals = walk(filled, "Encounter", [("class", "AMB"), ("status", "finished,cancelled")], 1, cap=None)
    assert got == ["e1", "e3"] and totals == [2, 2]
    got, _, totals = walk(filled, "Encounter", [("status", "finished"), ("status:not", "cancelled"),
                                                ("subject:Patient.family", "smith")], 1, cap=None)
    assert got == ["e1"] and totals == [1]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_paging_while_others_write_never_skips_or_repeats(backend, tmp_path):
    db = Loop(new_url(backend, tmp_path))
    tag = uuid.uuid4().hex[:8]

    def enc(status: str, n: int) -> dict:
        return {"resourceType": "Encounter", "status": status, "class": {"code": "HH"},
                "identifier": [{"system": "https://example.org/n", "value": f"{tag}-{n}"}],
                # the same code twice: two index rows for one resource (finished ones are visits)
                "type": [{"coding": [{"system": "https://example.org/t", "code": code}]}
                         for code in (["visit", "visit"] if status == "finished" else ["other"])]}

    async def write(fn):
        async with db.store.session(write=True) as s:
            return await fn(s)

    try:
        first = [db.run(write(lambda s, n=n: s.create(enc("finished" if n % 3 else "cancelled", n)))).resource
                 for n in range(30)]
        before = {r.id for n, r in enumerate(first) if n % 3}
        for params in ([("status", "finished")], [("type", "https://example.org/t|visit")],
                       [("type", "https://example.org/t|visit"), ("status", "finished")]):
            compiled = compile_search("Encounter", params, tz=TZ)
            seen: list[str] = []
            after, made, step = None, [], 0
            while True:
                async def page(after=after, compiled=compiled):
                    async with db.store.session() as s:
                        return await search_page(s, compiled, [], 4, after, False, None, index_total=True)

                p = db.run(page())
                seen += [r.id for r in p.rows]
                if p.next_after is None:
                    break
                after, step = p.next_after, step + 1
                # between pages: new matches, an update of a row already served, an update of one
                # not served yet, and a non-matching row
                made.append(db.run(write(lambda s, n=100 + step: s.create(enc("finished", n)))).resource.id)
                db.run(write(lambda s: s.create(enc("planned", 999))))
                served = next(r for r in first if r.id == seen[0])
                ahead = next((r for r in first[::-1] if r.id in before and r.id not in seen), None)
                for r in filter(None, (served, ahead)):
                    body = enc("finished", first.index(r))
                    db.run(write(lambda s, body=body, rid=r.id: s.update(body, rid)))
            assert len(seen) == len(set(seen)), "a row was served twice"
            assert before <= set(seen), "a row present throughout was skipped"
            assert set(seen) <= before | set(made)
            before |= set(made)  # they match the next round too
    finally:
        db.close()


# The index definitions of schema version 1, as stores made before version 2 have them.
V1_INDEXES = [
    "CREATE INDEX idx_token_lookup ON idx_token (type, param, code, system)",
    "CREATE INDEX idx_reference_lookup ON idx_reference (target_id, target_type, param, type)",
    "CREATE INDEX idx_reference_url ON idx_reference (type, param, target_url)",
    "CREATE INDEX idx_uri_lookup ON idx_uri (type, param, uri)",
]
V2_COLUMNS = {
    "idx_token_lookup": ["type", "param", "code", "pk", "system"],
    "idx_reference_lookup": ["target_id", "target_type", "param", "type", "pk"],
    "idx_reference_url": ["type", "param", "target_url", "pk"],
    "idx_uri_lookup": ["type", "param", "uri", "pk"],
}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_version_1_store_upgrades_on_open(backend, tmp_path):
    url = new_url(backend, tmp_path)
    db = Loop(url)
    pat = {"resourceType": "Patient", "identifier": [{"system": "https://example.org/id", "value": "v1"}]}
    enc = {"resourceType": "Encounter", "status": "finished", "subject": {"reference": "Patient/old"}}

    async def make_v1():
        async with db.store.session(write=True) as s:
            await s.create(pat, "old")
            await s.create(enc, "e-old")
            for stmt in V1_INDEXES:
                await s.conn.execute("DROP INDEX " + stmt.split()[2])
                await s.conn.execute(stmt)
            await s.conn.execute("UPDATE schema_info SET value = '1' WHERE name = 'version'")

    db.run(make_v1())
    db.close(drop=False)

    db = Loop(url)  # opening upgrades
    try:
        async def inspect():
            async with db.store.session() as s:
                version = (await s.conn.fetchrow("SELECT value FROM schema_info WHERE name = 'version'"))[0]
                if backend == "sqlite":
                    defs = await s.conn.fetch("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
                else:
                    defs = await s.conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()")
                found = {}
                for params, rtype in (([("identifier", "https://example.org/id|v1")], "Patient"),
                                      ([("subject", "Patient/old")], "Encounter"), ([("status", "finished")], "Encounter")):
                    page = await search_page(s, compile_search(rtype, params, tz=TZ), [], 20, None, True, 100,
                                             index_total=True)
                    found[params[0][0]] = ([r.id for r in page.rows], page.total)
                return version, {n: d for n, d in defs}, found

        version, defs, found = db.run(inspect())
        assert version == "2"
        for name, cols in V2_COLUMNS.items():  # pk right after the equality columns
            assert defs[name].replace('"', "").split("(", 1)[1].rstrip(")").split(", ") == cols, defs[name]
        assert found == {"identifier": (["old"], 1), "subject": (["e-old"], 1), "status": (["e-old"], 1)}
        # a later start changes nothing and keeps the version
        db.close(drop=False)
        db = Loop(url)
        assert db.run(_version(db)) == "2"
    finally:
        db.close()


async def _version(db: Loop) -> str:
    async with db.store.session() as s:
        return (await s.conn.fetchrow("SELECT value FROM schema_info WHERE name = 'version'"))[0]
