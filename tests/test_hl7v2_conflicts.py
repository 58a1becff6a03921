"""An HL7 message whose transaction PostgreSQL picks as a deadlock victim is applied once more.

A real deadlock between two messages cannot be staged on demand (one patient's messages take
the patient's lock first, and conditional entries lock in sorted order), so the store's refusal is
injected: the first attempt at writing raises the error asyncpg raises for a deadlock (SQLSTATE
40P01) inside the write session, which rolls that attempt back like PostgreSQL would. The
pipeline, store and mapping are the real ones, on a real SQLite store.
"""

from __future__ import annotations

import orjson
import pytest

from gateway.config import load_settings
from gateway.fhir.context import GatewayContext
from gateway.fhir.router import Router
from gateway.pipeline.hl7v2 import Hl7v2Pipeline
from gateway.startup import load_conformance_resources
from gateway.store import open_store
from hl7_helpers import ack_code, admit


class DeadlockDetected(Exception):
    sqlstate = "40P01"  # what asyncpg's DeadlockDetectedError carries


@pytest.fixture
async def pipeline(tmp_path):
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'gw.db'}")
    ctx = GatewayContext(settings=settings, store=open_store(settings))
    ctx.router = Router(ctx)
    await ctx.store.open()
    await load_conformance_resources(ctx)
    yield Hl7v2Pipeline(ctx)
    await ctx.store.close()


def _fail_writes(monkeypatch, pipeline: Hl7v2Pipeline, times: int) -> list[int]:
    """The first `times` attempts at `_process` write the Patient, then lose a 'deadlock'."""
    calls = []
    real = pipeline._process

    async def process(s, entry_id, msg, raw, replay=False):
        calls.append(entry_id)
        if len(calls) <= times:
            await s.create({"resourceType": "Patient", "name": [{"family": "HALF-WRITTEN"}]})
            raise DeadlockDetected("deadlock detected")
        return await real(s, entry_id, msg, raw, replay)

    monkeypatch.setattr(pipeline, "_process", process)
    return calls


async def _patients(pipeline: Hl7v2Pipeline) -> list[dict]:
    async with pipeline.ctx.store.session() as s:
        return [orjson.loads(r.content) for r in await s.changes_since(0, 10_000)
                if r.type == "Patient" and r.content is not None]


async def _inbox(pipeline: Hl7v2Pipeline) -> list[tuple[str, str]]:
    async with pipeline.ctx.store.session() as s:
        rows = await s.conn.fetch("SELECT control_id, status FROM inbox ORDER BY id")
    return [(r[0], r[1]) for r in rows]


async def test_a_message_that_loses_a_deadlock_is_applied_once_more(pipeline, monkeypatch):
    calls = _fail_writes(monkeypatch, pipeline, times=1)
    ack = await pipeline.receive(admit(1, control="DL1"), "mllp")
    assert ack_code(ack) == "AA"
    assert len(calls) == 2
    patients = await _patients(pipeline)
    assert [p["name"][0]["family"] for p in patients] == ["TESTER1"]  # the lost attempt left nothing
    assert await _inbox(pipeline) == [("DL1", "stored")]


async def test_a_message_that_loses_twice_is_kept_for_replay(pipeline, monkeypatch):
    calls = _fail_writes(monkeypatch, pipeline, times=2)
    ack = await pipeline.receive(admit(2, control="DL2"), "mllp")
    assert ack_code(ack) == "AE"
    assert len(calls) == 2  # once more, not forever
    assert await _patients(pipeline) == []
    assert await _inbox(pipeline) == [("DL2", "failed")]
    monkeypatch.undo()
    entry_id = (await _inbox_ids(pipeline))[0]
    assert await pipeline.replay(entry_id) == "stored"
    assert [p["name"][0]["family"] for p in await _patients(pipeline)] == ["TESTER2"]


async def _inbox_ids(pipeline: Hl7v2Pipeline) -> list[int]:
    async with pipeline.ctx.store.session() as s:
        return [r[0] for r in await s.conn.fetch("SELECT id FROM inbox ORDER BY id")]
