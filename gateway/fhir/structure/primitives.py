"""Checks for FHIR R4 primitive values as they appear in JSON.

Each checker takes the JSON value and returns ``None`` when it is acceptable,
else ``(severity, issue_code, diagnostics)``.  Cheap string tests are tried
before the R4 regexes because most values are short, plain ASCII and valid;
the regexes are only the fallback or the exact definition where nothing
cheaper is equivalent.
"""

from __future__ import annotations

import binascii
import decimal
import math
import re
from typing import Any, Callable

from gateway.fhir.decimals import FhirDecimal

Problem = tuple[str, str, str]
Checker = Callable[[Any], "Problem | None"]

MAX_STRING = 1024 * 1024  # R4: strings SHALL NOT exceed 1MB (characters, here)
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

# Regexes from the R4 spec (datatypes.html), with years restricted below by a
# separate "0000" test to keep the pattern simple and fast.
_YEAR = r"[0-9]{4}"
_MONTH = r"(?:0[1-9]|1[0-2])"
_DAY = r"(?:0[1-9]|[12][0-9]|3[01])"
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]+)?"
_TZ = r"(?:Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
DATE_RE = re.compile(rf"{_YEAR}(?:-{_MONTH}(?:-{_DAY})?)?")
DATETIME_RE = re.compile(rf"{_YEAR}(?:-{_MONTH}(?:-{_DAY}(?:T{_TIME}{_TZ})?)?)?")
INSTANT_RE = re.compile(rf"{_YEAR}-{_MONTH}-{_DAY}T{_TIME}{_TZ}")
TIME_RE = re.compile(_TIME)
ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
OID_RE = re.compile(r"urn:oid:[0-2](?:\.(?:0|[1-9][0-9]*))+")
UUID_RE = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CODE_RE = re.compile(r"\S+(?: \S+)*")
NO_WS_RE = re.compile(r"\S+")
DECIMAL_RE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
INTEGER_RE = re.compile(r"-?(?:0|[1-9][0-9]*)")
UNSIGNED_RE = re.compile(r"0|[1-9][0-9]*")
POSITIVE_RE = re.compile(r"\+?[1-9][0-9]*")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")

_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

_JSON_KIND = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
              int: "a number", float: "a number", type(None): "null"}


def _wrong(value: Any, expected: str) -> Problem:
    got = _JSON_KIND.get(type(value), type(value).__name__)
    return ("error", "structure", f"Expected {expected} but found {got}")


def _bad(type_name: str, value: str, why: str = "") -> Problem:
    shown = value if len(value) <= 80 else value[:77] + "..."
    return ("error", "value", f"Invalid {type_name} '{shown}'{': ' + why if why else ''}")


def _calendar_ok(v: str) -> bool:
    # The regexes allow e.g. 2023-02-30; the calendar does not.
    if v[:4] == "0000":
        return False
    if len(v) < 10:
        return True
    month, day = int(v[5:7]), int(v[8:10])
    if day <= 28:
        return True
    if month == 2 and day == 29:
        year = int(v[:4])
        return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return day <= _DAYS[month]


def check_string(v: Any) -> Problem | None:
    if type(v) is not str:
        return _wrong(v, "a string")
    if not v:
        return ("error", "value", "Empty strings are not allowed; omit the element instead")
    if len(v) > MAX_STRING:
        return ("error", "too-long", f"String is {len(v)} characters; the limit is {MAX_STRING}")
    if not v.isprintable():
        if v.isspace():
            return ("warning", "value", "String contains only whitespace")
        if _CONTROL_RE.search(v):
            return ("warning", "value", "String contains control characters")
    elif v[0] == " " and v.isspace():
        return ("warning", "value", "String contains only whitespace")
    return None


def _pattern_checker(type_name: str, regex: re.Pattern[str], calendar: bool = False) -> Checker:
    match = regex.fullmatch

    def check(v: Any) -> Problem | None:
        if type(v) is not str:
            return _wrong(v, f"a string ({type_name})")
        if match(v) is None or (calendar and not _calendar_ok(v)):
            if not v:
                return ("error", "value", "Empty strings are not allowed; omit the element instead")
            return _bad(type_name, v)
        return None

    return check


