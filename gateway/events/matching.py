"""Testing a few changed resources against a criteria: the search's own SQL, made per-row.

`compile_search` gives one boolean over `resource r` whose filters are uncorrelated subqueries
(`r.pk IN (SELECT i.pk FROM idx_token i WHERE ...)`). For a search that is right: each subquery is
answered once from the (type, param, value) indexes. For a subscription it is wrong: the changed
resources are a handful, but an uncorrelated subquery is evaluated in full - every active referral,
every tagged patient - on each dispatch, so matching would slow down as the record grows.

`per_row` adds to each subquery the equality that ties it to the row it tests (`i.pk = r.pk`; in a
chain `i.pk = t.pk` for the referenced resource; `x.target_id = r.id` for `_has`). That changes no
answer - the subquery had to contain that row's pk for the row to match - but lets the database
probe the index rows of that one resource. Both planners, left to themselves, prefer the
(type, param, value) index and filter it by pk - a scan of every match again - so SQLite is told
`INDEXED BY <table>_pk` and PostgreSQL gets the pk probe as an unflattenable derived table
(`OFFSET 0`). A fragment the patterns do not recognise is left as it is: still correct,
only slower; `tests/test_events_units.py` checks that every kind of filter is recognised.
"""

from __future__ import annotations

import re

# o.pk [NOT] IN (SELECT i.pk FROM idx_x i [JOIN resource t ON ...] WHERE     (filters, :missing)
_PK = re.compile(r"\b(\w+)\.pk (?:NOT )?IN \(SELECT (\w+)\.pk FROM (idx_\w+) \2((?: JOIN resource \w+ ON [^()]*?)?) WHERE ")
# o.id IN (SELECT x.target_id FROM idx_reference x JOIN resource h ON h.pk = x.pk WHERE     (_has)
_HAS = re.compile(r"\b(\w+)\.id IN \(SELECT (\w+)\.target_id FROM idx_reference \2 JOIN resource (\w+) ON \3\.pk = \2\.pk WHERE ")
_SUBQUERY = re.compile(r"\b\w+\.(?:pk|id) (?:NOT )?IN \(SELECT ")
# SELECT x.pk FROM resource t CROSS JOIN idx_reference x WHERE    (one arm of a chain; arms are
# joined by UNION ALL inside `o.pk IN (...)`)
_CHAIN_ARM = re.compile(r"SELECT (\w+)\.pk FROM resource (\w+) CROSS JOIN idx_reference \1 WHERE ")
_IN_OPEN = re.compile(r"\b(\w+)\.pk IN $")


def _opener(where: str, at: int) -> tuple[str, bool]:
    """For a chain arm starting at `at`: the alias of the row it is tested against, and whether it
    is the chain's first arm (what `subqueries` counts)."""
    depth, j = 0, at - 1
    while j >= 0:
        ch = where[j]
        if ch == ")":
            depth += 1
        elif ch == "(":
            if depth == 0:
                break
            depth -= 1
        j -= 1
    m = _IN_OPEN.search(where, 0, max(j, 0))
    if m is None:
        raise ValueError("chain arm outside an IN list")
    return m.group(1), where[j + 1:at] == ""


def per_row(where: str, dialect: str) -> tuple[str, int]:
    """(the rewritten expression, how many subqueries were tied to their row)."""
    count = 0

    def pk(m: re.Match) -> str:
        nonlocal count
        count += 1
        outer, inner, table, join = m.groups()
        head = m.group(0)[: m.group(0).index(" FROM ")]
        if dialect == "sqlite":
            return f"{head} FROM {table} {inner} INDEXED BY {table}_pk{join} WHERE {inner}.pk = {outer}.pk AND "
        # PostgreSQL has no hints; a derived table with OFFSET 0 is not flattened, so the pk probe
        # is all its planner sees for that table
        return f"{head} FROM (SELECT * FROM {table} WHERE pk = {outer}.pk OFFSET 0) {inner}{join} WHERE "

    def has(m: re.Match) -> str:
        nonlocal count
        count += 1
        outer, ref, source = m.groups()
        head = m.group(0)[: m.group(0).index(" FROM ")]
        join = f" JOIN resource {source} ON {source}.pk = {ref}.pk WHERE "
        if dialect == "sqlite":  # references to this row, by the index that starts with target_id
            return f"{head} FROM idx_reference {ref} INDEXED BY idx_reference_lookup{join}{ref}.target_id = {outer}.id AND "
        return f"{head} FROM (SELECT * FROM idx_reference WHERE target_id = {outer}.id OFFSET 0) {ref}{join}"

    def arms(text: str) -> str:
        # Each arm starts from the referring row's own reference rows, then finds the target.
        nonlocal count
        out, last = [], 0
        for m in _CHAIN_ARM.finditer(text):
            outer, first = _opener(text, m.start())
            count += first
            ref, target = m.groups()
            if dialect == "sqlite":
                arm = (f"SELECT {ref}.pk FROM idx_reference {ref} INDEXED BY idx_reference_pk CROSS JOIN resource "
                       f"{target} WHERE {ref}.pk = {outer}.pk AND ")
            else:
                arm = (f"SELECT {ref}.pk FROM (SELECT * FROM idx_reference WHERE pk = {outer}.pk OFFSET 0) {ref} "
                       f"CROSS JOIN resource {target} WHERE ")
            out += [text[last:m.start()], arm]
            last = m.end()
        return "".join(out) + text[last:]

    where = arms(where)
    where = _PK.sub(pk, where)
    where = _HAS.sub(has, where)
    return where, count


def subqueries(where: str) -> int:
    """How many filters of `where` are subqueries on a row (what `per_row` should tie)."""
    return len(_SUBQUERY.findall(where))
