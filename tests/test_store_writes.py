"""What one write leaves in the store, on both back ends (PostgreSQL writes a version in one
statement, SQLite in several): the current row, a version row, the change event, and exactly the
index rows of the current content."""

from __future__ import annotations

import pytest

from conftest import drop_pg_schema, pg_schema_url
from gateway.config import Settings
from gateway.store import open_store


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'g.db'}" if request.param == "sqlite" else pg_schema_url()
    s = open_store(Settings(database_url=url))
    await s.open()
    yield s
    await s.close()
    if request.param == "postgres":
        await drop_pg_schema(url)


async def _index(s, pk: int) -> set[tuple]:
    out = set()
    for table, cols in (("idx_string", "param, value_norm"), ("idx_token", "param, system, code"),
                        ("idx_reference", "param, target_type, target_id"), ("idx_date", "param, low, high")):
        for row in await s.conn.fetch(f"SELECT {cols} FROM {table} WHERE pk = ?", [pk]):
            out.add((table, *row))
    return out


async def test_create_then_update_keeps_only_the_current_index_rows(store):
    async with store.session(write=True) as s:
        first = (await s.create({
            "resourceType": "Encounter", "status": "in-progress", "class": {"code": "IMP"},
            "subject": {"reference": "Patient/p1"}, "period": {"start": "2026-04-01T08:15:00Z"},
            "identifier": [{"system": "urn:visit", "value": "V1"}]})).resource
    async with store.session() as s:
        made = await _index(s, first.pk)
    assert ("idx_token", "status", None, "in-progress") in made
    assert ("idx_token", "identifier", "urn:visit", "V1") in made
    assert ("idx_reference", "subject", "Patient", "p1") in made
    assert any(r[0] == "idx_date" and r[1] == "date" for r in made)

    async with store.session(write=True) as s:
        second = (await s.update({
            "resourceType": "Encounter", "status": "finished", "class": {"code": "IMP"},
            "subject": {"reference": "Patient/p2"}, "identifier": [{"system": "urn:visit", "value": "V1"}]},
            first.id)).resource
    assert (second.pk, second.version) == (first.pk, 2) and second.seq > first.seq
    async with store.session() as s:
        now = await _index(s, first.pk)
        assert ("idx_token", "status", None, "finished") in now
        assert ("idx_reference", "subject", "Patient", "p2") in now
        assert not [r for r in now if r in {("idx_token", "status", None, "in-progress"),
                                            ("idx_reference", "subject", "Patient", "p1")}]
        assert not [r for r in now if r[0] == "idx_date"]  # the period went with version 1
        assert len(now) == len({r for r in now})  # nothing doubled
        versions = await s.conn.fetch("SELECT version, method, seq FROM resource_version WHERE pk = ? ORDER BY version",
                                      [first.pk])
        assert [tuple(v) for v in versions] == [(1, "POST", first.seq), (2, "PUT", second.seq)]
        events = await s.conn.fetch("SELECT seq, version, method FROM outbox WHERE id = ? ORDER BY seq", [first.id])
        assert [tuple(e) for e in events] == [(first.seq, 1, "POST"), (second.seq, 2, "PUT")]
        row = await s.read("Encounter", first.id)
        assert row.version == 2 and b'"finished"' in row.content


async def test_a_failed_write_leaves_nothing(store):
    with pytest.raises(RuntimeError):
        async with store.session(write=True) as s:
            made = (await s.create({"resourceType": "Patient", "name": [{"family": "Rowan"}]})).resource
            raise RuntimeError("the rest of the message failed")
    async with store.session() as s:
        assert await s.read("Patient", made.id) is None
        assert await _index(s, made.pk) == set()
        assert await s.conn.fetch("SELECT seq FROM outbox WHERE id = ?", [made.id]) == []



async def test_delete_leaves_a_tombstone_and_no_index_rows(store):
    async with store.session(write=True) as s:
        made = (await s.create({"resourceType": "Patient", "name": [{"family": "Hazel"}], "gender": "female"})).resource
    async with store.session(write=True) as s:
        gone = await s.delete("Patient", made.id)
    assert gone.deleted and gone.version == 2
    async with store.session() as s:
        assert await _index(s, made.pk) == set()
        row = await s.read("Patient", made.id)
        assert row.deleted and row.content is None
        assert (await s.vread("Patient", made.id, 1)).content is not None  # history keeps version 1
        events = await s.conn.fetch("SELECT method FROM outbox WHERE id = ? ORDER BY seq", [made.id])
        assert [e[0] for e in events] == ["POST", "DELETE"]


async def test_server_assigned_ids_are_version_7_uuids_in_time_order(store):
    """Ids the server gives are valid FHIR ids, unique, and begin with the time of the create,
    so a later create's id sorts after an earlier one's (index pages fill at one end)."""
    import asyncio
    import re
    import uuid

    ids = []
    for _ in range(3):
        async with store.session(write=True) as s:
            ids += [(await s.create({"resourceType": "Patient", "active": True})).resource.id for _ in range(20)]
        await asyncio.sleep(0.002)  # the next batch starts in a later millisecond
    assert len(set(ids)) == 60
    assert all(re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", i) and uuid.UUID(i).version == 7 for i in ids)
    batches = [ids[0:20], ids[20:40], ids[40:60]]
    assert max(batches[0]) < min(batches[1]) and max(batches[1]) < min(batches[2])
