"""MLLP (Minimal Lower Layer Protocol) over TCP: the transport NHS PAS feeds use for ADT.

Frame: 0x0B <message> 0x1C 0x0D. One ACK per message, sent in order on the same connection.
Transport only: the handler gets the message bytes and returns the ACK bytes. The only HL7
this module writes itself is the AR for frames it cannot hand over (too big, handler failure).
Logs never contain message content: it is patient data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.adapters.hl7v2.ack import AckError, build_ack, new_control_id

SB = b"\x0b"  # start block
EB = b"\x1c"  # end block, followed by CR
CR = b"\x0d"
_READ_CHUNK = 64 * 1024
_HEADER_BYTES = 4096  # enough of a frame to salvage its MSH for an AR

# The message and who sent it (`sender_of`: address, TLS client certificate subject and issuer).
Handler = Callable[[bytes, dict], Awaitable[bytes]]
log = logging.getLogger(__name__)


def frame(payload: bytes) -> bytes:
    return SB + payload + EB + CR


# --------------------------------------------------------------------------- framing (no I/O)


@dataclass(frozen=True, slots=True)
class Frame:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Oversize:
    header: bytes  # first bytes of the frame, for salvaging MSH-10
    size: int  # bytes seen when the limit was crossed


@dataclass(frozen=True, slots=True)
class Discarded:
    size: int
    reason: str


Event = Frame | Oversize | Discarded


class FrameDecoder:
    """Turns a TCP byte stream into frames; tolerant of what real senders get wrong."""

    def __init__(self, max_message_bytes: int) -> None:
        self._max = max_message_bytes
        self._buf = bytearray()
        self._in_frame = False
        self._scanned = 0  # bytes of the open frame already searched for a delimiter
        self._skipping = False  # dropping the rest of an oversize frame

    def pending(self) -> int:
        """Bytes of an unfinished frame (lost if the connection closes now)."""
        return len(self._buf) if self._in_frame else 0

    def feed(self, data: bytes) -> list[Event]:
        self._buf += data
        events: list[Event] = []
        buf = self._buf
        while True:
            if not self._in_frame:
                start = buf.find(SB)
                dropped = len(buf) if start < 0 else start
                if dropped and not self._skipping:
                    events.append(Discarded(dropped, "bytes outside a frame"))
                if start < 0:
                    buf.clear()
                    return events
                del buf[: start + 1]
                self._in_frame, self._scanned, self._skipping = True, 0, False
                continue
            end = buf.find(EB, self._scanned)
            restart = buf.find(SB, self._scanned, end if end >= 0 else len(buf))
            if restart >= 0:
                # A new start block before this frame ended: the sender gave up on it.
                events.append(Discarded(restart, "frame without end block"))
                del buf[:restart]
                self._in_frame = False
                continue
            if end < 0 or end + 1 >= len(buf):
                if end < 0 and len(buf) > self._max:
                    events.append(Oversize(bytes(buf[:_HEADER_BYTES]), len(buf)))
                    buf.clear()
                    self._in_frame, self._skipping = False, True
                    continue
                # Wait for more; when 0x1C is the last byte, the next one decides.
                self._scanned = len(buf) if end < 0 else end
                return events
            payload = bytes(buf[:end])
            # 0x1C 0x0D per the standard; a bare 0x1C is accepted (some engines omit the CR).
            del buf[: end + 2 if buf[end + 1] == CR[0] else end + 1]
            self._in_frame = False
            if len(payload) > self._max:
                events.append(Oversize(payload[:_HEADER_BYTES], len(payload)))
            else:
                events.append(Frame(payload))


# --------------------------------------------------------------------------- server


def _reject(header: bytes, reason: str) -> bytes:
    ack = build_ack(
        None, "AR", control_id=new_control_id(), raw_header=header,
        errors=[AckError("MSH", 1, None, "207", reason)], text=reason,
    )
    return ack.encode("utf-8")


def sender_of(writer: asyncio.StreamWriter) -> dict:
    """Who is on the other end: address, and the subject and issuer of its TLS client certificate."""
    peer = writer.get_extra_info("peername")
    out = {"address": peer[0] if isinstance(peer, tuple) and peer else ""}
    cert = writer.get_extra_info("peercert")
    if cert:
        def common_name(rdns) -> str:
            return next((v for rdn in rdns for k, v in rdn if k == "commonName"), "")

        out["subject"] = common_name(cert.get("subject", ()))
        out["issuer"] = common_name(cert.get("issuer", ()))
    return out


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 handler: Handler, max_bytes: int, idle_timeout: float, observe=None) -> None:
        self._reader, self._writer = reader, writer
        self._handler = handler
        self._max = max_bytes
        self._idle = idle_timeout
        self._peer = writer.get_extra_info("peername")
        self._observe = observe  # observe(sender, reply): after each ACK (the audit trail)
        self._sender = sender_of(writer)

    async def run(self) -> None:
        try:
            await self._serve()
        except (ConnectionError, OSError) as exc:
            log.info("MLLP %s: connection lost: %s", self._peer, exc)
        except Exception:  # never let one connection take the server down
            log.exception("MLLP %s: unexpected error; closing connection", self._peer)
        finally:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()

    async def _serve(self) -> None:
        decoder = FrameDecoder(self._max)
        while True:
            try:
                chunk = await asyncio.wait_for(self._reader.read(_READ_CHUNK), self._idle)
            except TimeoutError:
                log.info("MLLP %s: idle for %ss; closing (%d bytes of an open frame discarded)",
                         self._peer, self._idle, decoder.pending())
                return
            if not chunk:
                if decoder.pending():
                    log.warning("MLLP %s: closed mid-frame; %d bytes discarded", self._peer, decoder.pending())
                return
            for event in decoder.feed(chunk):
                if isinstance(event, Discarded):
                    log.warning("MLLP %s: discarded %d bytes (%s)", self._peer, event.size, event.reason)
                    continue
                if isinstance(event, Oversize):
                    log.warning("MLLP %s: frame over %d bytes rejected", self._peer, self._max)
                    reply = _reject(event.header, f"message exceeds {self._max} bytes")
                else:
                    reply = await self._answer(event.payload)
                self._writer.write(frame(reply))
                await self._writer.drain()
                if self._observe is not None:
                    try:
                        self._observe(self._sender, reply)
                    except Exception:  # the audit trail never stops a feed
                        log.exception("MLLP %s: recording the message failed", self._peer)

    async def _answer(self, payload: bytes) -> bytes:
        try:
            reply = await self._handler(payload, self._sender)
        except Exception:
            log.exception("MLLP %s: handler failed", self._peer)
            return _reject(payload[:_HEADER_BYTES], "internal error")
        if not isinstance(reply, (bytes, bytearray)) or not reply:
            log.error("MLLP %s: handler returned %r instead of ACK bytes", self._peer, type(reply).__name__)
            return _reject(payload[:_HEADER_BYTES], "internal error")
        return bytes(reply)


async def start_mllp_server(
    handler: Handler,
    host: str,
    port: int,
    *,
    max_message_bytes: int = 10 * 1024 * 1024,
    idle_timeout: float = 300,
    ssl: "ssl_module.SSLContext | None" = None,
    observe=None,
    shared: bool = False,
) -> asyncio.Server:
    """Listen for MLLP connections; each connection is served by its own task, in order.
    With `ssl` (see `tls_context`), MLLP runs inside TLS, the way integration engines call MLLPS.
    `shared`: several worker processes listen on the port (SO_REUSEPORT; the kernel spreads the
    connections over them). Off for a single process, so a second gateway on the port fails fast."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _Connection(reader, writer, handler, max_message_bytes, idle_timeout, observe).run()

    return await asyncio.start_server(on_connect, host, port, ssl=ssl, ssl_handshake_timeout=30 if ssl else None,
                                      reuse_port=shared or None)


def tls_context(cert_file: str, key_file: str, client_ca_file: str = "") -> "ssl_module.SSLContext":
    """Server side of MLLP over TLS (1.2 or later). With `client_ca_file`, every sender must present a
    certificate issued by one of those CAs (mutual TLS): the only way a socket protocol with no
    credentials of its own can tell a trust's integration engine from anyone else on the network."""
    context = ssl_module.create_default_context(ssl_module.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl_module.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    if client_ca_file:
        context.load_verify_locations(client_ca_file)
        context.verify_mode = ssl_module.CERT_REQUIRED
    return context


# --------------------------------------------------------------------------- client


async def mllp_exchange(host: str, port: int, messages: list[bytes], *, timeout: float = 30) -> list[bytes]:
    """Send messages one at a time on one connection; return each ACK (unframed)."""
    reader, writer = await asyncio.open_connection(host, port, limit=16 * 1024 * 1024)
    replies: list[bytes] = []
    try:
        for message in messages:
            writer.write(frame(message))
            await writer.drain()
            data = await asyncio.wait_for(reader.readuntil(EB + CR), timeout)
            replies.append(data[data.rfind(SB) + 1 : -2])
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return replies
