"""HL7 v2 ACK messages (original acknowledgement mode), as NHS ADT senders expect them.

One ACK per message: MSH + MSA (MSA-2 echoes their MSH-10) + one ERR per problem. ERR is written
in v2.5 style (ERR-2 location, ERR-3 HL7 table 0357 code, ERR-4 severity, ERR-8 user message)
and ERR-1 is filled as well, because v2.3/2.4 receivers (most NHS PAS feeds) only read ERR-1.
Our ACK always uses the standard delimiters `|^~\\&`; values copied from the sender's message
are re-encoded from its delimiters to ours.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.adapters.hl7v2.er7 import STANDARD_ENCODING, Encoding, Message, escape, unescape

DEFAULT_APPLICATION = "ACTIVE-RECOVERY"
DEFAULT_VERSION = "2.4"  # HL72UK is a v2.4 profile
ACK_CODES = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})
# HL7 table 0357, message error condition codes (v2.5).
TABLE_0357 = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}
_LONDON = ZoneInfo("Europe/London")  # HL7 times are local; we also state the offset
_MSH = re.compile(r"MSH([^A-Za-z0-9\s])")
_VERSION = re.compile(r"2\.\d(\.\d)?")
_CONTROL_ID_MAX = 199  # MSH-10 length in v2.5 (20 in v2.4; we never invent a longer one)
_SALVAGE_BYTES = 8192  # the header is at the start; never decode a whole oversize frame


@dataclass(frozen=True, slots=True)
class AckError:
    """One problem to report: where (segment, its 1-based sequence, field) and what (table 0357)."""

    segment: str
    sequence: int = 1
    field: int | None = None
    code: str = "207"
    message: str = ""
    severity: str = "E"  # table 0516: E error, W warning, I information


def new_control_id() -> str:
    """A fresh MSH-10 for our ACK: 20 hex chars fits even v2.4's 20-character limit."""
    return uuid.uuid4().hex[:20]


@dataclass(frozen=True, slots=True)
class MshHeader:
    """The sender's MSH fields, raw (in the sender's delimiters); `first(n)` reads MSH-n.1."""

    enc: Encoding
    fields: tuple[str, ...]  # fields[n] == raw MSH-n; missing ones are ""

    def raw(self, n: int) -> str:
        return self.fields[n] if n < len(self.fields) else ""

    def first(self, n: int, comp: int = 1) -> str:
        """MSH-n.comp of the first repetition, unescaped ("" for HL7 null)."""
        parts = self.raw(n).partition(self.enc.repetition)[0].split(self.enc.component)
        value = parts[comp - 1].partition(self.enc.subcomponent)[0] if comp <= len(parts) else ""
        return "" if value == '""' else unescape(value, self.enc)


def _header_of(msg: Message) -> MshHeader:
    msh = msg.segments[0]
    return MshHeader(msg.encoding, tuple(msh.raw(n) for n in range(msh.field_count() + 1)))


def salvage_header(raw: bytes | bytearray | memoryview | str | None) -> MshHeader | None:
    """Best effort MSH from input the parser rejected, so the AR can still quote MSH-10."""
    if raw is None:
        return None
    if isinstance(raw, (bytes, bytearray, memoryview)):
        text = bytes(raw[:_SALVAGE_BYTES]).decode("latin-1")  # cannot fail; header is ASCII
    else:
        text = raw[:_SALVAGE_BYTES]
    match = _MSH.search(text)
    if not match:
        return None
    fs = match.group(1)
    line = re.split(r"[\r\n]", text[match.start() :], maxsplit=1)[0]
    parts = line.split(fs)
    declared = parts[1] if len(parts) > 1 else ""
    chars = list(declared[:4]) + list("^~\\&")[len(declared[:4]) :]
    if len({fs, *chars}) != 5:
        chars = list("^~\\&")  # garbled MSH-2: read the rest with the standard delimiters
    enc = Encoding(fs, chars[0], chars[1], chars[2], chars[3])
    # Drop control characters: the input may be binary junk.
    cleaned = tuple(re.sub(r"[\x00-\x1f\x7f]", "", p) for p in parts[2:])
    return MshHeader(enc, ("MSH", fs, declared, *cleaned))


