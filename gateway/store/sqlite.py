"""Embedded back end: one SQLite file in WAL mode.

sqlite3 calls are synchronous and short, so they run on the event loop thread; writers are
serialised by an asyncio lock in this process and by `BEGIN IMMEDIATE` (with a busy timeout)
across processes. Readers use their own connection and never wait for a writer (WAL).

Group commit, pipelined: an fsync can cost milliseconds, far more than a write. Write sessions
share a transaction: the first one opens it (and is undone by ROLLBACK if it fails), each later
one runs in a SAVEPOINT (undone alone; its statement journal stays in memory). The transaction is
committed once the WAL sync in flight, if any, is done, with every session that finished
meanwhile. With `synchronous=FULL` (the default) the
connection itself runs at NORMAL, so COMMIT only appends to the WAL, and the gateway syncs the WAL
file itself, in a thread, once for every commit made since the last sync. Writing goes on while
the disk syncs, so the event loop never idles waiting for the disk, and a session is told it is
done only when its commit is on disk: "stored before acknowledged" holds exactly as with FULL
(which syncs the WAL after each commit). NORMAL already makes checkpoints safe (WAL synced before,
database after); checkpoints run in a thread on their own connection, never on the event loop
(`_maybe_checkpoint` explains their two steps).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Iterable
from zoneinfo import ZoneInfo

from gateway.store.base import active_session, notify_listeners
from gateway.store.schema import INDEX_TABLES, SCHEMA_VERSION, ddl, migrations
from gateway.store.sql import SqlSession, VersionRow, write_version_statements

log = logging.getLogger("gateway.store")
# Checkpoint (copy WAL pages into the database file) once the WAL has grown past this.
CHECKPOINT_WAL_BYTES = 32 * 1024 * 1024
# A restarted WAL is cut back to this (journal_size_limit). Without a limit the file keeps its
# largest size, and its size, which decides when to checkpoint, would say "full" forever after.
WAL_KEEP_BYTES = 1024 * 1024


class _SqliteConn:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    async def fetch(self, sql: str, args: Iterable[Any] = ()) -> list[tuple]:
        return self.db.execute(sql, tuple(args)).fetchall()

    async def fetchrow(self, sql: str, args: Iterable[Any] = ()) -> tuple | None:
        return self.db.execute(sql, tuple(args)).fetchone()

    async def execute(self, sql: str, args: Iterable[Any] = ()) -> None:
        self.db.execute(sql, tuple(args))

    async def executemany(self, sql: str, rows: list[tuple]) -> None:
        self.db.executemany(sql, rows)


_CHAIN_TARGET = re.compile(r"(?<![+\w.])(t\d+)\.type = \? AND \1\.deleted = 0 AND \1\.pk IN \(SELECT")


class SqliteDialect:
    name = "sqlite"

    def __init__(self) -> None:
        # The last change number handed out in the open write transaction (None: not read yet).
        # Kept here and written back just before COMMIT: one statement per transaction instead
        # of one per write. Safe across processes: BEGIN IMMEDIATE holds the write lock until
        # then. A session undone by its savepoint leaves a gap, which nothing relies on.
        self.seq: int | None = None

    def steer(self, where: str) -> str:
        """Drive a search from its index subquery, not from the `type` index.

        A store that was never ANALYZEd gives SQLite no statistics, and it then prefers
        `resource (type, ...)`: reading every resource of the type (14 ms → 0.01 ms for an
        identifier search on a million resources). A unary `+` makes `r.type` unindexable for
        searches that have a positive index subquery to start from.
        """
        if where.startswith("r.type = ? AND r.deleted = 0 AND r.pk IN (SELECT"):
            where = "+" + where
        # The same for the target side of chained parameters (gateway/store/search_sql.py `_chain`)
        return _CHAIN_TARGET.sub(r"+\1.type = ? AND \1.deleted = 0 AND \1.pk IN (SELECT", where)

    def for_update(self, write: bool) -> str:
        return ""  # BEGIN IMMEDIATE already holds the write lock

    async def next_seq(self, conn: _SqliteConn) -> int:
        if self.seq is None:
            self.seq = (await conn.fetchrow("SELECT n FROM change_seq"))[0]
        self.seq += 1
        return self.seq

    def save_seq(self, db: sqlite3.Connection) -> None:
        """Before COMMIT: the change numbers handed out become the stored counter."""
        if self.seq is not None:
            db.execute("UPDATE change_seq SET n = ?", (self.seq,))
        self.seq = None

    async def lock(self, conn: _SqliteConn, key: str) -> None:
        return None  # one writer at a time already

    async def write_version(self, conn: _SqliteConn, row: VersionRow, index: dict[str, list[tuple]]) -> tuple[int, int]:
        return await write_version_statements(conn, self, row, index)  # in-process: a statement costs no round trip

    async def clear_index(self, conn: _SqliteConn, pk: int) -> None:
        for table in INDEX_TABLES:
            await conn.execute(f"DELETE FROM {table} WHERE pk = ?", (pk,))


def _set_wal(db: sqlite3.Connection, attempts: int = 300) -> None:
    """WAL mode. Two processes opening a new store at once (`--workers N`) both ask for it, and
    SQLite answers one of them "locked" at once, without its busy handler, to avoid a deadlock;
    that one tries again once the other has switched the file over."""
    for attempt in range(attempts):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.1)


async def _begin_immediate(db: sqlite3.Connection, timeout: float = 30.0) -> None:
    """BEGIN IMMEDIATE without blocking the event loop while another process (`--workers N`) holds
    the write lock: SQLite's busy handler would sleep on this thread, holding up every request of
    this process (p99 ~1 s with two workers). Here the wait is asynchronous; readers go on."""
    db.execute("PRAGMA busy_timeout=0")
    try:
        delay, waited = 0.0005, 0.0
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or waited >= timeout:
                    raise
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.01)
    finally:
        db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")


def _connect(path: str, synchronous: str, autocheckpoint: bool = True, writer: bool = False,
             set_wal: bool = True) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    if set_wal:  # the mode is kept in the file: a checkpoint's connection, opened later, needs no switch
        _set_wal(db)
    db.execute(f"PRAGMA synchronous={synchronous}")
    if not autocheckpoint:
        db.execute("PRAGMA wal_autocheckpoint=0")
        db.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
    db.execute("PRAGMA busy_timeout=30000")
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute("PRAGMA cache_size=-65536")
    if writer:
        # A write session joining a transaction is a SAVEPOINT, so every page it touches first is
        # copied into a statement journal; on disk (the default past 64 KiB) that was two write
        # calls per page and a third of the CPU time of a create. Sessions that touch many pages
        # run alone (no savepoint, no journal). Readers keep temp files on disk: a big sort may
        # spill there rather than into memory.
        db.execute("PRAGMA temp_store=MEMORY")
    return db


class SqliteStore:
    dialect_name = "sqlite"

    def __init__(self, path: str, tz: ZoneInfo, synchronous: str = "FULL"):
        self.path = path
        self.tz = tz
        self.synchronous = synchronous.upper()
        # FULL/EXTRA: the WAL is synced by the gateway after each group of commits (see module doc)
        self.syncs_wal = self.synchronous in ("FULL", "EXTRA", "2", "3")
        self.sync_wal = os.fdatasync if hasattr(os, "fdatasync") else os.fsync  # replaceable in tests
        self.listeners: list = []  # called with the rows of each committed write session
        self.dialect = SqliteDialect()
        self._write_lock = asyncio.Lock()
        self._tx_open = False
        self._pending: asyncio.Future | None = None  # resolved when the open transaction commits
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._unsynced: list[asyncio.Future] = []  # committed, told done once the WAL is synced
        self._syncer: asyncio.Task | None = None
        self._wal_fd: int | None = None
        self._checkpointing: asyncio.Task | None = None
        self.checkpoints = 0  # started since open (the WAL size test reads it)
        self._wal_size_at_checkpoint = 0
        self._tail_due = False  # step 1 of a checkpoint is done, step 2 waits for a commit

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        memory = self.path == ":memory:"
        self.syncs_wal = self.syncs_wal and not memory
        self._writer = _connect(self.path, "NORMAL" if self.syncs_wal else self.synchronous,
                                autocheckpoint=memory, writer=True)
        w = self._writer
        w.execute("BEGIN IMMEDIATE")
        try:
            for stmt in ddl("sqlite"):
                w.execute(stmt)
            if w.execute("SELECT COUNT(*) FROM change_seq").fetchone()[0] == 0:
                w.execute("INSERT INTO change_seq (n) VALUES (0)")
            row = w.execute("SELECT value FROM schema_info WHERE name = 'version'").fetchone()
            # No row: the DDL above just made the store, already at the current version
            stored = int(row[0]) if row else SCHEMA_VERSION
            for stmt in migrations("sqlite", stored):
                w.execute(stmt)
            w.execute(
                "INSERT INTO schema_info (name, value) VALUES ('version', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (str(max(stored, SCHEMA_VERSION)),),
            )
            w.execute("COMMIT")
        except BaseException:
            w.execute("ROLLBACK")
            raise
        self._reader = _connect(self.path, self.synchronous)
        if not memory:
            self._wal_fd = os.open(self.path + "-wal", os.O_RDONLY)  # exists: WAL mode, writes done

    async def close(self) -> None:
        if self._pending is not None:
            await asyncio.shield(self._pending)
        elif self._tx_open and self._writer is not None:
            self.dialect.save_seq(self._writer)
            self._writer.execute("COMMIT")
            self._tx_open = False
        for task in (self._syncer, self._checkpointing):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
        if self._writer is not None:
            self._writer.execute("PRAGMA synchronous=FULL" if self.syncs_wal else "SELECT 1")
        for db in (self._reader, self._writer):
            if db is not None:
                db.close()  # the last connection checkpoints and removes the WAL
        self._reader = self._writer = None
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None

    @asynccontextmanager
    async def session(self, write: bool = False, alone: bool = False) -> AsyncIterator[SqlSession]:
        """A read session, or a write session in the shared transaction of the next group commit.

        `alone`: the session writes a lot (a file chunk, a large transaction Bundle): it waits
        until the open transaction has committed and starts one of its own, so it needs no
        savepoint and no statement journal (which is in memory: a big one would hold every page
        the session touched). SQLite also truncates an in-memory journal by walking it from its
        start, so row savepoints nested in a session savepoint cost time quadratic in the chunk.
        """
        current = active_session.get()
        if current is not None and (current.write or not write):
            yield current
            return
        if not write:
            yield SqlSession(_SqliteConn(self._reader), self.dialect, self.tz, False)
            return
        await self._write_lock.acquire()
        try:
            while alone and self._tx_open:
                pending = self._pending
                self._write_lock.release()
                await asyncio.wait({pending})  # its failure belongs to the sessions in it
                await self._write_lock.acquire()
            db = self._writer
            # The first session of a transaction undoes itself with ROLLBACK; a later one, whose
            # predecessors wait in the transaction for their commit, with a savepoint of its own
            # (whose statement journal copies every page it touches first).
            fresh = not self._tx_open
            if fresh:
                await _begin_immediate(db)
                self._tx_open = True
                self.dialect.seq = None  # read again: another process may have written since
            else:
                db.execute("SAVEPOINT session")
            session = SqlSession(_SqliteConn(db), self.dialect, self.tz, True)
            token = active_session.set(session)
            try:
                yield session
            except BaseException:
                try:
                    if fresh:
                        db.execute("ROLLBACK")
                    else:
                        db.execute("ROLLBACK TO session")
                        db.execute("RELEASE session")
                except sqlite3.OperationalError:  # SQLite already rolled back (disk full, I/O error)
                    pass
                if not db.in_transaction:
                    self._tx_open = False
                    if self._pending is not None:  # earlier sessions' writes went with it: not durable
                        lost, self._pending = self._pending, None
                        lost.set_exception(sqlite3.OperationalError("the write transaction was rolled back"))
                raise
            else:
                if not fresh:
                    db.execute("RELEASE session")
                durable = self._pending or self._schedule_commit()
            finally:
                active_session.reset(token)
                if self._pending is None and self._tx_open:
                    self._schedule_commit()  # never leave the write transaction open with no commit coming
        finally:
            self._write_lock.release()
        # Outside the lock: the next sessions join this transaction while we wait for its commit.
        await asyncio.shield(durable)
        notify_listeners(self.listeners, session)

    def _schedule_commit(self) -> asyncio.Future:
        self._pending = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().create_task(self._group_commit())
        return self._pending

    async def _group_commit(self) -> None:
        """Commit every session that finished since the last commit.

        A failed session was already undone alone (ROLLBACK or its savepoint); the sessions
        waiting on `durable` are told only once their writes are on disk.

        While a WAL sync is in flight the commit waits for it: nobody could be told "done" before
        the next sync anyway, and each COMMIT writes every page it dirtied (two write calls per
        page, ~200 µs a create here when commits follow each other), so the sessions that finish
        during a sync go into one commit that writes their shared pages once.
        """
        if self._syncer is not None and not self._syncer.done():
            await asyncio.wait({self._syncer})
        async with self._write_lock:
            done, self._pending = self._pending, None
            if done is None:  # the transaction was lost (see session) and its sessions told so
                return
            try:
                if self._tx_open:
                    # At NORMAL or OFF a commit only appends to the WAL (no fsync, no checkpoint:
                    # both happen in threads), so it runs here rather than paying a thread hop.
                    self.dialect.save_seq(self._writer)
                    self._writer.execute("COMMIT")
            except BaseException as exc:
                try:
                    self._writer.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                done.set_exception(exc)
                return
            finally:
                self._tx_open = False
            if self._tail_due:
                try:
                    await self._checkpoint_tail()
                except Exception:  # the group's writes are committed: they must still be answered
                    log.exception("the second step of a SQLite checkpoint failed")
        if not self.syncs_wal:
            done.set_result(None)
        else:
            self._unsynced.append(done)
            if self._syncer is None or self._syncer.done():
                self._syncer = asyncio.get_running_loop().create_task(self._sync_wal())
        self._maybe_checkpoint()

    async def _sync_wal(self) -> None:
        """One WAL sync for every commit made before it started; commits go on meanwhile."""
        while self._unsynced:
            batch, self._unsynced = self._unsynced, []
            try:
                await asyncio.to_thread(self.sync_wal, self._wal_fd)
            except BaseException as exc:  # not durable: nobody may be told it is (they answer errors)
                log.critical("syncing the SQLite WAL failed: %s", exc)
                for f in batch:
                    if not f.done():
                        f.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
                if not isinstance(exc, Exception):
                    raise
            else:
                for f in batch:
                    if not f.done():
                        f.set_result(None)

    def _maybe_checkpoint(self) -> None:
        """Autocheckpoint is off on the writer (it would fsync on the event loop). Past a WAL size
        a checkpoint is made in two steps, both in a thread on a connection of their own:

        1. beside the writers, a PASSIVE checkpoint copies (and syncs) what is committed so far;
        2. at the next group commit, between its COMMIT and the next BEGIN, with writers held
           back, a second one copies the little committed during step 1.

        Only a WAL copied whole can be restarted from its beginning (and cut back to
        WAL_KEEP_BYTES), and only by a transaction that begins after that copy: under a steady
        stream of commits step 1 alone never gets there (the WAL passed 800 MB in six seconds
        here). If a reader still keeps it from restarting, the next try waits until another
        CHECKPOINT_WAL_BYTES were written rather than following every commit.
        """
        if self._wal_fd is None or self._tail_due or (
                self._checkpointing is not None and not self._checkpointing.done()):
            return
        try:
            size = os.fstat(self._wal_fd).st_size
        except OSError:
            return
        if size < self._wal_size_at_checkpoint:  # restarted and cut back since the last checkpoint
            self._wal_size_at_checkpoint = 0
        if size < CHECKPOINT_WAL_BYTES or (
                self._wal_size_at_checkpoint and size < self._wal_size_at_checkpoint + CHECKPOINT_WAL_BYTES):
            return
        self._wal_size_at_checkpoint = size
        self.checkpoints += 1
        self._checkpointing = asyncio.get_running_loop().create_task(self._checkpoint_beside_writers())

    async def _checkpoint_beside_writers(self) -> None:
        await asyncio.to_thread(self._checkpoint)
        self._tail_due = True  # step 2 runs in the next _group_commit

    async def _checkpoint_tail(self) -> None:
        """Step 2, called with the write lock held and no transaction open."""
        self._tail_due = False
        await asyncio.to_thread(self._checkpoint)

    def _checkpoint(self) -> None:
        """Never raises: a checkpoint that fails is tried again later, and step 2 runs inside a
        group commit whose sessions must still be told their outcome."""
        try:
            db = _connect(self.path, "FULL" if self.syncs_wal else self.synchronous, set_wal=False)
        except sqlite3.Error as exc:
            log.warning("SQLite checkpoint could not open the store (retried later): %s", exc)
            return
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            log.warning("SQLite checkpoint failed (retried later): %s", exc)
        finally:
            db.close()
