"""The embedded store's commit protocol: acknowledged only once on disk, writes never wait for the disk.

With `synchronous=FULL` the writer runs SQLite at NORMAL and the store syncs the WAL file itself,
once per group of commits, in a thread (gateway/store/sqlite.py). These tests hold that sync at a
gate (the store's `sync_wal` hook, which normally is `os.fdatasync`) to see what a writer is told
while its commit is not yet on disk, and kill a real writer process to see what survives.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[1]
TZ = ZoneInfo("Europe/London")


class Gate:
    """A WAL sync that waits until opened, recording which file it was asked to sync."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.calls: list[int] = []
        self.fail: Exception | None = None

    def __call__(self, fd: int) -> None:
        self.calls.append(os.fstat(fd).st_ino)
        self.open.wait(10)
        if self.fail is not None:
            raise self.fail
        os.fsync(fd)


async def _write(store: SqliteStore, family: str) -> str:
    async with store.session(write=True) as s:
        result = await s.create({"resourceType": "Patient", "name": [{"family": family}]})
    return result.resource.id


@pytest.fixture
async def gated(tmp_path):
    """A FULL-durability store whose WAL syncs wait at a gate (opened at the end in any case)."""
    store = SqliteStore(str(tmp_path / "g.db"), TZ, "FULL")
    await store.open()
    gate = store.sync_wal = Gate()
    try:
        yield store, gate
    finally:
        gate.open.set()
        await store.close()


async def test_a_write_is_acknowledged_only_after_its_commit_is_synced(gated, tmp_path):
    store, gate = gated
    first = asyncio.create_task(_write(store, "Ash"))
    await asyncio.sleep(0.3)
    assert not first.done(), "acknowledged before the WAL was synced"
    assert gate.calls == [os.stat(str(tmp_path / "g.db-wal")).st_ino]  # the WAL itself is synced
    # Committed (other connections already see it), just not yet acknowledged.
    async with store.session() as s:
        assert [r.id for r in await s.find("r.type = ?", ["Patient"])] != []
    gate.open.set()
    rid = await asyncio.wait_for(first, 5)
    async with store.session() as s:
        assert (await s.read("Patient", rid)).version == 1


async def test_writers_go_on_while_the_disk_syncs_and_share_the_next_sync(gated):
    store, gate = gated
    first = asyncio.create_task(_write(store, "Birch"))
    while not gate.calls:
        await asyncio.sleep(0.01)
    # The first sync is stuck on the disk: later writers still run and write (into the transaction
    # that will commit once that sync is done, so their shared pages are written to the WAL once) ...
    later = [asyncio.create_task(_write(store, f"Cedar{i}")) for i in range(5)]
    for _ in range(100):
        written = store._writer.execute("SELECT COUNT(*) FROM resource WHERE type = 'Patient'").fetchone()[0]
        if written == 6:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("writers waited for the disk instead of writing")
    assert not any(t.done() for t in [first, *later])  # ... but nobody is told before a sync
    gate.open.set()
    await asyncio.wait_for(asyncio.gather(first, *later), 5)
    assert len(gate.calls) == 2  # one sync for the first commit, one for all five later ones
    async with store.session() as s:  # and all six are committed
        assert len(await s.find("r.type = ?", ["Patient"], limit=100)) == 6


async def test_a_failed_sync_is_reported_to_the_writer_not_acknowledged(gated):
    store, gate = gated
    gate.fail = OSError(5, "Input/output error")
    gate.open.set()
    with pytest.raises(OSError):
        await _write(store, "Elm")
    gate.fail = None  # the disk recovers: later writes are acknowledged again
    assert await _write(store, "Fir")


async def _failing_write(store: SqliteStore, family: str) -> None:
    async with store.session(write=True) as s:
        await s.create({"resourceType": "Patient", "name": [{"family": family}]})
        raise RuntimeError("the handler failed after writing")


async def _families(store: SqliteStore) -> list[str]:
    async with store.session() as s:
        rows = await s.find("r.type = ?", ["Patient"], limit=100)
    return sorted(json.loads(r.content)["name"][0]["family"] for r in rows)


async def test_a_failing_session_leaves_nothing_and_takes_nothing_with_it(gated):
    """Alone in its transaction, or behind sessions waiting there for their commit: a session
    that fails is undone entirely, and only it."""
    store, gate = gated
    with pytest.raises(RuntimeError):
        await _failing_write(store, "Alder")  # first in a fresh transaction
    gate.open.set()
    assert await _write(store, "Beech") and await _families(store) == ["Beech"]
    gate.open.clear()
    first = asyncio.create_task(_write(store, "Cherry"))
    while not gate.calls or len(gate.calls) < 2:  # Cherry's commit is waiting for its sync ...
        await asyncio.sleep(0.01)
    waiting = asyncio.create_task(_write(store, "Damson"))  # ... Damson joins the next transaction
    await asyncio.sleep(0.05)
    with pytest.raises(RuntimeError):
        await _failing_write(store, "Elder")  # fails behind Damson in the same transaction
    gate.open.set()
    await asyncio.wait_for(asyncio.gather(first, waiting), 5)
    assert await _families(store) == ["Beech", "Cherry", "Damson"]


