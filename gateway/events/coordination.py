"""Cross-process mutexes that live with the store, so they need nothing but the database.

PostgreSQL: a session-level advisory lock on a connection of its own; it is released by the
server when the connection or the process dies. SQLite: an exclusive `flock` on a file beside the
database; the kernel releases it when the process dies. Either way a crashed holder never leaves
a lock behind, and no lease has to time out.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os

log = logging.getLogger("gateway.events")


class StoreLock:
    """`name` is one lock per store (per PostgreSQL schema, per SQLite file)."""

    def __init__(self, store, name: str) -> None:
        self.store = store
        self.name = name
        self.held = False
        self._local = asyncio.Lock()  # one holder per process as well
        self._conn = None  # PostgreSQL
        self._fd: int | None = None  # SQLite

    @property
    def _postgres(self) -> bool:
        return getattr(self.store, "dialect_name", "") == "postgres"

    async def try_acquire(self) -> bool:
        if self.held:
            return True
        if self._local.locked():
            return False
        await self._local.acquire()
        try:
            ok = await (self._pg_try() if self._postgres else self._file_try())
        except BaseException:
            self._local.release()
            raise
        if not ok:
            self._local.release()
        self.held = ok
        return ok

    async def acquire(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds (polling: a waiter can always give up cleanly)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.002
        while not await self.try_acquire():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        return True

    async def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            if self._postgres:
                if self._conn is not None and not self._conn.is_closed():
                    await self._conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", self._key)
            elif self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._local.release()

    async def still_held(self) -> bool:
        """False once the lock is gone (PostgreSQL connection lost)."""
        if not self.held:
            return False
        if self._postgres:
            try:
                await asyncio.wait_for(self._conn.fetchval("SELECT 1"), 5)
            except Exception:
                log.warning("lost the %s lock: its PostgreSQL connection failed", self.name)
                self.held = False
                self._local.release()
                await self.close()
                return False
        return True

    async def close(self) -> None:
        if self.held:
            await self.release()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await asyncio.wait_for(conn.close(), 5)
            except Exception:
                conn.terminate()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- PostgreSQL -----------------------------------------------------------------------------
    @property
    def _key(self) -> str:
        return f"{self.store.schema or 'public'}:{self.name}"

    async def _pg_try(self) -> bool:
        import asyncpg

        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncio.wait_for(asyncpg.connect(self.store.url), 10)
        return bool(await self._conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", self._key))

    # -- SQLite ---------------------------------------------------------------------------------
    async def _file_try(self) -> bool:
        if self.store.path == ":memory:":
            return True  # one connection, one process
        if self._fd is None:
            self._fd = os.open(f"{self.store.path}.{self.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
