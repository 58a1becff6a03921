"""The repository, written once in SQL that both SQLite and PostgreSQL accept.

The dialects differ only in how a connection is driven (`Conn`) and a few statements
(`Dialect`); all versioning, indexing, paging and include logic lives here.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Protocol
from zoneinfo import ZoneInfo

import orjson

from gateway.fhir import decimals
from gateway.store.base import StoredResource, VersionConflict, WriteResult, instant_iso
from gateway.store.ids import new_id
from gateway.store.indexing import extract_index

_COLS = "pk, type, id, version, last_updated, deleted, content, seq"
_RCOLS = "r.pk, r.type, r.id, r.version, r.last_updated, r.deleted, r.content, r.seq"
_INDEX_INSERT = {
    "idx_string": "INSERT INTO idx_string (pk, type, param, value_norm, value_exact) VALUES (?, ?, ?, ?, ?)",
    "idx_token": "INSERT INTO idx_token (pk, type, param, system, code, text_norm) VALUES (?, ?, ?, ?, ?, ?)",
    "idx_reference": "INSERT INTO idx_reference (pk, type, param, target_type, target_id, target_url) VALUES (?, ?, ?, ?, ?, ?)",
    "idx_date": "INSERT INTO idx_date (pk, type, param, low, high) VALUES (?, ?, ?, ?, ?)",
    "idx_number": "INSERT INTO idx_number (pk, type, param, value, system, code) VALUES (?, ?, ?, ?, ?, ?)",
    "idx_uri": "INSERT INTO idx_uri (pk, type, param, uri) VALUES (?, ?, ?, ?)",
}


class Conn(Protocol):
    async def fetch(self, sql: str, args: Iterable[Any] = ()) -> list[tuple]: ...
    async def fetchrow(self, sql: str, args: Iterable[Any] = ()) -> tuple | None: ...
    async def execute(self, sql: str, args: Iterable[Any] = ()) -> None: ...
    async def executemany(self, sql: str, rows: list[tuple]) -> None: ...


def _row(r: tuple) -> StoredResource:
    return StoredResource(r[0], r[1], r[2], r[3], r[4], bool(r[5]), bytes(r[6]) if r[6] is not None else None, r[7])


def now_us() -> int:
    # Millisecond resolution so the stored column equals what meta.lastUpdated says.
    return (time.time_ns() // 1_000_000) * 1000


def strip_volatile_meta(resource: dict) -> dict:
    """The resource without what the server sets on every write (for no-op detection)."""
    meta = resource.get("meta")
    out = {k: v for k, v in resource.items() if k != "meta"}
    if meta:
        rest = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        if rest:
            out["meta"] = rest
    return out


def with_meta(resource: dict, rid: str, version: int, last_updated: int) -> dict:
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = instant_iso(last_updated)
    out = {"resourceType": resource["resourceType"], "id": rid, "meta": meta}
    for k, v in resource.items():
        if k not in out:
            out[k] = v
    return out


@dataclass
class Page:
    rows: list[StoredResource]
    total: int | None
    next_after: list | None  # keyset cursor of the next page


class SqlSession:
    """One unit of work on one connection."""

    def __init__(self, conn: Conn, dialect: "Dialect", tz: ZoneInfo, write: bool):
        self.conn = conn
        self.dialect = dialect
        self.tz = tz
        self.write = write
        self.changes: list[StoredResource] = []  # what this session wrote, for events
        self._savepoints = 0

    # -- reads -----------------------------------------------------------------------------
    async def read(self, rtype: str, rid: str) -> StoredResource | None:
        r = await self.conn.fetchrow(
            f"SELECT {_COLS} FROM resource WHERE type = ? AND id = ?" + self.dialect.for_update(self.write),
            (rtype, rid),
        )
        return _row(r) if r else None

    async def vread(self, rtype: str, rid: str, version: int) -> StoredResource | None:
        r = await self.conn.fetchrow(
            f"SELECT {_COLS} FROM resource_version WHERE type = ? AND id = ? AND version = ?", (rtype, rid, version)
        )
        return _row(r) if r else None

    async def fetch_many(self, keys: list[tuple[str, str]]) -> list[StoredResource]:
        out: list[StoredResource] = []
        by_type: dict[str, list[str]] = {}
        for t, i in keys:
            by_type.setdefault(t, []).append(i)
        for t, ids in by_type.items():
            for chunk in _chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                rows = await self.conn.fetch(
                    f"SELECT {_COLS} FROM resource WHERE type = ? AND deleted = 0 AND id IN ({marks})", (t, *chunk)
                )
                out.extend(_row(r) for r in rows)
        return out

    async def search(
        self,
        where: str,
        args: list,
        sorts: list[tuple[str, list, bool]],
        count: int,
        after: list | None,
        with_total: bool,
        total_cap: int | None = None,
    ) -> Page:
        """A page of matches in sort order after the keyset `after`. The total is counted up to
        `total_cap` rows (None when there are more: counting a huge match set costs seconds)."""
        where = self.dialect.steer(where)
        total = None
        if with_total:
            if total_cap is None:
                r = await self.conn.fetchrow(f"SELECT COUNT(*) FROM resource r WHERE {where}", args)
            else:
                r = await self.conn.fetchrow(
                    f"SELECT COUNT(*) FROM (SELECT 1 FROM resource r WHERE {where} LIMIT ?) capped", [*args, total_cap + 1])
            total = int(r[0]) if total_cap is None or r[0] <= total_cap else None
        if count == 0:
            return Page([], total, None)
        keys = [(sql, a, desc) for sql, a, desc in sorts] + [("r.pk", [], False)]
        select_keys = ", ".join(f"{sql} AS k{i}" for i, (sql, _, _) in enumerate(keys))
        select_args = [x for sql, a, _ in keys for x in a]
        cond, cond_args = "", []
        if after is not None:
            cond, cond_args = _keyset(keys, after)
            cond = f" AND ({cond})"
        order = ", ".join(f"k{i}{' DESC' if desc else ''}" for i, (_, _, desc) in enumerate(keys))
        sql = (
            f"SELECT {_RCOLS}, {select_keys} "
            f"FROM resource r WHERE {where}{cond} ORDER BY {order} LIMIT ?"
        )
        rows = await self.conn.fetch(sql, [*select_args, *args, *cond_args, count + 1])
        nxt = None
        if len(rows) > count:
            last = rows[count - 1]
            nxt = [last[8 + i] for i in range(len(keys))]
            rows = rows[:count]
        return Page([_row(r) for r in rows], total, nxt)

    async def find(self, where: str, args: list, limit: int = 2) -> list[StoredResource]:
        where = self.dialect.steer(where)
        rows = await self.conn.fetch(
            f"SELECT {_RCOLS} FROM resource r WHERE {where} ORDER BY r.pk LIMIT ?",
            [*args, limit],
        )
        return [_row(r) for r in rows]

    async def included(
        self, pks: list[int], param: str | None, source_type: str | None, target_type: str | None
    ) -> list[StoredResource]:
        """Resources referenced from `pks` (forward _include)."""
        if not pks:
            return []
        cond, args = ["x.pk IN (" + ",".join("?" * len(pks)) + ")"], list(pks)
        for col, val in (("x.param", param), ("x.type", source_type), ("x.target_type", target_type)):
            if val:
                cond.append(f"{col} = ?")
                args.append(val)
        rows = await self.conn.fetch(
            f"SELECT DISTINCT {_RCOLS} "
            f"FROM idx_reference x JOIN resource r ON r.type = x.target_type AND r.id = x.target_id "
            f"WHERE {' AND '.join(cond)} AND r.deleted = 0",
            args,
        )
        return [_row(r) for r in rows]

    async def revincluded(
        self, targets: list[tuple[str, str]], source_type: str, param: str | None
    ) -> list[StoredResource]:
        """Resources of `source_type` whose `param` references one of `targets` (_revinclude)."""
        out: dict[int, StoredResource] = {}
        by_type: dict[str, list[str]] = {}
        for t, i in targets:
            by_type.setdefault(t, []).append(i)
        for ttype, ids in by_type.items():
            args: list = [ttype, *ids]
            cond = ""
            if source_type != "*":
                cond += " AND x.type = ?"
                args.append(source_type)
            if param:
                cond += " AND x.param = ?"
                args.append(param)
            rows = await self.conn.fetch(
                f"SELECT DISTINCT {_RCOLS} "
                f"FROM idx_reference x JOIN resource r ON r.pk = x.pk "
                f"WHERE x.target_type = ? AND x.target_id IN ({','.join('?' * len(ids))}){cond} AND r.deleted = 0",
                args,
            )
            for r in rows:
                out[r[0]] = _row(r)
        return list(out.values())

    async def history(
        self, rtype: str | None, rid: str | None, since: int | None, before_seq: int | None, count: int,
        at_or_before: int | None = None,
    ) -> tuple[list[StoredResource], int | None, int]:
        cond, args = [], []
        if rtype:
            cond.append("type = ?")
            args.append(rtype)
        if rid:
            cond.append("id = ?")
            args.append(rid)
        if since is not None:
            cond.append("last_updated >= ?")
            args.append(since)
        if at_or_before is not None:
            cond.append("last_updated <= ?")
            args.append(at_or_before)
        base_where = " AND ".join(cond) or "1 = 1"
        total_row = await self.conn.fetchrow(f"SELECT COUNT(*) FROM resource_version WHERE {base_where}", args)
        page_cond = base_where
        page_args = list(args)
        if before_seq is not None:
            page_cond += " AND seq < ?"
            page_args.append(before_seq)
        rows = await self.conn.fetch(
            f"SELECT {_COLS}, method FROM resource_version WHERE {page_cond} ORDER BY seq DESC LIMIT ?",
            [*page_args, count + 1],
        )
        out = []
        for r in rows[:count]:
            s = _row(r)
            s.method = r[8]
            out.append(s)
        nxt = out[-1].seq if len(rows) > count and out else None
        return out, nxt, int(total_row[0])

    async def compartment(
        self, patient_id: str, pairs: list[tuple[str, str]], since: int | None, types: list[str] | None
    ) -> list[StoredResource]:
        """Every live resource in the Patient compartment of `patient_id` (by its reference index)."""
        if not pairs:
            return []
        pair_sql = " OR ".join("(x.type = ? AND x.param = ?)" for _ in pairs)
        args: list = ["Patient", patient_id]
        for t, p in pairs:
            args += [t, p]
        cond = ""
        if since is not None:
            cond += " AND r.last_updated >= ?"
            args.append(since)
        if types:
            cond += f" AND r.type IN ({','.join('?' * len(types))})"
            args += types
        rows = await self.conn.fetch(
            f"SELECT DISTINCT {_RCOLS} "
            f"FROM idx_reference x JOIN resource r ON r.pk = x.pk "
            f"WHERE x.target_type = ? AND x.target_id = ? AND ({pair_sql}) AND r.deleted = 0{cond} ORDER BY r.pk",
            args,
        )
        return [_row(r) for r in rows]

    async def changes_since(self, after_seq: int, limit: int) -> list[StoredResource]:
        rows = await self.conn.fetch(
            f"SELECT {_COLS}, method FROM resource_version WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
        )
        out = []
        for r in rows:
            s = _row(r)
            s.method = r[8]
            out.append(s)
        return out

    # -- outbox (read and emptied by gateway/events, one dispatcher at a time) ---------------
    async def outbox_batch(self, limit: int) -> list[StoredResource]:
        """The oldest committed change events still in the outbox, in seq order (no content).

        Only committed rows are visible, so a transaction that took a lower seq but commits later
        is simply found by a later call: rows are claimed by deleting them, never by a cursor.
        """
        rows = await self.conn.fetch(
            "SELECT seq, type, id, version, method, created_at FROM outbox ORDER BY seq LIMIT ?"
            + self.dialect.for_update(self.write),
            (limit,),
        )
        return [StoredResource(0, r[1], r[2], r[3], r[5], r[4] == "DELETE", None, r[0], r[4]) for r in rows]

    async def outbox_delete(self, seqs: list[int]) -> None:
        for chunk in _chunks(seqs, 500):
            await self.conn.execute(f"DELETE FROM outbox WHERE seq IN ({','.join('?' * len(chunk))})", chunk)

    # -- writes ----------------------------------------------------------------------------
    @asynccontextmanager
    async def savepoint(self):
        """All-or-nothing inside a larger session (one file row, one bundle entry in a batch)."""
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        mark = len(self.changes)
        await self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield self
        except BaseException:
            await self.conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
            await self.conn.execute(f"RELEASE SAVEPOINT {name}")
            del self.changes[mark:]
            raise
        else:
            await self.conn.execute(f"RELEASE SAVEPOINT {name}")

    async def lock(self, key: str) -> None:
        """Serialise writers that race on the same logical key (conditional create/update)."""
        await self.dialect.lock(self.conn, key)

    async def create(self, resource: dict, rid: str | None = None, method: str = "POST") -> WriteResult:
        """A new resource; `method` PUT records an update that created it at an id the caller
        has just made (nothing can exist there, so there is nothing to read first)."""
        rtype = resource["resourceType"]
        rid = rid or new_id()
        stored = await self._write_version(rtype, rid, resource, None, method)
        return WriteResult(stored, created=True)

    async def update(self, resource: dict, rid: str, if_match: int | None = None) -> WriteResult:
        rtype = resource["resourceType"]
        await self.lock(f"{rtype}/{rid}")
        current = await self.read(rtype, rid)
        if if_match is not None and (current is None or current.deleted or current.version != if_match):
            raise VersionConflict(None if current is None or current.deleted else current.version)
        if current is not None and not current.deleted:
            new = strip_volatile_meta({**resource, "id": rid})
            # Equal values first (a plain parse, as decimals compare equal to their floats); only
            # then the written forms of decimals, which needs the slower decimal-keeping parse.
            if strip_volatile_meta(orjson.loads(current.content)) == new and decimals.unchanged(
                    current.content, strip_volatile_meta(decimals.loads(current.content)), new):
                return WriteResult(current, created=False, changed=False)
        created = current is None or current.deleted
        stored = await self._write_version(rtype, rid, resource, current, "PUT")
        return WriteResult(stored, created=created)

    async def delete(self, rtype: str, rid: str) -> StoredResource | None:
        await self.lock(f"{rtype}/{rid}")
        current = await self.read(rtype, rid)
        if current is None or current.deleted:
            return current
        version, ts, seq = current.version + 1, now_us(), await self.dialect.next_seq(self.conn)
        await self.conn.execute(
            "UPDATE resource SET version = ?, last_updated = ?, deleted = 1, seq = ?, content = NULL WHERE pk = ?",
            (version, ts, seq, current.pk),
        )
        await self.dialect.clear_index(self.conn, current.pk)
        await self.conn.execute(
            "INSERT INTO resource_version (seq, pk, type, id, version, last_updated, deleted, method, content) "
            "VALUES (?, ?, ?, ?, ?, ?, 1, 'DELETE', NULL)",
            (seq, current.pk, rtype, rid, version, ts),
        )
        gone = StoredResource(current.pk, rtype, rid, version, ts, True, None, seq, "DELETE")
        await insert_outbox(self.conn, seq, rtype, rid, version, "DELETE", ts)
        self.changes.append(gone)
        return gone

    async def _write_version(
        self, rtype: str, rid: str, resource: dict, current: StoredResource | None, method: str
    ) -> StoredResource:
        version = current.version + 1 if current else 1
        ts = now_us()
        body = with_meta(resource, rid, version, ts)
        content = decimals.dumps(body)  # decimals as written (1.50 stays 1.50)
        row = VersionRow(rtype, rid, version, ts, content, method, current.pk if current else None)
        pk, seq = await self.dialect.write_version(self.conn, row, extract_index(body, self.tz))
        stored = StoredResource(pk, rtype, rid, version, ts, False, content, seq, method)
        self.changes.append(stored)
        return stored



@dataclass(frozen=True, slots=True)
class VersionRow:
    """One version to write: `pk` is the resource's surrogate key on an update, None on a create."""

    type: str
    id: str
    version: int
    last_updated: int
    content: bytes
    method: str
    pk: int | None


