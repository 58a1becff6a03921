"""PostgreSQL: one resource version written in one statement (one network round trip).

The portable write path issues ~10 statements per version (change number, resource row, version
row, a DELETE and an INSERT per index table, outbox row); against a server each is a round trip,
and those round trips, not the server's work, were most of an HL7 message's cost. Here they are
one data-modifying WITH statement: the index rows travel as one array per column and are
`unnest`ed server-side. Every sub-statement sees the same snapshot, so the DELETEs of an update
remove only the previous version's index rows, never the ones inserted beside them.
"""

from __future__ import annotations

from functools import cache

from gateway.store.indexing.extract import INDEX_COLUMNS

# SQL element type of each index column sent as an array (all others are text).
_ARRAY_TYPE = {("idx_date", "low"): "bigint", ("idx_date", "high"): "bigint", ("idx_number", "value"): "float8"}
# $1 type, $2 id, $3 version, $4 last_updated, $5 content, $6 method, then $7 pk for an update
# (PostgreSQL refuses a parameter it cannot type, so a create has no pk parameter at all).


def _columns() -> list[tuple[str, str]]:
    return [(table, col) for table, cols in INDEX_COLUMNS.items() for col in cols]


@cache
def statement(update: bool) -> str:
    parts = ["s AS (SELECT nextval('change_seq') AS seq)"]
    if update:
        parts.append("r AS (UPDATE resource SET version = $3, last_updated = $4, deleted = 0, seq = s.seq, "
                     "content = $5 FROM s WHERE resource.pk = $7 RETURNING resource.pk, resource.seq)")
        parts += [f"d_{table} AS (DELETE FROM {table} WHERE pk = $7)" for table in INDEX_COLUMNS]
    else:
        parts.append("r AS (INSERT INTO resource (type, id, version, last_updated, deleted, seq, content) "
                     "SELECT $1, $2, $3, $4, 0, s.seq, $5 FROM s RETURNING pk, seq)")
    parts.append("v AS (INSERT INTO resource_version (seq, pk, type, id, version, last_updated, deleted, method, "
                 "content) SELECT r.seq, r.pk, $1, $2, $3, $4, 0, $6, $5 FROM r)")
    parts.append("o AS (INSERT INTO outbox (seq, type, id, version, method, created_at) "
                 "SELECT r.seq, $1, $2, $3, $6, $4 FROM r)")
    n = 7 if update else 6
    for table, cols in INDEX_COLUMNS.items():
        arrays = []
        for col in cols:
            n += 1
            arrays.append(f"${n}::{_ARRAY_TYPE.get((table, col), 'text')}[]")
        parts.append(f"i_{table} AS (INSERT INTO {table} (pk, type, {', '.join(cols)}) "
                     f"SELECT r.pk, $1, u.* FROM r, unnest({', '.join(arrays)}) AS u)")
    return "WITH " + ",\n".join(parts) + "\nSELECT pk, seq FROM r"


def arguments(rtype: str, rid: str, version: int, ts: int, content: bytes, method: str, pk: int | None,
              index: dict[str, list[tuple]]) -> list:
    args: list = [rtype, rid, version, ts, content, method] + ([pk] if pk is not None else [])
    for table, cols in INDEX_COLUMNS.items():
        rows = index.get(table) or []
        for i in range(len(cols)):
            args.append([row[i] for row in rows])
    return args
