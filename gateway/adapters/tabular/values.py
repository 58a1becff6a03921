"""Turning one cell into a typed value, or saying exactly what is wrong with it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.fhir.decimals import decimal_from_text
from gateway.pipeline.identity import is_valid_nhs_number, normalise_nhs_number, normalise_postcode

from .spec import Column, ColumnSpec


class BadValue(ValueError):
    """The cell cannot be read as its column's type; the message names the problem."""


_MOMENTS: dict[tuple, tuple[str | None, str]] = {}
_MOMENTS_MAX = 100_000


def _moment(col: Column, raw: str) -> tuple[str | None, str]:
    """(ISO value, "") or (None, why not)."""
    for fmt in col.formats:
        try:
            moment = datetime.strptime(raw, fmt)
        except ValueError:
            continue
        return (moment.date().isoformat() if col.type == "date" else moment.time().isoformat()), ""
    return None, f"{raw!r} is not a {col.type} in the expected format ({' or '.join(col.formats)})"


def parse_cell(spec: ColumnSpec, col: Column, raw: str) -> Any:
    """The typed value of a non-empty cell (already stripped): str for string, date (ISO), time
    (HH:MM:SS), nhs-number (10 digits) and postcode (`LS6 2QT`); int; int or float for decimal;
    CodeValue for code. Raises BadValue."""
    if col.type == "string":
        if col.max_length and len(raw) > col.max_length:
            raise BadValue(f"longer than {col.max_length} characters")
        if col.pattern and not col.pattern.fullmatch(raw):
            raise BadValue(f"{raw!r} does not match the expected pattern {col.pattern.pattern}")
        return raw
    if col.type in ("date", "time"):
        # strptime is slow and a file repeats its dates (reporting periods, event days), so each
        # distinct (formats, type, cell) is parsed once per process; the memo is bounded.
        key = (col.formats, col.type, raw)
        known = _MOMENTS.get(key)
        if known is None:
            known = _moment(col, raw)
            if len(_MOMENTS) >= _MOMENTS_MAX:
                _MOMENTS.clear()
            _MOMENTS[key] = known
        if known[0] is None:
            raise BadValue(known[1])
        return known[0]
    if col.type in ("integer", "decimal"):
        try:
            number = Decimal(raw.replace(",", "")) if col.type == "decimal" else Decimal(int(raw))
        except (InvalidOperation, ValueError):
            raise BadValue(f"{raw!r} is not {'a number' if col.type == 'decimal' else 'a whole number'}") from None
        if not number.is_finite():
            raise BadValue(f"{raw!r} is not a number")
        if col.min is not None and number < Decimal(str(col.min)):
            raise BadValue(f"{raw} is below the minimum {col.min}")
        if col.max is not None and number > Decimal(str(col.max)):
            raise BadValue(f"{raw} is above the maximum {col.max}")
        if col.type == "integer":
            return int(number)
        return decimal_from_text(str(number))  # "10.50" stays 10.50 (FHIR decimals keep their precision)
    if col.type == "nhs-number":
        if normalise_nhs_number(raw) is None:
            raise BadValue(f"{raw!r} is not a 10-digit NHS number")
        if not is_valid_nhs_number(raw):
            raise BadValue(f"{raw!r} fails the NHS number Modulus 11 check")
        return normalise_nhs_number(raw)
    if col.type == "postcode":
        postcode = normalise_postcode(raw)
        if postcode is None:
            raise BadValue(f"{raw!r} is not a UK postcode")
        return postcode
    if col.type == "code":
        table = spec.codes[col.concept_map]  # type: ignore[index]
        value = table.lookup(raw)
        if value is None:
            raise BadValue(f"{raw!r} is not a known code (ConceptMap {table.name})")
        return value
    raise BadValue(f"unsupported column type {col.type}")  # load_spec prevents this
