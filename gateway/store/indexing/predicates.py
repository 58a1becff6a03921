"""SQL predicates on index-table columns for one search value (used by gateway.store.search_sql).

They sit beside the indexer because they are the other half of its storage format: how a date
interval, a number or a normalised string is stored decides how it must be compared. Every
predicate uses `?` placeholders only and is valid in both SQLite and PostgreSQL.
"""

from __future__ import annotations

import time

from .normalize import prefix_upper_bound

Frag = tuple[str, list]


def prefix_cond(col: str, prefix: str) -> Frag:
    """`col` starts with `prefix`, as an index-friendly range."""
    upper = prefix_upper_bound(prefix)
    if upper is None:
        return f"{col} >= ?", [prefix]
    return f"{col} >= ? AND {col} < ?", [prefix, upper]


def date_cond(prefix: str, sl: int, sh: int, low: str, high: str) -> Frag:
    """R4 date prefix semantics: stored interval [low, high] against search interval [sl, sh]."""
    if prefix == "eq":  # the search range contains the stored range
        # `low <= sh` follows from the rest; written out, it bounds the (type, param, low) index
        # range on both sides (else `birthdate=1940-03-02` read every earlier birth date).
        return f"{low} >= ? AND {low} <= ? AND {high} <= ?", [sl, sh, sh]
    if prefix == "ne":  # ... does not contain it
        return f"({low} < ? OR {high} > ?)", [sl, sh]
    if prefix == "gt":  # the stored range reaches above the search range
        return f"{high} > ?", [sh]
    if prefix == "lt":  # the stored range reaches below the search range
        return f"{low} < ?", [sl]
    if prefix == "ge":  # gt, or contained
        return f"({high} > ? OR ({low} >= ? AND {high} <= ?))", [sh, sl, sh]
    if prefix == "le":  # lt, or contained
        return f"({low} < ? OR ({low} >= ? AND {high} <= ?))", [sl, sl, sh]
    if prefix == "sa":  # starts after the search range ends
        return f"{low} > ?", [sh]
    if prefix == "eb":  # ends before the search range starts
        return f"{high} < ?", [sl]
    if prefix == "ap":
        # Overlap with the search range widened by 10% of its distance from now, the spec's
        # suggested reading of "approximately".
        now = time.time_ns() // 1000
        slack = abs(now - sl) // 10
        return f"{low} <= ? AND {high} >= ?", [sh + slack, sl - slack]
    raise ValueError(f"unknown prefix {prefix!r}")


def number_cond(prefix: str, value: float, low: float, high: float, col: str) -> Frag:
    """R4 number prefixes; [low, high) is the range the value's significant figures imply."""
    if prefix == "eq":
        return f"{col} >= ? AND {col} < ?", [low, high]
    if prefix == "ne":
        return f"({col} < ? OR {col} >= ?)", [low, high]
    if prefix in ("gt", "sa"):
        return f"{col} > ?", [value]
    if prefix in ("lt", "eb"):
        return f"{col} < ?", [value]
    if prefix == "ge":
        return f"{col} >= ?", [value]
    if prefix == "le":
        return f"{col} <= ?", [value]
    if prefix == "ap":  # within 10%, and never narrower than the value's own precision
        slack = abs(value) * 0.1
        return f"{col} >= ? AND {col} <= ?", [min(low, value - slack), max(high, value + slack)]
    raise ValueError(f"unknown prefix {prefix!r}")


def uri_above_candidates(uri: str) -> list[str]:
    """`uri` and every parent of it at a '/' boundary, with and without the trailing slash.

    `:above=http://acme.org/fhir/ValueSet/123` matches a stored `http://acme.org/fhir/`.
    """
    start = uri.find("://") + 3 if "://" in uri else 0
    cands = {uri}
    for i, c in enumerate(uri):
        if c == "/" and i >= start:
            cands.update((uri[:i], uri[: i + 1]))
    cands.discard("")
    return sorted(cands)
