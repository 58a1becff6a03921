"""Embedded back end: one SQLite file in WAL mode.

sqlite3 calls are synchronous and short, so they run on the event loop thread; writers are
serialised by an asyncio lock in this process and by `BEGIN IMMEDIATE` (with a busy timeout)
across processes. Readers use their own connection and never wait for a writer (WAL).
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Iterable
from zoneinfo import ZoneInfo

from gateway.store.base import active_session
from gateway.store.schema import SCHEMA_VERSION, ddl
from gateway.store.sql import SqlSession


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


class SqliteDialect:
    name = "sqlite"

    def for_update(self, write: bool) -> str:
        return ""  # BEGIN IMMEDIATE already holds the write lock

    async def next_seq(self, conn: _SqliteConn) -> int:
        row = await conn.fetchrow("UPDATE change_seq SET n = n + 1 RETURNING n")
        return row[0]

    async def lock(self, conn: _SqliteConn, key: str) -> None:
        return None  # one writer at a time already


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=30000")
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute("PRAGMA cache_size=-65536")
    return db


class SqliteStore:
    dialect_name = "sqlite"

    def __init__(self, path: str, tz: ZoneInfo, synchronous: str = "FULL"):
        self.path = path
        self.tz = tz
        self.synchronous = synchronous.upper()
        self.listeners: list = []  # called with the rows of each committed write session
        self.dialect = SqliteDialect()
        self._write_lock = asyncio.Lock()
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = _connect(self.path, self.synchronous)
        w = self._writer
        w.execute("BEGIN IMMEDIATE")
        try:
            for stmt in ddl("sqlite"):
                w.execute(stmt)
            if w.execute("SELECT COUNT(*) FROM change_seq").fetchone()[0] == 0:
                w.execute("INSERT INTO change_seq (n) VALUES (0)")
            w.execute(
                "INSERT INTO schema_info (name, value) VALUES ('version', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
            w.execute("COMMIT")
        except BaseException:
            w.execute("ROLLBACK")
            raise
        self._reader = _connect(self.path, self.synchronous)

    def _notify(self, session) -> None:
        """Tell listeners (the event dispatcher) that committed changes are waiting in the outbox."""
        if session.changes:
            for listener in self.listeners:
                listener(session.changes)

    async def close(self) -> None:
        for db in (self._reader, self._writer):
            if db is not None:
                db.close()
        self._reader = self._writer = None

    @asynccontextmanager
    async def session(self, write: bool = False) -> AsyncIterator[SqlSession]:
        current = active_session.get()
        if current is not None and (current.write or not write):
            yield current
            return
        if not write:
            yield SqlSession(_SqliteConn(self._reader), self.dialect, self.tz, False)
            return
        async with self._write_lock:
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            session = SqlSession(_SqliteConn(db), self.dialect, self.tz, True)
            token = active_session.set(session)
            try:
                yield session
            except BaseException:
                db.execute("ROLLBACK")
                raise
            else:
                db.execute("COMMIT")
                self._notify(session)
            finally:
                active_session.reset(token)
