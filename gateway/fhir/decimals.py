"""FHIR decimals keep their precision: `1.50` is stored and served as `1.50`, not `1.5`.

FHIR says a decimal's precision is part of its value (a lab result of 7.50 was measured to two
places). orjson reads every JSON number with a fraction as a float, which forgets the trailing zero
(and the exponent, and digits past the 17th). So:

* `loads(raw)` parses with orjson (fast, strict) and only when the bytes hold a number literal that
  a float would not give back as written, parses again keeping each such literal as a
  `FhirDecimal`: a float (so validation, indexing, FHIRPath and comparisons work unchanged) that
  remembers its text;
* `dumps(value)` writes a `FhirDecimal` as that text (`orjson.Fragment`), everything else as orjson
  does. Every place that turns a resource back into bytes uses it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# A number token (after `:` `[` or `,`) with a fraction ending in 0, an exponent, 16 digits or
# more (past a float's precision), or below 0.0001 (orjson writes 0.000001 as 1e-6). It may also
# match inside a string, which only costs the slower exact parse; it must never miss a literal
# that a float would rewrite.
_INEXACT = re.compile(
    rb"[:\[,]\s*(?:-0(?![.\d])|-?(?:(?=(?:\d\.?){16})|0\.0000|\d+(?:\.\d*0(?!\d)|(?:\.\d+)?[eE])))")


class FhirDecimal(float):
    """A JSON number read from text that a float would not reproduce exactly."""

    __slots__ = ("text",)

    def __new__(cls, text: str) -> "FhirDecimal":
        value = float.__new__(cls, text)
        value.text = text
        return value

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__

    def __reduce__(self):
        return FhirDecimal, (self.text,)

    def __deepcopy__(self, memo) -> "FhirDecimal":
        return self


def _decimal(text: str) -> float:
    number = float(text)
    return number if repr(number) == text else FhirDecimal(text)


def _integer(text: str) -> int | float:
    number = int(text)
    # -0 would come back as 0; past 64 bits orjson cannot write an int (and reads it as a float)
    if text == "-0" or not -(2**63) <= number < 2**64:
        return FhirDecimal(text)
    return number


def decimal_from_text(text: str) -> int | float:
    """The JSON value for a decimal written as `text` (a CSV cell, an XML attribute): an int for a
    whole number written without a point, else a float, or a FhirDecimal where a float would not
    give `text` back (`10.50`)."""
    if "." not in text and "e" not in text and "E" not in text:
        return _integer(text)
    return _decimal(text)


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def loads(raw: bytes | str) -> Any:
    """JSON to Python, as orjson would, except that imprecise decimals keep their written form."""
    value = orjson.loads(raw)  # strict: invalid UTF-8, NaN, lone surrogates are refused here
    data = raw.encode() if isinstance(raw, str) else raw
    if _INEXACT.search(data) is None:
        return value
    return json.loads(data, parse_float=_decimal, parse_int=_integer, parse_constant=_no_constants)


def same(a: Any, b: Any) -> bool:
    """Equal as FHIR JSON, precision included: `1.50` and `1.5` differ (Python's `==` says equal)."""
    if type(a) is dict:
        return type(b) is dict and a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if type(a) is list:
        return type(b) is list and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return type(a) is not bool and type(b) is not bool and _text(a) == _text(b)
    return type(a) is type(b) and a == b


def _text(number: Any) -> str | None:
    if isinstance(number, FhirDecimal):
        return number.text
    return repr(number) if isinstance(number, (int, float)) else None


def unchanged(stored: bytes, old: dict, new: dict) -> bool:
    """`new` would store the same as `old` (read from `stored` with `loads`): `old == new` and, when
    either holds a literal a float would rewrite, the same written forms too (1.5 → 1.50 is a change)."""
    if old != new:
        return False
    if _INEXACT.search(stored) is None and _INEXACT.search(dumps(new)) is None:
        return True  # every number on both sides is exactly what `==` compared
    return same(old, new)


def _default(value: Any) -> Any:
    if isinstance(value, FhirDecimal):
        return orjson.Fragment(value.text.encode())
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def dumps(value: Any, option: int | None = None) -> bytes:
    """Python to JSON bytes, as orjson would, writing each FhirDecimal as it was read."""
    if option is None:
        return orjson.dumps(value, default=_default)
    return orjson.dumps(value, default=_default, option=option)


def dumps_plain(value: Any) -> tuple[bytes, bool]:
    """`dumps(value)`, and whether it held no FhirDecimal (so `orjson.loads` of bytes made from
    it, with only strings changed, gives what `loads` would, without the scan for decimals)."""
    found = False

    def default(v: Any) -> Any:
        nonlocal found
        found = True  # only a FhirDecimal gets past `_default`
        return _default(v)

    return orjson.dumps(value, default=default), not found


def copy_json(value: Any) -> Any:
    """An independent copy of JSON data (a round trip through orjson: several times faster than
    `copy.deepcopy`), FhirDecimals included."""
    raw, plain = dumps_plain(value)
    return orjson.loads(raw) if plain else json.loads(raw, parse_float=_decimal, parse_int=_integer)