async def test_a_session_alone_starts_its_own_transaction(gated):
    store, gate = gated
    first = asyncio.create_task(_write(store, "Fig"))
    while not gate.calls:
        await asyncio.sleep(0.01)
    joined = asyncio.create_task(_write(store, "Gean"))  # waits in the open transaction
    await asyncio.sleep(0.05)
    started = asyncio.Event()

    async def alone() -> None:
        async with store.session(write=True, alone=True) as s:
            started.set()
            await s.create({"resourceType": "Patient", "name": [{"family": "Holly"}]})

    chunk = asyncio.create_task(alone())
    await asyncio.sleep(0.1)
    assert not started.is_set()  # it waits for Gean's transaction to commit first
    gate.open.set()
    await asyncio.wait_for(asyncio.gather(first, joined, chunk), 5)
    assert await _families(store) == ["Fig", "Gean", "Holly"]


async def test_checkpoints_keep_the_wal_bounded(tmp_path, monkeypatch):
    import gateway.store.sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store, "CHECKPOINT_WAL_BYTES", 256 * 1024)
    path = tmp_path / "g.db"
    store = SqliteStore(str(path), TZ, "FULL")
    await store.open()
    try:
        ids = []
        for batch in range(40):
            ids += await asyncio.gather(*[_write(store, f"Gorse{batch}-{i}") for i in range(20)])
            if store._checkpointing is not None:
                await store._checkpointing
        assert path.stat().st_size > 256 * 1024  # pages were copied into the database file
        assert os.stat(str(path) + "-wal").st_size < 4 * 1024 * 1024  # and the WAL was reused
        async with store.session() as s:
            assert len(await s.find("r.type = ?", ["Patient"], limit=10_000)) == len(ids) == 800
    finally:
        await store.close()
    assert not Path(str(path) + "-wal").exists()  # a clean close leaves one self-contained file


async def test_a_steady_stream_of_writes_keeps_the_wal_bounded(tmp_path, monkeypatch):
    """Writers that never pause still let the WAL restart from its beginning after a checkpoint."""
    import gateway.store.sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store, "CHECKPOINT_WAL_BYTES", 256 * 1024)
    monkeypatch.setattr(sqlite_store, "WAL_KEEP_BYTES", 64 * 1024)
    path = tmp_path / "g.db"
    store = SqliteStore(str(path), TZ, "FULL")
    await store.open()
    wal = str(path) + "-wal"
    largest = 0

    async def writer(k: int) -> None:
        nonlocal largest
        for i in range(150):
            await _write(store, f"Hazel{k}-{i}")
            largest = max(largest, os.stat(wal).st_size)

    try:
        await asyncio.gather(*[writer(k) for k in range(8)])
        async with store.session() as s:
            assert len(await s.find("r.type = ?", ["Patient"], limit=10_000)) == 1200
    finally:
        await store.close()
    assert store.checkpoints >= 3  # the 1,200 writes filled the WAL several times over ...
    assert largest < 4 * 256 * 1024, f"the WAL grew to {largest:,} bytes"  # ... and it was reused


async def test_a_failing_checkpoint_never_leaves_a_writer_unanswered(tmp_path, monkeypatch):
    """Step 2 of a checkpoint runs inside a group commit: if it fails (here: its connection cannot
    be opened), the group's writes, already committed, are still acknowledged."""
    import sqlite3

    import gateway.store.sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store, "CHECKPOINT_WAL_BYTES", 128 * 1024)
    real_connect, opened = sqlite_store._connect, []

    def flaky_connect(*args, **kwargs):
        if kwargs.get("set_wal") is False:  # a checkpoint's connection: every second one fails
            opened.append(1)
            if len(opened) % 2 == 0:
                raise sqlite3.OperationalError("disk I/O error")
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(sqlite_store, "_connect", flaky_connect)
    store = SqliteStore(str(tmp_path / "g.db"), TZ, "FULL")
    await store.open()
    try:
        async def writer(k: int) -> None:
            for i in range(60):
                await _write(store, f"Medlar{k}-{i}")

        await asyncio.wait_for(asyncio.gather(*[writer(k) for k in range(8)]), 30)
        assert len(opened) >= 2  # step 2 was tried, and failed, at least once
        async with store.session() as s:
            assert len(await s.find("r.type = ?", ["Patient"], limit=10_000)) == 480
    finally:
        await store.close()


