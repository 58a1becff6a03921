"""FHIR date/dateTime/instant values as closed intervals of microseconds since the epoch (UTC).

A FHIR date is a range, not a point: `2024` means the whole year and `2024-03-05T10:00` the whole
minute. Storing [low, high] lets every search prefix become integer comparisons. Values without
an offset (all dates, and dateTimes written without `Z`/`+hh:mm`) are read in the server's zone,
so "2024-07-01" in Europe/London starts at 23:00Z the day before (BST).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

DEFAULT_TZ = ZoneInfo("Europe/London")

# Open ends of a Period. Far outside any real date but well inside BIGINT, so arithmetic on them
# (e.g. widening a range for `ap`) cannot overflow either dialect.
MIN_TIME = -(2**62)
MAX_TIME = 2**62

_US = 1_000_000
_DAY_US = 86_400 * _US
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

_DATE_RE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def _midnight_us(y: int, m: int, d: int) -> int:
    """Microseconds of UTC midnight starting the given civil day."""
    return (date(y, m, d).toordinal() - _EPOCH_ORDINAL) * _DAY_US


def _local_us(y: int, mo: int, d: int, h: int, mi: int, s: int, tz: ZoneInfo) -> int:
    """A wall-clock time in `tz` as UTC microseconds.

    `utcoffset` of a naive datetime resolves summer time (fold=0 for repeated/skipped hours).
    """
    offset = tz.utcoffset(datetime(y, mo, d, h, mi, s))
    off_us = (offset.days * 86_400 + offset.seconds) * _US if offset else 0
    return _midnight_us(y, mo, d) + (h * 3600 + mi * 60 + s) * _US - off_us


def _next_month(y: int, m: int) -> tuple[int, int]:
    return (y + 1, 1) if m == 12 else (y, m + 1)


@lru_cache(maxsize=8192)
def date_range(value: str, tz: ZoneInfo = DEFAULT_TZ) -> tuple[int, int]:
    """The closed UTC-microsecond interval a FHIR date/dateTime/instant denotes.

    Raises ValueError for anything that is not a FHIR date (search values such as
    `2024-03-05T10:00` without seconds are accepted too).
    """
    m = _DATE_RE.fullmatch(value)
    if m is None:
        raise ValueError(f"not a FHIR date: {value!r}")
    ys, mos, ds, hs, mis, ss, frac, off = m.groups()
    y = int(ys)
    try:
        if mos is None:  # year precision
            low = _local_us(y, 1, 1, 0, 0, 0, tz)
            high = _local_us(y + 1, 1, 1, 0, 0, 0, tz) - 1 if y < 9999 else MAX_TIME
            return low, high
        mo = int(mos)
        if ds is None:  # month precision
            ny, nm = _next_month(y, mo)
            low = _local_us(y, mo, 1, 0, 0, 0, tz)
            high = _local_us(ny, nm, 1, 0, 0, 0, tz) - 1 if ny <= 9999 else MAX_TIME
            return low, high
        d = int(ds)
        if hs is None:  # day precision: local midnight to local midnight (23 or 25 h on DST days)
            low = _local_us(y, mo, d, 0, 0, 0, tz)
            nxt = date.fromordinal(date(y, mo, d).toordinal() + 1) if (y, mo, d) != (9999, 12, 31) else None
            high = _local_us(nxt.year, nxt.month, nxt.day, 0, 0, 0, tz) - 1 if nxt else MAX_TIME
            return low, high
        h, mi = int(hs), int(mis)
        s = min(int(ss), 59) if ss is not None else 0  # a leap second folds into :59
        if h > 23 or mi > 59:
            raise ValueError(f"time out of range: {value!r}")
        if off is None:
            low = _local_us(y, mo, d, h, mi, s, tz)
        else:
            sign = -1 if off[0] == "-" else 1
            off_us = 0 if off == "Z" else sign * (int(off[1:3]) * 3600 + int(off[4:6]) * 60) * _US
            low = _midnight_us(y, mo, d) + (h * 3600 + mi * 60 + s) * _US - off_us
    except ValueError as exc:  # invalid month/day from date()
        raise ValueError(f"not a FHIR date: {value!r} ({exc})") from None
    if ss is None:  # minute precision (search values only)
        return low, low + 60 * _US - 1
    if frac is None:
        return low, low + _US - 1
    digits = frac[:6]
    low += int(digits.ljust(6, "0"))
    # The fraction's precision is the interval: ".5" covers .500000-.599999.
    return low, low + 10 ** (6 - len(digits)) - 1


def instant_us(value: str, tz: ZoneInfo = DEFAULT_TZ) -> int:
    """The start of a FHIR date/instant in UTC microseconds (e.g. for meta.lastUpdated)."""
    return date_range(value, tz)[0]
