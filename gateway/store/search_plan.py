"""Running one search page so that its cost follows the page size, not the number of matches.

`SqlSession.search` runs `SELECT ... FROM resource r WHERE <compiled filter> ORDER BY ... LIMIT`.
Its filters are `r.pk IN (subquery)`, so both engines first build the whole match set (175,000
rows for `Encounter?status=finished` in a million-resource store) and only then take 21 rows by
pk: hundreds of milliseconds for a 20-row page.

A page in pk order (no `_sort`) with at least one positive index filter (a `Driver`) is run here
instead, starting from that filter's index rows: the token, reference and uri indexes end in pk
(gateway.store.schema), so for one value they list their resources in pk order and the join to
`resource` stops after `_count + 1` rows. The keyset of the next page is `pk > last`, read from
the same index, so a page never skips or repeats a row whatever is written meanwhile. The other
filters of the search are checked per walked row (`per_row`, the subscription matcher's
rewrite), which costs a probe of that row's index entries instead of building their whole set.

Everything else (`_sort`, searches with no positive index filter) goes to `SqlSession.search`.
"""

from __future__ import annotations

from gateway.events.matching import per_row
from gateway.store.search_sql import CompiledFilter, Driver
from gateway.store.sql import _RCOLS, Page, _row

# Index entries counted per filter when a search has several, to start from the smallest.
_PROBE = 1000


async def search_page(
    session,
    compiled: CompiledFilter,
    sorts: list[tuple[str, list, bool]],
    count: int,
    after: list | None,
    with_total: bool,
    total_cap: int | None,
    *,
    index_total: bool,
) -> Page:
    """A page of `compiled`'s matches after keyset `after`, with the total when asked.

    `total_cap` None: the total is exact. Otherwise it is None (left out) whenever counting it
    could cost more than about `total_cap` index entries: a single-filter search counts exactly
    up to `total_cap` matches; with several filters, or a caller who cannot see everything, the
    total is exact when the filter the page starts from has at most `total_cap` index entries
    and left out otherwise. It is never a wrong number.
    `index_total`: the caller sees every resource, so a single-filter total may be counted
    from the index table alone (deletes and updates remove a resource's old index rows in the
    same transaction, so index rows are exactly the live resources). A filtered caller's total
    always goes through `resource`, which the visibility filter restricts.
    """
    keyset_ok = after is None or (len(after) == 1 and isinstance(after[0], int) and not isinstance(after[0], bool))
    choice = None if sorts or not keyset_ok else await _choose(session, compiled)
    if choice is None:
        return await session.search(compiled.where, compiled.args, sorts, count, after, with_total, total_cap)
    d = compiled.drivers[choice]
    dialect = session.dialect.name
    # The page must be a nested loop from the index, probing `resource` by pk for each entry.
    # SQLite has no statistics in a store the gateway filled: CROSS JOIN fixes the join order.
    # PostgreSQL, knowing 175,000 rows match, prefers a merge join that reads `resource` in pk
    # order from its first row (180 ms when the type's rows start late in the table); a lateral
    # subquery that OFFSET 0 keeps from being flattened leaves it only the per-entry probe.
    if dialect == "sqlite":
        join = f"CROSS JOIN resource r ON r.pk = {d.alias}.pk"
    else:
        join = f"CROSS JOIN LATERAL (SELECT * FROM resource WHERE pk = {d.alias}.pk OFFSET 0) r"
    conds, args = [d.cond, "r.type = ?", "r.deleted = 0"], [*d.args, compiled.resource_type]
    for i, (frag, frag_args) in enumerate(compiled.terms):
        if i != choice:
            conds.append(per_row(frag, dialect)[0])  # same answer, probed for the walked row only
            args += frag_args
    base = f"FROM {d.table} {d.alias} {join} WHERE {' AND '.join(conds)}"
    alone = len(compiled.terms) == 1

    rows: list = []
    if count > 0:
        last = after[0] if after else None
        while True:
            keyset, keyset_args = ("", []) if last is None else (f" AND {d.alias}.pk > ?", [last])
            got = await session.conn.fetch(
                f"SELECT {_RCOLS} {base}{keyset} ORDER BY {d.alias}.pk LIMIT ?", [*args, *keyset_args, count + 1]
            )
            for r in got:  # a resource with the same value twice has two index rows, side by side
                if not rows or rows[-1][0] != r[0]:
                    rows.append(r)
            if len(rows) > count or len(got) <= count:
                break
            last = got[-1][0]
    nxt = [rows[count - 1][0]] if len(rows) > count else None
    rows = rows[:count]

    total = None
    if with_total:
        if total_cap is None:  # asked for: exact, whatever it costs
            if index_total and alone:
                sub, sub_args = f"FROM {d.table} {d.alias} WHERE {d.cond}", list(d.args)
            else:
                sub, sub_args = base, args
            r = await session.conn.fetchrow(f"SELECT COUNT(DISTINCT {d.alias}.pk) {sub}", sub_args)
            total = int(r[0])
        elif index_total and alone:
            # Distinct pks in index order, stopping after cap + 1: bounded whatever the matches
            r = await session.conn.fetchrow(
                f"SELECT COUNT(*) FROM (SELECT DISTINCT {d.alias}.pk FROM {d.table} {d.alias} WHERE {d.cond}"
                f" ORDER BY {d.alias}.pk LIMIT ?) c",
                [*d.args, total_cap + 1],
            )
            total = int(r[0]) if r[0] <= total_cap else None
        elif await _probe(session, d, total_cap) <= total_cap:
            # Other filters (or the caller's visibility) decide which of the driver's rows count;
            # the driver has at most `cap` of them, so checking them all stays bounded.
            r = await session.conn.fetchrow(f"SELECT COUNT(DISTINCT {d.alias}.pk) {base}", args)
            total = int(r[0])
        # else: more than `cap` candidates; counting the matches among them would cost up to the
        # whole driver (175,000 rows for a broad status), so the total is left out (FHIR allows it)
    return Page([_row(r) for r in rows], total, nxt)


async def _choose(session, compiled: CompiledFilter) -> int | None:
    """Which filter to start from: the one with fewest index entries (counted up to _PROBE),
    a pk-ordered one on a tie; None when no filter can start the search."""
    found = [(i, d) for i, d in enumerate(compiled.drivers) if d is not None]
    if len(found) <= 1:
        return found[0][0] if found else None
    best: tuple | None = None
    for i, d in found:
        n = await _probe(session, d, _PROBE)
        key = (n, not d.ordered, i)
        if best is None or key < best:
            best = key
    return best[2]


async def _probe(session, d: Driver, limit: int) -> int:
    """The driver's index entries, counted up to limit + 1 (index only: cheap, never returned)."""
    r = await session.conn.fetchrow(
        f"SELECT COUNT(*) FROM (SELECT 1 FROM {d.table} {d.alias} WHERE {d.cond} LIMIT ?) c", [*d.args, limit + 1]
    )
    return int(r[0])
