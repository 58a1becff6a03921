"""Property tests of what partners send: the ER7 parser and the council/community CSV readers.

Whatever arrives, `parse_message` either returns a Message or raises `Er7Error` (which becomes an
AR/AE ACK), and the CSV readers report bad files and rows instead of crashing.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.adapters.community import read_community_file
from gateway.adapters.council import read_council_file
from gateway.adapters.hl7v2.er7 import Er7Error, parse_message
from gateway.adapters.tabular import load_spec

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- ER7 ---------------------------------------------------------------------------------------

_DELIMS = "|^~\\&#\r\n"
_field = st.text(alphabet=st.sampled_from("AZaz09 .-+/:" + _DELIMS + "\x00\x0b\x1c\u00e9\u4e2d"), max_size=30)
_segment_name = st.sampled_from(["MSH", "EVN", "PID", "PV1", "PV2", "DG1", "ZU1", "OBX", "MRG", "NK1", "XYZ", "", "MS",
                                 "BHS", "FHS", "MSA"])


@st.composite
def er7_like(draw) -> bytes:
    enc = draw(st.sampled_from(["|^~\\&", "|^~\\&#", "|", "||", "|^~", "^|~\\&", "|^^^^", ""]))
    header = "MSH" + enc + "|".join(draw(st.lists(_field, max_size=20)))
    segments = [header]
    for _ in range(draw(st.integers(0, 6))):
        segments.append(draw(_segment_name) + "|" + "|".join(draw(st.lists(_field, max_size=25))))
    sep = draw(st.sampled_from(["\r", "\n", "\r\n", "\n\r"]))
    text = sep.join(segments)
    charset = draw(st.sampled_from(["utf-8", "latin-1", "utf-16"]))
    try:
        return text.encode(charset)
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _parse_only_er7_errors(data) -> None:
    try:
        msg = parse_message(data)
    except Er7Error:
        return
    assert msg.segments and msg.segments[0].name == "MSH"


@FUZZ
@given(er7_like())
def test_er7_structured_input(data):
    _parse_only_er7_errors(data)


@FUZZ
@given(st.binary(max_size=400))
def test_er7_any_bytes(data):
    _parse_only_er7_errors(data)


@FUZZ
@given(st.text(max_size=300))
def test_er7_any_text(data):
    _parse_only_er7_errors(data)
    _parse_only_er7_errors("MSH|^~\\&|" + data)


def test_er7_real_fixtures_mutated():
    """Every single-byte truncation of a real message is parsed or refused, never crashes."""
    raw = (FIXTURES / "hl7v2" / "adt_a01_v24.hl7").read_bytes()
    for n in range(0, len(raw), 3):
        _parse_only_er7_errors(raw[:n])


# --- CSV readers ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def specs():
    return {"council": load_spec(ROOT / "mappings" / "council-cld.json"),
            "community": load_spec(ROOT / "mappings" / "community-csds.json")}


_READERS = {"council": (read_council_file, FIXTURES / "council" / "cld_valid.csv"),
            "community": (read_community_file, FIXTURES / "community" / "csds_valid.csv")}
_cell = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", '"', '""', '"a,b"', "\n", "\r", "\x00", "2025-02-31", "9999-99-99", "99999999999",
                     "-1", "1e309", "NaN", "﻿", "999 000 0107", "Female", "Request", "Referral", "🙂", "\\", ";"]),
)


def _read_all(kind: str, data: bytes, specs) -> None:
    reader, _ = _READERS[kind]
    messages, rows = reader(io.BytesIO(data), specs[kind])
    assert all(isinstance(m, str) for m in messages)
    for row in rows:
        assert row is not None


@FUZZ
@given(kind=st.sampled_from(["council", "community"]), data=st.binary(max_size=600))
def test_csv_any_bytes(specs, kind, data):
    _read_all(kind, data, specs)


@FUZZ
@given(kind=st.sampled_from(["council", "community"]), data=st.data())
def test_csv_valid_header_hostile_rows(specs, kind, data):
    _, path = _READERS[kind]
    lines = path.read_bytes().decode("utf-8-sig").splitlines()
    header, sample = lines[0], lines[1:]
    width = len(header.split(","))
    rows = []
    for _ in range(data.draw(st.integers(1, 4))):
        base = data.draw(st.sampled_from(sample)).split(",")
        cells = [data.draw(_cell) if data.draw(st.booleans()) else c for c in base]
        extra = data.draw(st.integers(-3, 3))
        cells = cells[: max(0, len(cells) + extra)] if extra < 0 else cells + [""] * extra
        rows.append(",".join(cells))
    text = "\r\n".join([header, *rows])
    encoding = data.draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    _read_all(kind, text.encode(encoding, "replace"), specs)
    assert width > 5
