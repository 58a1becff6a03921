"""HL7 v2 into a running `gateway serve`: real MLLP client, HTTP, duplicates, hostile input, crash."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from hl7.client import MLLPClient

from conftest import GatewayProcess, drop_pg_schema, free_port, pg_schema_url
from hl7_helpers import ack_code, ack_control, admit, nhs_number

FIXTURES = Path(__file__).parent / "fixtures" / "hl7v2"
VN = "https://fhir.activerecovery.example/Id/hl7v2"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def mllp_gateway(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"mllp-{request.param}")
    url = f"sqlite:///{tmp / 'gw.db'}" if request.param == "sqlite" else pg_schema_url()
    port = free_port()
    g = GatewayProcess(url, tmp, args=["--mllp-port", str(port)]).start()
    g.mllp_port = port
    yield g
    g.stop()
    if request.param == "postgres":
        asyncio.run(drop_pg_schema(url))


def send(port: int, message: bytes) -> str:
    with MLLPClient("127.0.0.1", port) as client:
        return client.send_message(message).decode()


def inbox_entries(base: str, **params) -> list[dict]:
    root = base.removesuffix("/fhir")
    out, url = [], f"{root}/inbox"
    query = {"_count": "500", **params}
    while url:
        page = httpx.get(url, params=query).json()
        out += page["entries"]
        url = f"{root}{page['next']}" if page.get("next") else None
        query = {}
    return out


def test_python_hl7_mllp_client_gets_one_ack_per_message(mllp_gateway):
    for n in range(5):
        ack = send(mllp_gateway.mllp_port, admit(1000 + n, control=f"MLLP{n}"))
        assert ack_code(ack) == "AA" and ack_control(ack) == f"MLLP{n}"
    found = httpx.get(f"{mllp_gateway.base}/Patient", params={"identifier": f"https://fhir.nhs.uk/Id/nhs-number|{nhs_number(1000)}"}).json()
    assert found["total"] == 1


def test_many_concurrent_connections(mllp_gateway):
    async def one_connection(c: int) -> list[str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", mllp_gateway.mllp_port)
        codes = []
        for i in range(10):
            n = 2000 + c * 10 + i
            writer.write(b"\x0b" + admit(n, control=f"CONC{n}") + b"\x1c\x0d")
            await writer.drain()
            data = await reader.readuntil(b"\x1c\x0d")
            assert ack_control(data[1:-2]) == f"CONC{n}"  # ACKs come back in order on a connection
            codes.append(ack_code(data[1:-2]))
        writer.close()
        return codes

    async def run():
        return await asyncio.gather(*[one_connection(c) for c in range(8)])

    results = asyncio.run(run())
    assert all(code == "AA" for codes in results for code in codes)


def test_resent_message_changes_nothing_and_gets_same_ack(mllp_gateway):
    msg = admit(3000, control="DUP3000")
    first = send(mllp_gateway.mllp_port, msg)
    enc = httpx.get(f"{mllp_gateway.base}/Encounter", params={"identifier": "SP00003000"}).json()
    second = send(mllp_gateway.mllp_port, msg)
    assert second == first
    again = httpx.get(f"{mllp_gateway.base}/Encounter", params={"identifier": "SP00003000"}).json()
    assert again["total"] == enc["total"] == 1
    assert again["entry"][0]["resource"]["meta"]["versionId"] == enc["entry"][0]["resource"]["meta"]["versionId"]
    assert len([e for e in inbox_entries(mllp_gateway.base) if e["controlId"] == "DUP3000"]) == 1


UNREADABLE = sorted(p.name for p in FIXTURES.glob("malformed_*.hl7") if p.name != "malformed_bad_escape.hl7")


def test_unknown_escape_is_kept_literally_not_fatal(mllp_gateway):
    # HL7 v2: an escape the receiver does not know is passed through, the message is accepted
    ack = send(mllp_gateway.mllp_port, (FIXTURES / "malformed_bad_escape.hl7").read_bytes())
    assert ack_code(ack) == "AA"


@pytest.mark.parametrize("name", UNREADABLE)
def test_malformed_input_gets_ar_and_writes_nothing(mllp_gateway, name):
    before = httpx.get(f"{mllp_gateway.base}/_history", params={"_count": "1"}).json()["total"]
    ack = send(mllp_gateway.mllp_port, (FIXTURES / name).read_bytes())
    assert ack_code(ack) in ("AR", "AE")
    assert "ERR|" in ack
    after = httpx.get(f"{mllp_gateway.base}/_history", params={"_count": "1"}).json()["total"]
    assert after == before


def test_oversize_and_broken_framing(mllp_gateway):
    with socket.create_connection(("127.0.0.1", mllp_gateway.mllp_port), timeout=30) as s:
        # junk before the start block, then a frame > 10 MB, then a good frame on the same connection
        s.sendall(b"garbage" + b"\x0b" + b"MSH|^~\\&|PAS|RR8|||20260101||ADT^A01|BIG1|P|2.4\r" + b"Z" * (11 * 1024 * 1024) + b"\x1c\x0d")
        s.sendall(b"\x0b" + admit(4000, control="AFTERBIG") + b"\x1c\x0d")
        buf = b""
        while buf.count(b"\x1c\x0d") < 2:
            chunk = s.recv(65536)
            assert chunk, f"connection closed early: {buf!r}"
            buf += chunk
    acks = [a.strip(b"\x0b") for a in buf.split(b"\x1c\x0d") if a.strip()]
    assert ack_code(acks[0]) == "AR"
    assert ack_code(acks[1]) == "AA" and ack_control(acks[1]) == "AFTERBIG"


def test_http_endpoint_batch(mllp_gateway):
    root = mllp_gateway.base.removesuffix("/fhir")
    body = admit(5000, control="HTTP5000") + admit(5001, control="HTTP5001")
    r = httpx.post(f"{root}/hl7v2", content=body, headers={"Content-Type": "x-application/hl7-v2+er7"})
    assert r.status_code == 200
    acks = [a for a in r.text.split("\n") if a.strip()]
    assert [ack_control(a) for a in acks] == ["HTTP5000", "HTTP5001"]
    assert httpx.post(f"{root}/hl7v2", content=b"x", headers={"Content-Type": "application/json"}).status_code == 415
    entry = [e for e in inbox_entries(mllp_gateway.base) if e["controlId"] == "HTTP5000"][0]
    detail = httpx.get(f"{root}/inbox/{entry['id']}").json()
    assert detail["status"] == "stored" and detail["raw"].startswith("MSH|")
    assert set(detail["steps"]) >= {"received", "parsed", "mapped", "stored"}
    types = {r.split("/")[0] for r in detail["resources"]}
    assert {"Patient", "Encounter", "Provenance"} <= types
    prov_ref = [r for r in detail["resources"] if r.startswith("Provenance/")][0]
    prov = httpx.get(f"{mllp_gateway.base}/{prov_ref.split('/_history')[0]}").json()
    assert prov["entity"][0]["what"]["identifier"]["value"] == str(entry["id"])
    assert {t["reference"].split("/")[0] for t in prov["target"]} >= {"Patient", "Encounter"}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigkill_mid_stream_loses_no_acked_message(tmp_path, backend):
    """Every message ACKed before a SIGKILL is in the store exactly once after restart."""
    url = f"sqlite:///{tmp_path / 'crash.db'}" if backend == "sqlite" else pg_schema_url()
    port = free_port()
    g = GatewayProcess(url, tmp_path, args=["--mllp-port", str(port)]).start()
    acked: list[str] = []
    stop = threading.Event()

    def sender():
        n = 0
        while not stop.is_set() and n < 5000:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    while not stop.is_set() and n < 5000:
                        cid = f"K{n:06d}"
                        s.sendall(b"\x0b" + admit(60000 + n, control=cid) + b"\x1c\x0d")
                        buf = b""
                        while b"\x1c\x0d" not in buf:
                            chunk = s.recv(4096)
                            if not chunk:
                                raise ConnectionError
                            buf += chunk
                        if ack_code(buf.strip(b"\x0b\x1c\x0d")) == "AA":
                            acked.append(cid)
                        n += 1
            except OSError:
                return

    t = threading.Thread(target=sender)
    t.start()
    deadline = time.time() + 20
    while len(acked) < 50 and time.time() < deadline:
        time.sleep(0.05)
    os.kill(g.proc.pid, signal.SIGKILL)
    g.proc.wait()
    stop.set()
    t.join(10)
    assert len(acked) >= 50, "sender never got going"
    g2 = GatewayProcess(url, tmp_path, args=["--mllp-port", str(free_port())])
    g2.port = g.port
    g2.start()
    try:
        stored = {e["controlId"]: e for e in inbox_entries(g2.base)}
        for cid in acked:
            assert stored[cid]["status"] == "stored", cid
        for cid in acked[-10:] + acked[:5]:
            n = int(cid[1:])
            enc = httpx.get(f"{g2.base}/Encounter", params={"identifier": f"SP{60000 + n:08d}"}).json()
            assert enc["total"] == 1, cid
        # no half-written message: every stored inbox entry's resources exist
        for e in list(stored.values())[-5:]:
            for ref in httpx.get(f"{g2.base.removesuffix('/fhir')}/inbox/{e['id']}").json()["resources"]:
                assert httpx.get(f"{g2.base}/{ref}").status_code == 200
    finally:
        g2.stop()
        if backend == "postgres":
            asyncio.run(drop_pg_schema(url))