async def insert_outbox(conn: Conn, seq: int, rtype: str, rid: str, version: int, method: str, at: int) -> None:
    await conn.execute(
        "INSERT INTO outbox (seq, type, id, version, method, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (seq, rtype, rid, version, method, at),
    )


async def write_version_statements(conn: Conn, dialect: "Dialect", row: VersionRow,
                                   index: dict[str, list[tuple]]) -> tuple[int, int]:
    """A version written statement by statement (change number, resource row, version row, index
    rows, outbox row): cheap where a statement costs no round trip (SQLite). Returns (pk, seq)."""
    seq = await dialect.next_seq(conn)
    if row.pk is not None:
        pk = row.pk
        await conn.execute(
            "UPDATE resource SET version = ?, last_updated = ?, deleted = 0, seq = ?, content = ? WHERE pk = ?",
            (row.version, row.last_updated, seq, row.content, pk),
        )
        await dialect.clear_index(conn, pk)
    else:
        created = await conn.fetchrow(
            "INSERT INTO resource (type, id, version, last_updated, deleted, seq, content) "
            "VALUES (?, ?, ?, ?, 0, ?, ?) RETURNING pk",
            (row.type, row.id, row.version, row.last_updated, seq, row.content),
        )
        pk = created[0]
    await conn.execute(
        "INSERT INTO resource_version (seq, pk, type, id, version, last_updated, deleted, method, content) "
        "VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
        (seq, pk, row.type, row.id, row.version, row.last_updated, row.method, row.content),
    )
    for table, rows in index.items():
        if rows:
            await conn.executemany(_INDEX_INSERT[table], [(pk, row.type, *r) for r in rows])
    await insert_outbox(conn, seq, row.type, row.id, row.version, row.method, row.last_updated)
    return pk, seq


