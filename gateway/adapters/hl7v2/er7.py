"""Lazy ER7 ("pipe and hat") parser for HL7 v2 messages.

Why lazy: an ADT message has ~16 segments and ~400 fields, and the gateway reads ~30 of them.
Segments are split eagerly (so segment lookups and MSH validation are cheap); a segment's fields
are split the first time one is read; repetitions, components, sub-components and escape
sequences are only resolved for the value asked for.

Numbering follows HL7: fields, components and sub-components are 1-based, and MSH-1 is the field
separator itself, MSH-2 the encoding characters. Repetitions are 0-based (a Python index).
Reference: HL7 v2.4 chapter 2 (message delimiters; escape sequences in text fields), HL72UK A.3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

DEFAULT_MAX_BYTES = 1_000_000
# A batch is a whole HTTP body; each message in it is later checked against DEFAULT_MAX_BYTES.
DEFAULT_BATCH_MAX_BYTES = 32 * 1024 * 1024

# Segments whose field 1 is the field separator (so splitting on it loses one field).
_HEADER_SEGMENTS = frozenset({"MSH", "BHS", "FHS"})
_BATCH_ENVELOPE = frozenset({"FHS", "BHS", "BTS", "FTS"})
_UTF8_BOM = b"\xef\xbb\xbf"
# Control characters never appear in valid ER7 text (CR/LF end segments, TAB is tolerated).
# Their presence means binary data or a framing error, so the message is rejected rather than guessed at.
_JUNK = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_JUNK_BYTES = bytes(c for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)) + b"\x7f"
_SEEN_IDS: set[str] = set()  # segment ids already validated
_WHITESPACE = " \t\r\n"
_HEX = re.compile(r"[0-9A-Fa-f]+")
_COUNT = re.compile(r"[+-]?[0-9]{1,6}")  # ASCII digits only: int() rejects some str.isdigit() chars
# HL7 table 0211 (alternate character sets, MSH-18) -> Python codec, used only when the bytes
# are not valid UTF-8.
_CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/5": "iso8859-5",
    "8859/7": "iso8859-7",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
}


class Er7Error(Exception):
    """The input is not a usable ER7 message; the sender should get an AR acknowledgement."""

    def __init__(self, message: str, segment: str | None = None, field: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.segment = segment
        self.field = field

    def __str__(self) -> str:
        if self.segment and self.field is not None:
            return f"{self.segment}-{self.field}: {self.message}"
        if self.segment:
            return f"{self.segment}: {self.message}"
        return self.message


@dataclass(frozen=True, slots=True)
class Encoding:
    """The five delimiters declared by MSH-1 and MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def msh2(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent


STANDARD_ENCODING = Encoding()


# --------------------------------------------------------------------------- escapes


def unescape(text: str, enc: Encoding = STANDARD_ENCODING) -> str:
    """Resolve HL7 escape sequences in one atom (a sub-component's text).

    Unknown or malformed sequences are kept verbatim: dropping them would lose data silently.
    """
    esc = enc.escape
    if esc not in text:
        return text
    out: list[str] = []
    pos = 0
    while True:
        start = text.find(esc, pos)
        if start < 0:
            break
        end = text.find(esc, start + 1)
        if end < 0:
            break  # unterminated sequence: keep the rest as sent
        out.append(text[pos:start])
        value = _escape_value(text[start + 1 : end], enc)
        out.append(text[start : end + 1] if value is None else value)
        pos = end + 1
    out.append(text[pos:])
    return "".join(out)


def _escape_value(code: str, enc: Encoding) -> str | None:
    """Text for one escape sequence body, or None when it is not one we understand."""
    if not code:
        return None
    if len(code) == 1:
        return {
            "F": enc.field,
            "S": enc.component,
            "T": enc.subcomponent,
            "R": enc.repetition,
            "E": enc.escape,
            # \H\ and \N\ switch highlighting on/off: presentation only, no text.
            "H": "",
            "N": "",
        }.get(code)
    if code[0] == "X":
        digits = code[1:]
        if len(digits) % 2 or not _HEX.fullmatch(digits):
            return None
        raw = bytes.fromhex(digits)
        # Hex escapes carry bytes; senders use them for CR/LF and for non-ASCII text, which in
        # a modern feed is UTF-8. Anything else is read byte-for-character.
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    if code[0] == ".":
        return _formatting(code[1:])
    return None  # \Cxxyy\ / \Mxxyyzz\ charset switches and \Z..\ local escapes are not ours to interpret


def _formatting(cmd: str) -> str | None:
    """Formatted-text (FT) commands (\\.br\\, \\.sp n\\ ...), reduced to the plain text they imply."""
    name, arg = cmd[:2], cmd[2:].strip()
    if name == "br" and not arg:
        return "\n"
    if name in ("fi", "nf") and not arg:
        return ""
    count = 1
    if arg:
        if not _COUNT.fullmatch(arg):
            return None
        count = min(int(arg), 100)  # a hostile \.sp99999999\ must not allocate gigabytes
    if name == "sp":
        return "\n" * max(count, 1)
    if name == "ce":
        return "\n"
    if name in ("in", "ti"):
        return ""  # indentation has no plain-text meaning
    if name == "sk":
        return " " * max(count, 0)
    return None


@lru_cache(maxsize=16)
def _escape_table(enc: Encoding) -> dict[int, str]:
    table = {
        ord(enc.escape): f"{enc.escape}E{enc.escape}",
        ord(enc.field): f"{enc.escape}F{enc.escape}",
        ord(enc.component): f"{enc.escape}S{enc.escape}",
        ord(enc.subcomponent): f"{enc.escape}T{enc.escape}",
        ord(enc.repetition): f"{enc.escape}R{enc.escape}",
        # CR would end the segment; hex escapes are valid in every data type, \.br\ only in FT.
        ord("\r"): f"{enc.escape}X0D{enc.escape}",
        ord("\n"): f"{enc.escape}X0A{enc.escape}",
    }
    for code in range(0x20):  # other control characters have no place in ER7 text
        table.setdefault(code, "")
    table.setdefault(0x7F, "")
    return table


def escape(text: str, enc: Encoding = STANDARD_ENCODING) -> str:
    """Make free text safe to put in one atom of a message using `enc`."""
    return text.translate(_escape_table(enc))


# --------------------------------------------------------------------------- model


class Segment:
    """One segment; fields are split on first access and values resolved per call."""

    __slots__ = ("name", "_line", "_enc", "_fields")

    def __init__(self, name: str, line: str, enc: Encoding) -> None:
        self.name = name
        self._line = line
        self._enc = enc
        self._fields: list[str] | None = None

    def _split(self) -> list[str]:
        fields = self._line.split(self._enc.field)
        if self.name in _HEADER_SEGMENTS:
            fields.insert(1, self._enc.field)  # MSH-1 *is* the separator; keep HL7 numbering
        self._fields = fields
        return fields

    def get(self, field: int, rep: int = 0, comp: int = 1, sub: int = 1) -> str:
        """Unescaped value at field/rep/comp/sub; "" when absent or HL7 null (`""`)."""
        fields = self._fields
        if fields is None:
            fields = self._split()
        if field < 0 or rep < 0 or comp < 1 or sub < 1:
            raise ValueError("field >= 0, rep >= 0, comp >= 1 and sub >= 1 are required")
        if field >= len(fields):
            return ""
        value = fields[field]
        if not value:
            return ""
        if field <= 2 and (field == 0 or self.name in _HEADER_SEGMENTS):
            # Segment name, MSH-1, MSH-2: literal, never split or unescaped.
            return value if rep == 0 and comp == 1 and sub == 1 else ""
        enc = self._enc
        if rep:
            parts = value.split(enc.repetition)
            if rep >= len(parts):
                return ""
            value = parts[rep]
        else:
            value = value.partition(enc.repetition)[0]
        if comp > 1:
            parts = value.split(enc.component)
            if comp > len(parts):
                return ""
            value = parts[comp - 1]
        else:
            value = value.partition(enc.component)[0]
        if sub > 1:
            parts = value.split(enc.subcomponent)
            if sub > len(parts):
                return ""
            value = parts[sub - 1]
        else:
            value = value.partition(enc.subcomponent)[0]
        if value == '""':
            return ""
        if enc.escape in value:
            return unescape(value, enc)
        return value

    def repetitions(self, field: int) -> int:
        """How many repetitions the field has (0 when empty or absent)."""
        fields = self._fields if self._fields is not None else self._split()
        if field < 1 or field >= len(fields) or not fields[field]:
            return 0
        if field <= 2 and self.name in _HEADER_SEGMENTS:
            return 1
        return fields[field].count(self._enc.repetition) + 1

    def raw(self, field: int) -> str:
        """The field exactly as sent (still escaped; `""` stays `""`)."""
        fields = self._fields if self._fields is not None else self._split()
        if 0 <= field < len(fields):
            return fields[field]
        return ""

    def field_count(self) -> int:
        """Number of the last field present in the text (trailing empty fields included)."""
        fields = self._fields if self._fields is not None else self._split()
        return len(fields) - 1

    @property
    def text(self) -> str:
        return self._line

    def __repr__(self) -> str:
        return f"Segment({self._line[:60]!r})"


class Message:
    """A parsed message: eager segment list, lazy everything else.

    The MSH conveniences are properties rather than stored values so that a parse costs only
    what the caller reads.
    """

    __slots__ = ("encoding", "segments", "text", "_first")

    def __init__(self, text: str, encoding: Encoding, segments: list[Segment]) -> None:
        self.text = text  # normalised: CR-separated, trimmed
        self.encoding = encoding
        self.segments = segments  # treat as read-only: segment() indexes it on first use
        self._first: dict[str, Segment] | None = None

    @property
    def header(self) -> Segment:
        return self.segments[0]

    @property
    def message_type(self) -> str:  # MSH-9.1, e.g. "ADT"
        return self.segments[0].get(9)

    @property
    def trigger_event(self) -> str:  # MSH-9.2, e.g. "A03"
        return self.segments[0].get(9, 0, 2)

    @property
    def structure(self) -> str:  # MSH-9.3, e.g. "ADT_A03"; "" in v2.3 feeds
        return self.segments[0].get(9, 0, 3)

    @property
    def control_id(self) -> str:  # MSH-10
        return self.segments[0].get(10)

    @property
    def sending_application(self) -> str:  # MSH-3.1
        return self.segments[0].get(3)

    @property
    def sending_facility(self) -> str:  # MSH-4.1: the trust's ODS code in NHS feeds
        return self.segments[0].get(4)

    @property
    def receiving_application(self) -> str:  # MSH-5.1
        return self.segments[0].get(5)

    @property
    def receiving_facility(self) -> str:  # MSH-6.1
        return self.segments[0].get(6)

    @property
    def timestamp(self) -> str:  # MSH-7.1
        return self.segments[0].get(7)

    @property
    def processing_id(self) -> str:  # MSH-11.1: P / T / D
        return self.segments[0].get(11)

    @property
    def version(self) -> str:  # MSH-12.1
        return self.segments[0].get(12)

    def segment(self, name: str) -> Segment | None:
        """First segment with this id."""
        first = self._first
        if first is None:
            # A mapper asks for ~30 values from ~8 segment ids: one pass beats a scan per call.
            first = {}
            for seg in reversed(self.segments):
                first[seg.name] = seg
            self._first = first
        return first.get(name)

    def segments_named(self, name: str) -> list[Segment]:
        return [seg for seg in self.segments if seg.name == name]

    def __repr__(self) -> str:
        return f"Message({self.message_type}^{self.trigger_event} {self.control_id!r}, {len(self.segments)} segments)"


# --------------------------------------------------------------------------- parsing


def _declared_charset(data: bytes) -> str | None:
    """Codec named by MSH-18, read from the raw bytes (MSH itself is ASCII)."""
    start = data.find(b"MSH")
    if start < 0 or len(data) < start + 8:
        return None
    header = data[start : start + 2048].split(b"\r", 1)[0].split(b"\n", 1)[0].decode("latin-1")
    parts = header.split(header[3])
    if len(parts) < 18:
        return None
    value = parts[17]
    for sep in parts[1][:2]:  # first component of the first repetition
        value = value.split(sep, 1)[0]
    return _CHARSETS.get(value.strip().upper())


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    declared = _declared_charset(data)
    # "latin-1" from a UK PAS is in practice Windows-1252 (curly quotes at 0x91-0x94), so try
    # that before plain latin-1, which cannot fail.
    for codec in (declared, "cp1252"):
        if codec:
            try:
                return data.decode(codec)
            except (UnicodeDecodeError, LookupError):
                pass
    return data.decode("latin-1")


def _to_text(data: bytes | bytearray | memoryview | str, max_bytes: int) -> str:
    """Size-check, reject binary junk, decode and trim; segments end up CR-separated."""
    if isinstance(data, str):
        text: str | None = data
        raw = data.encode("utf-8", "surrogatepass")
    elif isinstance(data, (bytes, bytearray, memoryview)):
        text = None
        raw = bytes(data)
    else:
        raise TypeError(f"expected bytes or str, not {type(data).__name__}")
    if len(raw) > max_bytes:
        raise Er7Error(f"message of {len(raw)} bytes exceeds the {max_bytes}-byte limit")
    # Checked on the bytes: C0 controls are the same bytes in UTF-8, latin-1 and cp1252, and
    # bytes.translate is several times faster than a regex over the decoded text.
    if len(raw.translate(None, _JUNK_BYTES)) != len(raw):
        junk = _JUNK.search(raw)
        offset = junk.start() if junk else 0
        raise Er7Error(f"control character 0x{raw[offset]:02X} at byte {offset}: not ER7 text")
    if text is None:
        text = _decode(raw[3:] if raw.startswith(_UTF8_BOM) else raw)
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.strip(_WHITESPACE)
    if not text:
        raise Er7Error("empty message")
    if "\n" in text:  # LF and CRLF terminators (files, HTTP bodies) become CR
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    return text


@lru_cache(maxsize=64)
def _encoding_from(declaration: str) -> Encoding:
    """Encoding for an MSH prefix such as '|^~\\&|' (cached: each feed repeats its own)."""
    fs, declared = declaration[0], declaration[1:-1]
    if not 1 <= len(declared) <= 5:  # 4 chars; v2.7+ may add a 5th (truncation), ignored here
        raise Er7Error(f"MSH-2 must hold 4 encoding characters, got {declared!r}", "MSH", 2)
    # Missing trailing characters fall back to the standard ones, as python-hl7 and most engines do.
    chars = list(declared[:4]) + list("^~\\&")[len(declared[:4]) :]
    delims = [fs, *chars]
    if len(set(delims)) != 5 or any(c.isalnum() or c in _WHITESPACE for c in delims):
        raise Er7Error(f"invalid or duplicated delimiters {fs + declared!r}", "MSH", 1)
    return Encoding(field=fs, component=chars[0], repetition=chars[1], escape=chars[2], subcomponent=chars[3])


def _read_encoding(text: str) -> Encoding:
    if len(text) < 8:
        raise Er7Error("MSH is too short to declare its encoding characters", "MSH", 2)
    end = text.find(text[3], 4)
    if end < 0 or end > 10:
        raise Er7Error("MSH-2 (encoding characters) is not terminated", "MSH", 2)
    return _encoding_from(text[3 : end + 1])


def _valid_segment_id(name: str) -> bool:
    if name in _SEEN_IDS:
        return True
    ok = len(name) == 3 and name.isascii() and name.isalnum() and name.isupper() and name[0].isalpha()
    if ok and len(_SEEN_IDS) < 1024:  # bounded: ids come from untrusted input
        _SEEN_IDS.add(name)
    return ok


def parse_message(data: bytes | bytearray | memoryview | str, max_bytes: int = DEFAULT_MAX_BYTES) -> Message:
    """Parse one ER7 message. Raises Er7Error for anything the sender must be told to fix."""
    text = _to_text(data, max_bytes)
    if not text.startswith("MSH"):
        seg = text[:3]
        hint = " (a batch: use split_batch)" if seg in _BATCH_ENVELOPE else ""
        raise Er7Error(f"message must start with MSH, found {seg!r}{hint}", seg or None)
    enc = _read_encoding(text)
    fs = enc.field
    segments: list[Segment] = []
    for line in text.split("\r"):
        if not line:
            continue
        name = line[:3]
        if not _valid_segment_id(name) or (len(line) > 3 and line[3] != fs):
            if line.isspace():
                continue  # blank lines between segments carry nothing
            raise Er7Error(f"invalid segment id in {line[:12]!r}", name or None)
        if name == "MSH" and segments:
            raise Er7Error("second MSH in one message (a batch: use split_batch)", "MSH")
        segments.append(Segment(name, line, enc))
    msh = segments[0]
    last = msh.field_count()
    for field, what in ((9, "message type"), (10, "message control id"), (12, "version id")):
        if field > last:
            raise Er7Error(f"MSH is truncated: no MSH-{field} ({what})", "MSH", field)
        if not msh.get(field):
            raise Er7Error(f"MSH-{field} ({what}) is empty", "MSH", field)
    return Message(text, enc, segments)


def split_batch(data: bytes | bytearray | memoryview | str, max_bytes: int = DEFAULT_BATCH_MAX_BYTES) -> list[str]:
    """Split an FHS/BHS batch, or several MSH messages in one body, into message texts.

    The envelope segments (FHS BHS BTS FTS) are dropped; each returned text is one message with
    CR segment terminators, ready for parse_message.
    """
    text = _to_text(data, max_bytes)
    messages: list[list[str]] = []
    current: list[str] | None = None
    for line in text.split("\r"):
        if not line or line.isspace():
            continue
        tag = line[:3]
        is_tag = len(line) == 3 or not line[3].isalnum()
        if tag == "MSH" and is_tag:
            current = [line]
            messages.append(current)
        elif tag in _BATCH_ENVELOPE and is_tag:
            current = None  # segments after a trailer/header belong to no message
        elif current is None:
            raise Er7Error(f"segment {tag!r} outside any message", tag)
        else:
            current.append(line)
    return ["\r".join(lines) for lines in messages]
