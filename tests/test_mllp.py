"""MLLP server over real sockets on 127.0.0.1, driven by python-hl7's client and raw streams."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from hl7.client import MLLPClient
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.adapters.hl7v2.ack import AckError, build_ack, new_control_id
from gateway.adapters.hl7v2.er7 import Er7Error, parse_message
from gateway.transport.mllp import (
    CR, EB, SB, Discarded, Frame, FrameDecoder, Oversize, frame, mllp_exchange, start_mllp_server,
)

FIXTURES = Path(__file__).parent / "fixtures" / "hl7v2"
TEMPLATE = (FIXTURES / "adt_a03_v24.hl7").read_bytes()
TEMPLATE_ID = b"RR8PAS0000123456"
LIMIT = 64 * 1024


def message(control_id: str) -> bytes:
    return TEMPLATE.replace(TEMPLATE_ID, control_id.encode())


def acked(ack: bytes) -> tuple[str, str]:
    """(MSA-1, MSA-2) of an unframed ACK."""
    msa = parse_message(ack).segment("MSA")
    return msa.get(1), msa.get(2)


async def echo_handler(payload: bytes, sender: dict | None = None) -> bytes:
    """What the gateway's real handler does, minus the mapping: parse, then AA or AR."""
    await asyncio.sleep(random.random() / 1000)  # let connections interleave
    try:
        msg = parse_message(payload)
    except Er7Error as exc:
        error = AckError(exc.segment or "MSH", 1, exc.field, "102", exc.message)
        return build_ack(None, "AR", control_id=new_control_id(), raw_header=payload, errors=[error]).encode()
    if msg.control_id == "BOOM":
        raise RuntimeError("handler bug")
    if msg.control_id == "NOTBYTES":
        return "not bytes"  # type: ignore[return-value]
    return build_ack(msg, "AA", control_id=new_control_id()).encode()


@pytest.fixture
async def server():
    calls: list[bytes] = []

    async def handler(payload: bytes, sender: dict) -> bytes:
        calls.append(payload)
        return await echo_handler(payload)

    srv = await start_mllp_server(handler, "127.0.0.1", 0, max_message_bytes=LIMIT, idle_timeout=5)
    yield SimpleNamespace(port=srv.sockets[0].getsockname()[1], calls=calls)
    srv.close()
    await srv.wait_closed()


async def open_raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def read_acks(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    acks = []
    for _ in range(count):
        data = await asyncio.wait_for(reader.readuntil(EB + CR), 5)
        assert data.startswith(SB)
        acks.append(data[1:-2])
    return acks


async def assert_nothing_more(reader: asyncio.StreamReader) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.2)


# --------------------------------------------------------------------------- python-hl7 client


def send_with_python_hl7(port: int, messages: list[bytes], barrier: threading.Barrier | None = None) -> list[bytes]:
    """Blocking: python-hl7's MLLPClient, reading on if its single recv() got half an ACK."""
    acks = []
    with MLLPClient("127.0.0.1", port) as client:
        if barrier is not None:
            barrier.wait(timeout=10)  # every connection is open before anyone sends
        for msg in messages:
            data = client.send_message(msg)
            while not data.endswith(EB + CR):
                more = client.socket.recv(4096)
                assert more, "server closed the connection"
                data += more
            assert data.startswith(SB)
            acks.append(data[1:-2])
    return acks


async def test_python_hl7_client_gets_one_ack_per_message(server) -> None:
    fixtures = [p.read_bytes() for p in sorted(FIXTURES.glob("adt_*.hl7"))]
    acks = await asyncio.to_thread(send_with_python_hl7, server.port, fixtures)
    assert [acked(a) for a in acks] == [("AA", parse_message(m).control_id) for m in fixtures]
    assert server.calls == fixtures