class Dialect(Protocol):
    """What differs between back ends: search steering, row locks, the change number, advisory
    locks, and how a version's rows (and an old version's index rows) are written and cleared."""

    name: str

    def steer(self, where: str) -> str: ...
    def for_update(self, write: bool) -> str: ...
    async def next_seq(self, conn: Conn) -> int: ...
    async def lock(self, conn: Conn, key: str) -> None: ...
    async def write_version(self, conn: Conn, row: VersionRow, index: dict[str, list[tuple]]) -> tuple[int, int]: ...
    async def clear_index(self, conn: Conn, pk: int) -> None: ...


def _keyset(keys: list[tuple[str, list, bool]], after: list) -> tuple[str, list]:
    """Rows strictly after `after` in the ORDER BY of `keys` (mixed directions, pk last)."""
    ors, args = [], []
    for i, (sql, a, desc) in enumerate(keys):
        parts = []
        for j in range(i):
            parts.append(f"{keys[j][0]} = ?")
            args += [*keys[j][1], after[j]]
        parts.append(f"{sql} {'<' if desc else '>'} ?")
        args += [*a, after[i]]
        ors.append("(" + " AND ".join(parts) + ")")
    return " OR ".join(ors), args


def _chunks(items: list, n: int):
    for i in range(0, len(items), n):
        yield items[i : i + n]
