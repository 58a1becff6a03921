"""What the rest of the gateway knows about storage: rows of JSON bytes and a session to change them.

Handlers never see SQL. A `Session` is one unit of work: reads inside a write session see its own
writes, and everything it wrote commits together or not at all. A FHIR transaction Bundle runs all
its entries in one session; `Store.session()` hands back the session already open in the current
task, so a handler cannot tell whether it is part of a Bundle or a plain request.
"""

from __future__ import annotations

import contextvars
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime

active_session: contextvars.ContextVar = contextvars.ContextVar("active_session", default=None)


@dataclass(slots=True)
class StoredResource:
    pk: int
    type: str
    id: str
    version: int
    last_updated: int  # microseconds since the epoch, UTC
    deleted: bool
    content: bytes | None  # JSON with meta.versionId/lastUpdated already set; None when deleted
    seq: int = 0
    method: str = ""

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def last_modified(self) -> str:
        return format_datetime(datetime.fromtimestamp(self.last_updated / 1e6, timezone.utc), usegmt=True)

    @property
    def last_updated_iso(self) -> str:
        return instant_iso(self.last_updated)


_second: tuple[int, str] = (0, "1970-01-01T00:00:00.")  # the last second formatted (writes come in bursts)


def instant_iso(us: int) -> str:
    """FHIR instant with millisecond precision in UTC."""
    global _second
    sec, rest = divmod(us, 1_000_000)
    if _second[0] != sec:
        _second = (sec, datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S."))
    return f"{_second[1]}{rest // 1000:03d}+00:00"


def conflicted(exc: BaseException) -> str | None:
    """Why a write failed only because of another transaction, or None.

    "retry": PostgreSQL chose it as the victim of a deadlock or a serialization failure (it was
    rolled back whole, so running it again is safe); "busy": SQLite's write lock stayed taken past
    the busy timeout (running it again would wait as long again)."""
    if getattr(exc, "sqlstate", None) in ("40P01", "40001"):  # asyncpg's errors carry the SQLSTATE
        return "retry"
    if isinstance(exc, sqlite3.OperationalError) and "database is locked" in str(exc):
        return "busy"
    return None


@dataclass(slots=True)
class WriteResult:
    resource: StoredResource
    created: bool = False
    changed: bool = True


class VersionConflict(Exception):
    """If-Match named a version that is not the current one."""

    def __init__(self, current: int | None):
        self.current = current
        super().__init__(f"current version is {current}")


def notify_listeners(listeners: list, session) -> None:
    """Tell listeners (the event dispatcher) that a session's committed changes are in the outbox."""
    if session.changes:
        for listener in listeners:
            listener(session.changes)