async def test_many_concurrent_connections(server) -> None:
    connections, per_connection = 20, 50
    batches = [[message(f"C{c:02d}M{m:03d}") for m in range(per_connection)] for c in range(connections)]
    barrier = threading.Barrier(connections)
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=connections) as pool:
        results = await asyncio.gather(
            *(loop.run_in_executor(pool, send_with_python_hl7, server.port, b, barrier) for b in batches)
        )
    for c, acks in enumerate(results):
        assert [acked(a) for a in acks] == [("AA", f"C{c:02d}M{m:03d}") for m in range(per_connection)]
    assert len(server.calls) == connections * per_connection


async def test_async_client_and_pipelined_connections(server) -> None:
    async def one(c: int) -> list[bytes]:
        return await mllp_exchange("127.0.0.1", server.port, [message(f"A{c}-{m}") for m in range(10)])

    results = await asyncio.gather(*(one(c) for c in range(10)))
    for c, acks in enumerate(results):
        assert [acked(a)[1] for a in acks] == [f"A{c}-{m}" for m in range(10)]


# --------------------------------------------------------------------------- framing


async def test_several_frames_in_one_write_are_answered_in_order(server) -> None:
    reader, writer = await open_raw(server.port)
    ids = [f"P{n}" for n in range(25)]
    writer.write(b"".join(frame(message(i)) for i in ids))
    await writer.drain()
    assert [acked(a) for a in await read_acks(reader, len(ids))] == [("AA", i) for i in ids]
    writer.close()


async def test_one_frame_split_over_many_writes(server) -> None:
    reader, writer = await open_raw(server.port)
    data = frame(message("SPLIT"))
    for i in range(0, len(data), 7):
        writer.write(data[i : i + 7])
        await writer.drain()
        await asyncio.sleep(0.001)
    assert [acked(a) for a in await read_acks(reader, 1)] == [("AA", "SPLIT")]
    writer.close()


async def test_junk_before_start_block_is_discarded(server) -> None:
    reader, writer = await open_raw(server.port)
    writer.write(b"GET / HTTP/1.1\r\n\r\n" + b"\x00\xff" + frame(message("AFTERJUNK")))
    writer.write(b"\r\n" + frame(message("AFTERCRLF")))  # CR/LF between frames is common
    await writer.drain()
    assert [acked(a) for a in await read_acks(reader, 2)] == [("AA", "AFTERJUNK"), ("AA", "AFTERCRLF")]
    assert len(server.calls) == 2
    writer.close()


async def test_missing_end_block_then_next_frame(server) -> None:
    reader, writer = await open_raw(server.port)
    writer.write(SB + message("LOST") + frame(message("NEXT")))
    await writer.drain()
    assert [acked(a) for a in await read_acks(reader, 1)] == [("AA", "NEXT")]
    await assert_nothing_more(reader)
    assert [parse_message(c).control_id for c in server.calls] == ["NEXT"]
    writer.close()


async def test_closed_mid_frame_discards_partial(server) -> None:
    reader, writer = await open_raw(server.port)
    writer.write(SB + message("HALF")[:200])
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    acks = await mllp_exchange("127.0.0.1", server.port, [message("WHOLE")])
    assert acked(acks[0]) == ("AA", "WHOLE")
    assert [parse_message(c).control_id for c in server.calls] == ["WHOLE"]


async def test_end_block_without_cr_is_accepted(server) -> None:
    reader, writer = await open_raw(server.port)
    writer.write(SB + message("NOCR") + EB + frame(message("AFTER")))
    await writer.drain()
    assert [acked(a)[1] for a in await read_acks(reader, 2)] == ["NOCR", "AFTER"]
    writer.close()


async def test_oversize_frame_gets_ar_and_connection_recovers(server) -> None:
    reader, writer = await open_raw(server.port)
    big = message("HUGE") + b"OBX|1|TX|||" + b"x" * (LIMIT * 2) + b"\r"
    writer.write(frame(big) + frame(message("SMALL")))
    await writer.drain()
    first, second = await read_acks(reader, 2)
    assert acked(first) == ("AR", "HUGE")  # control id salvaged from the header
    err = parse_message(first).segment("ERR")
    assert err.get(3) == "207" and "exceeds" in err.get(8)
    assert acked(second) == ("AA", "SMALL")
    assert [parse_message(c).control_id for c in server.calls] == ["SMALL"]
    writer.close()


