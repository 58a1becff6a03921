"""Deep copies of JSON data (FHIR resources as dicts).

A round trip through orjson is several times faster than `copy.deepcopy` for this data, and the
planners copy resources on every message.
"""

from __future__ import annotations

from gateway.fhir.decimals import copy_json


def clone(value):
    """An independent copy of JSON-compatible data (decimals keep their written precision)."""
    return copy_json(value)
