"""Search index extraction: what goes into the idx_* tables of gateway.store.schema.

Public API:
    extract_index(resource, tz) -> {table: [row tuples after (pk, type)]}
    date_range(value, tz)       -> (low, high) UTC microseconds, FHIR precision
    normalize_string(s)         -> the accent/case-insensitive form stored in value_norm
"""

from .dates import DEFAULT_TZ, MAX_TIME, MIN_TIME, date_range, instant_us
from .extract import INDEX_COLUMNS, empty_index, extract_index
from .normalize import normalize_for_param, normalize_string
from .references import parse_canonical, parse_reference

__all__ = [
    "DEFAULT_TZ",
    "INDEX_COLUMNS",
    "MAX_TIME",
    "MIN_TIME",
    "date_range",
    "empty_index",
    "extract_index",
    "instant_us",
    "normalize_for_param",
    "normalize_string",
    "parse_canonical",
    "parse_reference",
]
