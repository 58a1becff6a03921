"""String normalisation shared by the indexer and the search compiler.

Both sides must normalise identically or searches silently miss, which is why this lives in one
module that search_sql imports.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

# Parameters whose values are compared without any whitespace. UK postcodes are written
# "SW1A 1AA", "SW1A1AA" and "sw1a  1aa" interchangeably; dropping spaces makes all of them match
# and keeps prefix search ("SW1A") working.
_SPACELESS_PARAMS = frozenset({"address-postalcode"})


@lru_cache(maxsize=16384)
def _normalize_unicode(s: str) -> str:
    decomposed = unicodedata.normalize("NFKD", s)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


def normalize_string(s: str) -> str:
    """Accent- and case-insensitive form: NFKD, drop combining marks, casefold, collapse spaces."""
    if s.isascii():  # NFKD and casefold are identity/lower() on ASCII: skip the slow path
        return " ".join(s.lower().split())
    return _normalize_unicode(s)


def normalize_for_param(param: str, s: str) -> str:
    """`normalize_string`, plus the per-parameter rules (postcodes lose their spaces)."""
    n = normalize_string(s)
    return n.replace(" ", "") if param in _SPACELESS_PARAMS else n


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (code-point order).

    Byte order of UTF-8 (SQLite BINARY, Postgres COLLATE "C") equals code-point order, so
    `col >= prefix AND col < bound` is a starts-with test that can use a b-tree index.
    Returns None when no bound exists (empty prefix or all U+10FFFF).
    """
    chars = list(prefix)
    while chars:
        cp = ord(chars[-1]) + 1
        if 0xD800 <= cp <= 0xDFFF:  # surrogates cannot be encoded: skip the block
            cp = 0xE000
        if cp <= 0x10FFFF:
            chars[-1] = chr(cp)
            return "".join(chars)
        chars.pop()
    return None


def escape_like(s: str) -> str:
    r"""Escape LIKE wildcards for use with `ESCAPE '\'`."""
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
