"""FHIRPath values: items, type names, equality, ordering and dates.

A collection is a Python list of items; an item is a `(value, type)` pair where value is the JSON
value (dict, str, bool, int, float) and type is the FHIR type name from the type table
("Quantity", "code", "Patient", "EncounterHospitalization"), a System type ("System.String") for
literals and computed values, or None when the type could not be known.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from gateway.fhir.structure import type_info

Item = tuple[Any, "str | None"]

DATE_TYPES = frozenset({"date", "dateTime", "instant", "System.Date", "System.DateTime"})
STRING_TYPES = frozenset({"string", "code", "id", "uri", "url", "canonical", "oid", "uuid", "markdown",
                          "base64Binary", "xhtml", "System.String"})
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?"
                   r"(Z|[+-]\d{2}:\d{2})?)?)?)?$")


def system_type(value: Any) -> str:
    if isinstance(value, bool):
        return "System.Boolean"
    if isinstance(value, int):
        return "System.Integer"
    if isinstance(value, float):
        return "System.Decimal"
    if isinstance(value, str):
        return "System.String"
    return "System.Any"


def type_of(item: Item) -> str:
    value, typ = item
    if typ:
        return typ
    if isinstance(value, dict):
        rt = value.get("resourceType")
        return rt if isinstance(rt, str) else "Element"
    return system_type(value)


_SYSTEM_FOR_FHIR = {"boolean": "Boolean", "integer": "Integer", "unsignedInt": "Integer", "positiveInt": "Integer",
                    "decimal": "Decimal", "date": "Date", "dateTime": "DateTime", "instant": "DateTime",
                    "time": "Time"}


def is_type(item: Item, wanted: str) -> bool:
    """`item is wanted`: exact FHIR type, a resource or datatype ancestor we know, or a System type."""
    name = wanted.split(".", 1)[1] if wanted.startswith(("FHIR.", "System.")) else wanted
    actual = type_of(item)
    if actual == name:
        return True
    if actual.startswith("System."):
        return actual[7:].lower() == name.lower()
    if wanted.startswith("System."):
        return _SYSTEM_FOR_FHIR.get(actual, "String" if actual in STRING_TYPES else "") == name
    if name in ("Resource", "DomainResource"):
        info = type_info(actual)
        return info is not None and info.is_resource
    if name in ("Element", "BackboneElement"):
        return not (type_info(actual) or type_info("Element")).is_resource
    return False


def parse_date(text: str) -> tuple[tuple[int, ...], bool] | None:
    """A FHIR date/dateTime/instant as (components in UTC when timed, has_time); None if not one."""
    m = _DATE.match(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, tz = m.groups()
    parts = [int(year)] + [int(p) for p in (month, day) if p is not None]
    if hour is None:
        return tuple(parts), False
    minute = minute or "00"
    offset = timezone.utc
    if tz not in (None, "Z"):
        sign = -1 if tz[0] == "-" else 1
        offset = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
    dt = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
                  int((fraction or "0")[:6].ljust(6, "0")), tzinfo=offset)
    dt = dt.astimezone(timezone.utc)
    precision = 6 if second is not None else 5
    full = (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second * 1_000_000 + dt.microsecond)
    return full[:precision], True


def _date_pair(a: Item, b: Item):
    if not (isinstance(a[0], str) and isinstance(b[0], str)):
        return None
    if a[1] in DATE_TYPES or b[1] in DATE_TYPES:
        da, db = parse_date(a[0]), parse_date(b[0])
        if da is not None and db is not None:
            return da[0], db[0]
    return None


def compare(a: Item, b: Item) -> int | None:
    """-1 / 0 / 1, or None when the two cannot be ordered (different precisions that tie)."""
    dates = _date_pair(a, b)
    if dates is not None:
        x, y = dates
        n = min(len(x), len(y))
        if x[:n] != y[:n]:
            return -1 if x[:n] < y[:n] else 1
        return 0 if len(x) == len(y) else None
    x, y = a[0], b[0]
    if isinstance(x, dict) and isinstance(y, dict):  # Quantity with the same unit
        if x.get("code", x.get("unit")) != y.get("code", y.get("unit")):
            return None
        x, y = x.get("value"), y.get("value")
    if isinstance(x, bool) or isinstance(y, bool):
        return None
    if isinstance(x, (int, float)) and isinstance(y, (int, float)):
        return (x > y) - (x < y)
    if isinstance(x, str) and isinstance(y, str):
        return (x > y) - (x < y)
    return None


def equal(a: Item, b: Item) -> bool | None:
    dates = _date_pair(a, b)
    if dates is not None:
        x, y = dates
        if len(x) != len(y):
            n = min(len(x), len(y))
            return False if x[:n] != y[:n] else None
        return x == y
    x, y = a[0], b[0]
    if isinstance(x, bool) != isinstance(y, bool):
        return False
    return x == y


def equivalent(a: Item, b: Item) -> bool:
    x, y = a[0], b[0]
    if isinstance(x, str) and isinstance(y, str):
        return " ".join(x.lower().split()) == " ".join(y.lower().split())
    if isinstance(x, float) or isinstance(y, float):
        try:
            return round(float(x), 6) == round(float(y), 6)
        except (TypeError, ValueError):
            return False
    if isinstance(x, dict) and isinstance(y, dict):
        keys = (set(x) | set(y)) - {"id", "extension", "display"}
        return all(x.get(k) == y.get(k) for k in keys)
    return bool(equal(a, b))


def to_string(item: Item) -> str | None:
    value = item[0]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, dict) and "value" in value and ("unit" in value or "code" in value):
        return f"{value['value']} '{value.get('code') or value.get('unit')}'"
    return None
