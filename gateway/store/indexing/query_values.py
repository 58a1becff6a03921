r"""Parsing search values: escapes, OR lists, prefixes and number precision (FHIR R4 search).

In a search value `,` separates alternatives (OR), `|` separates token/quantity parts and `$`
composite parts; each may be escaped with `\`. Splitting must happen before unescaping, so the
splitters keep escapes and `unescape` is applied to the final pieces.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})


def split_unescaped(value: str, sep: str) -> list[str]:
    r"""Split on `sep` not preceded by a backslash; escapes are kept for later splits."""
    parts: list[str] = []
    cur: list[str] = []
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c == "\\" and i + 1 < n:
            cur.append(value[i : i + 2])
            i += 2
            continue
        if c == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def unescape(value: str) -> str:
    r"""Remove the escaping backslash of `\,` `\|` `\$` `\\`; other backslashes stay."""
    if "\\" not in value:
        return value
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c == "\\" and i + 1 < n and value[i + 1] in ",|$\\":
            out.append(value[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def split_prefix(value: str) -> tuple[str, str]:
    """('ge', '2024') from 'ge2024'; a missing prefix means 'eq'.

    Only a leading pair of lower-case letters counts as a prefix attempt, so an unknown one
    (`xx2024`) is reported by the caller rather than parsed as part of the value.
    """
    if len(value) >= 2 and value[0].isalpha() and value[1].isalpha() and value[:2].islower():
        return value[:2], value[2:]
    return "eq", value


def parse_number(text: str) -> tuple[float, float, float]:
    """(value, low, high) of a search number: the range its significant figures imply.

    R4: `100` means [99.5, 100.5) and `1e2` means [50, 150), i.e. +/- half a unit of the last
    significant digit. Raises ValueError for non-numbers.
    """
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a number: {text!r}") from None
    if not d.is_finite() or not text.strip():
        raise ValueError(f"not a number: {text!r}")
    half = Decimal(5).scaleb(d.as_tuple().exponent - 1)
    return float(d), float(d - half), float(d + half)