async def test_oversize_frame_streamed_slowly(server) -> None:
    reader, writer = await open_raw(server.port)
    writer.write(SB + message("SLOW"))
    for _ in range(4):  # the limit is crossed mid-stream; AR goes out before the end block
        writer.write(b"y" * (LIMIT // 2))
        await writer.drain()
    assert acked((await read_acks(reader, 1))[0]) == ("AR", "SLOW")
    writer.write(b"y" * 1000 + EB + CR + frame(message("THEN")))
    await writer.drain()
    assert acked((await read_acks(reader, 1))[0]) == ("AA", "THEN")
    await assert_nothing_more(reader)
    writer.close()


async def test_unparseable_payload_gets_ar_from_handler(server) -> None:
    acks = await mllp_exchange("127.0.0.1", server.port, [b"not hl7", b"MSH|^~\\&|A|B|C|D|1||ADT^A01|ID9|P|2.4\x00"])
    assert [acked(a) for a in acks] == [("AR", ""), ("AR", "ID9")]


async def test_handler_failure_answers_ar_and_keeps_serving(server) -> None:
    acks = await mllp_exchange("127.0.0.1", server.port, [message("BOOM"), message("NOTBYTES"), message("FINE")])
    assert [acked(a) for a in acks] == [("AR", "BOOM"), ("AR", "NOTBYTES"), ("AA", "FINE")]
    assert parse_message(acks[0]).segment("ERR").get(3) == "207"


async def test_idle_connection_is_closed() -> None:
    srv = await start_mllp_server(echo_handler, "127.0.0.1", 0, idle_timeout=0.2)
    try:
        reader, writer = await open_raw(srv.sockets[0].getsockname()[1])
        assert await asyncio.wait_for(reader.read(1), 5) == b""
        writer.close()
    finally:
        srv.close()
        await srv.wait_closed()


async def test_client_vanishing_before_ack_does_not_hurt_server(server) -> None:
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(frame(message("GONE")))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST
    await asyncio.sleep(0.05)
    assert acked((await mllp_exchange("127.0.0.1", server.port, [message("STILL")]))[0]) == ("AA", "STILL")


# --------------------------------------------------------------------------- decoder (no sockets)


def test_decoder_events() -> None:
    dec = FrameDecoder(max_message_bytes=10)
    assert dec.feed(b"junk" + SB + b"abc" + EB) == [Discarded(4, "bytes outside a frame")]
    assert dec.pending() == 4  # "abc" + the end block awaiting its CR
    assert dec.feed(CR + SB + b"0123456789X" + EB + CR) == [Frame(b"abc"), Oversize(b"0123456789X", 11)]
    assert dec.feed(SB + b"x" * 11) == [Oversize(b"x" * 11, 11)]
    assert dec.feed(b"rest of it" + EB + CR) == []  # skipped quietly: already answered
    assert dec.feed(SB + b"a" + SB + b"b" + EB + CR) == [Discarded(1, "frame without end block"), Frame(b"b")]


@settings(database=None)
@given(
    st.lists(st.binary(max_size=40).map(lambda b: b.replace(SB, b"").replace(EB, b"")), min_size=1, max_size=8),
    st.lists(st.integers(min_value=1, max_value=17), min_size=1, max_size=30),
)
def test_decoder_any_chunking(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(p) for p in payloads)
    dec = FrameDecoder(max_message_bytes=1000)
    events, pos, i = [], 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        events += dec.feed(stream[pos : pos + step])
        pos, i = pos + step, i + 1
    assert events == [Frame(p) for p in payloads]
    assert dec.pending() == 0
