"""AckError: one content problem, reported back to the sender in an ERR segment.

The acknowledgement module (`gateway.adapters.hl7v2.ack`) owns the class; if it is missing this
package carries a compatible stand-in so mapping can be built and tested on its own. Codes are
HL7 table 0357 (message error condition codes), as strings, which is what ack.py writes and looks
up in its table.
"""

from __future__ import annotations

try:  # pragma: no cover - depends on which parts of the adapter exist
    from gateway.adapters.hl7v2.ack import AckError
except ImportError:  # pragma: no cover
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class AckError:  # type: ignore[no-redef]
        segment: str
        sequence: int = 1
        field: int | None = None
        code: str = "207"
        message: str = ""
        severity: str = "E"


SEGMENT_SEQUENCE = "100"  # segment missing or out of order
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE_NOT_FOUND = "103"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT = "201"
UNSUPPORTED_VERSION = "203"
INTERNAL_ERROR = "207"

__all__ = [
    "AckError", "SEGMENT_SEQUENCE", "REQUIRED_FIELD_MISSING", "DATA_TYPE_ERROR", "TABLE_VALUE_NOT_FOUND",
    "UNSUPPORTED_MESSAGE_TYPE", "UNSUPPORTED_EVENT", "UNSUPPORTED_VERSION", "INTERNAL_ERROR",
]
