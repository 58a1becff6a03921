"""MSH: who sent the message, which HL7 version, and whether we take it at all.

HL72UK A.3 is a profile of v2.4; NHS feeds also send 2.3 and 2.5/2.5.1 (detail.md 1.1).
MSH-4 is the sending trust's ODS code, which scopes its local identifiers.
"""

from __future__ import annotations

from .errors import UNSUPPORTED_MESSAGE_TYPE, UNSUPPORTED_VERSION
from .model import Context

SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")


def apply(ctx: Context) -> None:
    msg = ctx.msg
    version = (msg.version or "").strip()
    if version not in SUPPORTED_VERSIONS:
        ctx.error("MSH", 12, UNSUPPORTED_VERSION,
                  f"HL7 version {version!r} not supported (accepted: {', '.join(SUPPORTED_VERSIONS)})")
    if (msg.message_type or "").upper() != "ADT":
        ctx.error("MSH", 9, UNSUPPORTED_MESSAGE_TYPE, f"message type {msg.message_type!r} is not ADT")
    ctx.out.source = {
        "feed": ctx.feed.id,
        "ods": ctx.ods,
        "application": msg.sending_application,
        "facility": msg.sending_facility,
        "control_id": msg.control_id,
    }