WRITER = textwrap.dedent("""
    import asyncio, sys
    from zoneinfo import ZoneInfo
    from gateway.store.sqlite import SqliteStore

    async def main():
        store = SqliteStore(sys.argv[1], ZoneInfo("Europe/London"), "FULL")
        await store.open()
        async def one(i):
            async with store.session(write=True) as s:
                r = await s.create({"resourceType": "Patient", "name": [{"family": f"Holly{i}"}]})
            print(r.resource.id, flush=True)  # acknowledged
        i = 0
        while True:
            await asyncio.gather(*[one(i + k) for k in range(8)])
            i += 8

    asyncio.run(main())
""")


def test_everything_acknowledged_survives_a_killed_writer(tmp_path):
    path = tmp_path / "g.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    acked = []
    try:
        while len(acked) < 400:
            line = proc.stdout.readline()
            assert line, "the writer died on its own"
            acked.append(line.strip())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    async def check():
        store = SqliteStore(str(path), TZ, "FULL")
        await store.open()
        try:
            async with store.session() as s:
                rows = await s.find("r.type = ?", ["Patient"], limit=100_000)
                assert {r.id for r in rows} >= set(acked)
                for r in rows:  # whatever else got in is whole: its version row and its index rows
                    assert (await s.vread("Patient", r.id, 1)) is not None
                    got = await s.conn.fetch("SELECT COUNT(*) FROM idx_string WHERE pk = ? AND param = 'family'", [r.pk])
                    assert got[0][0] == 1
        finally:
            await store.close()

    asyncio.run(check())


async def test_a_large_transaction_bundle_starts_a_transaction_of_its_own(gated, tmp_path):
    """More than ALONE_ENTRIES entries: the Bundle waits for the open transaction to commit rather
    than joining it under a savepoint (whose journal, in memory, would hold every page it touched)."""
    from gateway.config import Settings
    from gateway.fhir.bundles import ALONE_ENTRIES
    from gateway.fhir.context import GatewayContext
    from gateway.fhir.request import FhirRequest
    from gateway.fhir.router import Router

    store, gate = gated
    ctx = GatewayContext(settings=Settings(database_url=f"sqlite:///{tmp_path / 'g.db'}"), store=store)
    ctx.router = Router(ctx)
    first = asyncio.create_task(_write(store, "Ivy"))
    while not gate.calls:
        await asyncio.sleep(0.01)
    joined = asyncio.create_task(_write(store, "Juniper"))  # waits in the open transaction
    await asyncio.sleep(0.05)
    entries = [{"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}",
                "resource": {"resourceType": "Patient", "name": [{"family": f"Kale{i:02d}"}]},
                "request": {"method": "POST", "url": "Patient"}} for i in range(ALONE_ENTRIES + 1)]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    big = asyncio.create_task(ctx.router.dispatch(FhirRequest("POST", "", body=bundle)))
    await asyncio.sleep(0.2)
    written = store._writer.execute("SELECT COUNT(*) FROM resource WHERE type = 'Patient'").fetchone()[0]
    assert written == 2 and not big.done()  # Ivy and Juniper only: the Bundle has not begun
    gate.open.set()
    response = await asyncio.wait_for(big, 5)
    await asyncio.wait_for(asyncio.gather(first, joined), 5)
    assert response.status == 200
    assert len(await _families(store)) == 2 + ALONE_ENTRIES + 1


async def test_waiting_for_another_process_write_lock_leaves_the_event_loop_free(tmp_path):
    """With `--workers N` another process may hold the file's write lock; a session waiting for it
    must not stop this process's other requests (SQLite's own busy handler sleeps on the thread)."""
    import sqlite3
    import time as clock

    path = str(tmp_path / "g.db")
    store = SqliteStore(path, TZ, "FULL")
    await store.open()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)  # the other worker
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
    gaps: list[float] = []
    stop = asyncio.Event()

    async def other_requests() -> None:
        last = clock.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            gaps.append(clock.monotonic() - last)
            last = clock.monotonic()

    ticking = asyncio.create_task(other_requests())
    try:
        started = clock.monotonic()
        await asyncio.wait_for(_write(store, "Laurel"), 10)
        assert clock.monotonic() - started >= 0.4  # it did wait for the other writer ...
        stop.set()
        await ticking
        assert max(gaps) < 0.2, f"the event loop stalled for {max(gaps):.2f} s"  # ... without stalling
        assert await _families(store) == ["Laurel"]
    finally:
        stop.set()
        other.close()
        await store.close()