def _reencode(raw: str, src: Encoding, dst: Encoding = STANDARD_ENCODING) -> str:
    """A field written with the sender's delimiters, rewritten with ours (structure kept)."""
    if src == dst:
        return raw
    return dst.repetition.join(
        dst.component.join(
            dst.subcomponent.join(escape(unescape(sub, src), dst) for sub in comp.split(src.subcomponent))
            for comp in rep.split(src.component)
        )
        for rep in raw.split(src.repetition)
    )


def _err_segment(err: AckError) -> str:
    e = escape
    field = "" if err.field is None else str(err.field)
    code = str(err.code)  # mappers may give table 0357 codes as ints
    label = TABLE_0357.get(code, "")
    sub = STANDARD_ENCODING.subcomponent
    # ERR-1 (v2.3/2.4 ELD): segment^sequence^field^code, the code a CE written as sub-components.
    err1 = f"{e(err.segment)}^{err.sequence}^{field}^{e(code)}{sub}{e(label)}{sub}HL70357"
    # ERR-2 (v2.5 ERL): segment^sequence^field.
    err2 = f"{e(err.segment)}^{err.sequence}^{field}".rstrip("^") if err.segment else ""
    # ERR-3 (CWE): code^text^coding system.
    err3 = f"{e(code)}^{e(label)}^HL70357"
    return "|".join(["ERR", err1, err2, err3, e(err.severity), "", "", "", e(err.message)])


def build_ack(
    msg: Message | None,
    code: str,
    *,
    control_id: str,
    errors: Sequence[AckError] = (),
    text: str = "",
    raw_header: bytes | bytearray | memoryview | str | None = None,
    application: str | None = None,
    facility: str | None = None,
    now: datetime | None = None,
) -> str:
    """The ACK text (segments end with CR) answering `msg`, or the raw input when msg is None.

    control_id is our ACK's own MSH-10. application defaults to DEFAULT_APPLICATION; facility
    defaults to the facility the sender addressed (their MSH-6), which is us.
    """
    if code not in ACK_CODES:
        raise ValueError(f"unknown acknowledgement code {code!r}")
    hdr = _header_of(msg) if msg is not None else salvage_header(raw_header)
    e = escape
    if hdr is None:
        their_app = their_fac = their_id = event = ""
        processing, version = "P", DEFAULT_VERSION
        our_app = e(application) if application is not None else DEFAULT_APPLICATION
        our_fac = e(facility) if facility is not None else ""
    else:
        their_app = _reencode(hdr.raw(3), hdr.enc)
        their_fac = _reencode(hdr.raw(4), hdr.enc)
        their_id = e(hdr.first(10)[:_CONTROL_ID_MAX])
        event = e(hdr.first(9, 2))
        processing = hdr.first(11) if hdr.first(11) in ("P", "T", "D") else "P"
        version = hdr.first(12) if _VERSION.fullmatch(hdr.first(12)) else DEFAULT_VERSION
        our_app = e(application) if application is not None else DEFAULT_APPLICATION
        our_fac = e(facility) if facility is not None else _reencode(hdr.raw(6), hdr.enc)
    stamp = (now or datetime.now(_LONDON)).strftime("%Y%m%d%H%M%S%z")
    msh = "|".join([
        "MSH", "^~\\&", our_app, our_fac, their_app, their_fac, stamp, "",
        f"ACK^{event}^ACK" if event else "ACK", e(control_id), processing, version,
    ])
    msa = ["MSA", code, their_id]
    if text:
        msa.append(e(text))  # MSA-3: deprecated in v2.5 but still the v2.3/2.4 place for it
    lines = [msh, "|".join(msa), *(_err_segment(err) for err in errors)]
    return "\r".join(lines) + "\r"

