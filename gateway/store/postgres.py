"""Production back end: PostgreSQL through asyncpg.

The SQL is the shared one of `sql.py` with `?` placeholders rewritten to `$n` once per statement
text. Races between processes on the same logical key (two clients sending the same conditional
create) are serialised with transaction-scoped advisory locks, so the check and the insert happen
as one step without SERIALIZABLE isolation.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any, AsyncIterator, Iterable
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import asyncpg

from gateway.store.base import active_session, notify_listeners
from gateway.store import pg_write
from gateway.store.schema import INDEX_TABLES, SCHEMA_VERSION, ddl, migrations
from gateway.store.sql import SqlSession, VersionRow


@lru_cache(maxsize=4096)
def _numbered(sql: str) -> str:
    parts = sql.split("?")
    out = [parts[0]]
    for i, p in enumerate(parts[1:], 1):
        out.append(f"${i}{p}")
    return "".join(out)


class _PgConn:
    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    async def fetch(self, sql: str, args: Iterable[Any] = ()) -> list:
        return await self.conn.fetch(_numbered(sql), *args)

    async def fetchrow(self, sql: str, args: Iterable[Any] = ()):
        return await self.conn.fetchrow(_numbered(sql), *args)

    async def execute(self, sql: str, args: Iterable[Any] = ()) -> None:
        await self.conn.execute(_numbered(sql), *args)

    async def executemany(self, sql: str, rows: list[tuple]) -> None:
        await self.conn.executemany(_numbered(sql), rows)


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """What the pool does to a connection handed back, besides asyncpg's own clean-up (which rolls
    back a transaction left open): nothing. Pooled connections carry no session state (advisory
    locks are transaction-scoped; no LISTEN, cursors or SET; the events' session lock has its own
    connection), so the default reset query (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`) would be one more round trip per request for nothing."""


class PostgresDialect:
    name = "postgres"

    def steer(self, where: str) -> str:
        return where  # PostgreSQL plans from its own statistics

    def for_update(self, write: bool) -> str:
        return " FOR UPDATE" if write else ""

    async def next_seq(self, conn: _PgConn) -> int:
        return await conn.conn.fetchval("SELECT nextval('change_seq')")

    async def lock(self, conn: _PgConn, key: str) -> None:
        await conn.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)

    async def write_version(self, conn: _PgConn, row: VersionRow, index: dict[str, list[tuple]]) -> tuple[int, int]:
        # one round trip instead of ~10 (gateway/store/pg_write.py)
        written = await conn.conn.fetchrow(pg_write.statement(row.pk is not None), *pg_write.arguments(
            row.type, row.id, row.version, row.last_updated, row.content, row.method, row.pk, index))
        return written[0], written[1]

    async def clear_index(self, conn: _PgConn, pk: int) -> None:
        deletes = ", ".join(f"d{i} AS (DELETE FROM {t} WHERE pk = ${i + 1})" for i, t in enumerate(INDEX_TABLES))
        await conn.conn.execute(f"WITH {deletes} SELECT 1", *[pk] * len(INDEX_TABLES))  # one round trip


def split_schema(url: str) -> tuple[str, str | None]:
    """Our own `?schema=name` URL parameter selects a schema (tests use one each)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    schema = query.pop("schema", [None])[0]
    rest = urlencode({k: v[0] for k, v in query.items()})
    return urlunsplit((parts.scheme.replace("postgresql+asyncpg", "postgresql"), parts.netloc, parts.path, rest, "")), schema


async def drop_schema(url: str) -> None:
    """Remove the `?schema=` of `url` and everything in it (tests and benchmarks start clean)."""
    dsn, schema = split_schema(url)
    if not schema:
        return
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


class PostgresStore:
    dialect_name = "postgres"

    def __init__(self, url: str, tz: ZoneInfo, pool_size: int = 10):
        self.url, self.schema = split_schema(url)
        self.tz = tz
        self.pool_size = pool_size
        self.listeners: list = []  # called with the rows of each committed write session
        self.dialect = PostgresDialect()
        self.pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        settings = {"search_path": self.schema} if self.schema else {}
        if self.schema:
            conn = await asyncpg.connect(self.url)
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            finally:
                await conn.close()
        self.pool = await asyncpg.create_pool(
            self.url, min_size=1, max_size=self.pool_size, server_settings=settings, reset=_no_session_state
        )
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                # Several workers may start at once: one migrates, the others wait.
                await conn.execute("SELECT pg_advisory_xact_lock(7406001)")
                for stmt in ddl("postgres"):
                    await conn.execute(stmt)
                row = await conn.fetchval("SELECT value FROM schema_info WHERE name = 'version'")
                # No row: the DDL above just made the store, already at the current version
                stored = int(row) if row else SCHEMA_VERSION
                for stmt in migrations("postgres", stored):
                    await conn.execute(stmt)
                await conn.execute(
                    "INSERT INTO schema_info (name, value) VALUES ('version', $1) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    str(max(stored, SCHEMA_VERSION)),
                )

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    @asynccontextmanager
    async def session(self, write: bool = False, alone: bool = False) -> AsyncIterator[SqlSession]:
        # `alone` (see SqliteStore.session): every PostgreSQL write session is its own transaction.
        current = active_session.get()
        if current is not None and (current.write or not write):
            yield current
            return
        async with self.pool.acquire() as conn:
            if not write:
                yield SqlSession(_PgConn(conn), self.dialect, self.tz, False)
                return
            tx = conn.transaction()
            await tx.start()
            session = SqlSession(_PgConn(conn), self.dialect, self.tz, True)
            token = active_session.set(session)
            try:
                yield session
            except BaseException:
                await tx.rollback()
                raise
            else:
                await tx.commit()
                notify_listeners(self.listeners, session)
            finally:
                active_session.reset(token)