def check_id(v: Any) -> Problem | None:
    if type(v) is str and ID_RE.fullmatch(v) is not None:
        return None
    if type(v) is not str:
        return _wrong(v, "a string (id)")
    if len(v) > 64:
        return _bad("id", v, f"{len(v)} characters, the maximum is 64")
    return _bad("id", v, "only A-Z, a-z, 0-9, '-' and '.' are allowed")


def check_code(v: Any) -> Problem | None:
    if type(v) is not str:
        return _wrong(v, "a string (code)")
    # isprintable() is False for every whitespace except ' ', so a printable
    # code only needs the leading/trailing/double space test.
    if v and v.isprintable():
        if v[0] != " " and v[-1] != " " and "  " not in v:
            return None
    elif CODE_RE.fullmatch(v) is not None:
        return None
    if not v:
        return ("error", "value", "Empty strings are not allowed; omit the element instead")
    return _bad("code", v, "no leading/trailing whitespace or runs of whitespace allowed")


def _uri_checker(type_name: str) -> Checker:
    def check(v: Any) -> Problem | None:
        if type(v) is not str:
            return _wrong(v, f"a string ({type_name})")
        if v and ((v.isprintable() and " " not in v) or NO_WS_RE.fullmatch(v)):
            return None
        if not v:
            return ("error", "value", "Empty strings are not allowed; omit the element instead")
        return _bad(type_name, v, "whitespace is not allowed")

    return check


def check_boolean(v: Any) -> Problem | None:
    if v is True or v is False:
        return None
    return _wrong(v, "a boolean (true or false)")


def _int_checker(type_name: str, low: int) -> Checker:
    def check(v: Any) -> Problem | None:
        if type(v) is int:  # excludes bool, whose type is bool
            if low <= v <= INT32_MAX:
                return None
            return ("error", "value", f"Value {v} is outside the {type_name} range {low}..{INT32_MAX}")
        if isinstance(v, (float, decimal.Decimal)):  # float, FhirDecimal or Decimal
            return ("error", "value", f"A {type_name} must be a whole number, found {v}")
        return _wrong(v, f"a number ({type_name})")

    return check


def check_decimal(v: Any) -> Problem | None:
    t = type(v)
    if t is int:
        return None
    if t is float or t is FhirDecimal:  # FhirDecimal: a float that keeps its written precision
        return None if math.isfinite(v) else ("error", "value", f"Value {v} is not a finite decimal")
    if t is decimal.Decimal:  # produced by the XML reader to keep lexical form
        return None if v.is_finite() else ("error", "value", f"Value {v} is not a finite decimal")
    if t is str:
        return ("error", "structure", f"A decimal must be a JSON number, not the string '{v[:40]}'")
    return _wrong(v, "a number (decimal)")


def check_base64(v: Any) -> Problem | None:
    if type(v) is not str:
        return _wrong(v, "a string (base64Binary)")
    if not v:
        return ("error", "value", "Empty strings are not allowed; omit the element instead")
    # The R4 regex allows whitespace between quads (wrapped XML text).
    data = v if v.isprintable() and " " not in v else "".join(v.split())
    try:
        binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError):
        return _bad("base64Binary", v, "not valid base64 (RFC 4648)")
    return None


def check_xhtml(v: Any) -> Problem | None:
    if type(v) is not str:
        return _wrong(v, "a string (xhtml)")
    if not v.lstrip().startswith("<div"):
        return ("error", "value", "The xhtml value must be a single <div> element")
    return None


CHECKERS: dict[str, Checker] = {
    "string": check_string,
    "markdown": check_string,
    "id": check_id,
    "code": check_code,
    "boolean": check_boolean,
    "integer": _int_checker("integer", INT32_MIN),
    "unsignedInt": _int_checker("unsignedInt", 0),
    "positiveInt": _int_checker("positiveInt", 1),
    "decimal": check_decimal,
    "base64Binary": check_base64,
    "uri": _uri_checker("uri"),
    "url": _uri_checker("url"),
    "canonical": _uri_checker("canonical"),
    "oid": _pattern_checker("oid", OID_RE),
    "uuid": _pattern_checker("uuid", UUID_RE),
    "date": _pattern_checker("date", DATE_RE, calendar=True),
    "dateTime": _pattern_checker("dateTime", DATETIME_RE, calendar=True),
    "instant": _pattern_checker("instant", INSTANT_RE, calendar=True),
    "time": _pattern_checker("time", TIME_RE),
    "xhtml": check_xhtml,
}
