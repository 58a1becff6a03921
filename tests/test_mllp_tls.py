"""MLLP inside TLS with client certificates, against a real `gateway serve`.

A test CA issues the gateway's certificate and the trust's integration-engine certificate; a
second CA issues an impostor's. Only the trust's engine gets ACKs; plain TCP and the impostor are
cut off during the handshake, and nothing they sent reaches the inbox.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import time

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import GatewayProcess, free_port
from gateway.transport.mllp import CR, EB, SB, frame
from hl7_helpers import admit


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject: str, key, issuer_name: x509.Name, issuer_key, *, ca: bool = False, ip: str | None = None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path, cert, key=None) -> str:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + (key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()) if key else b""))
    return str(path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pki")
    ca_key, rogue_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _issue("Active Recovery test CA", ca_key, _name("Active Recovery test CA"), ca_key, ca=True)
    rogue_ca = _issue("Someone else's CA", rogue_key, _name("Someone else's CA"), rogue_key, ca=True)
    server_key, engine_key, impostor_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    server = _issue("gateway", server_key, ca.subject, ca_key, ip="127.0.0.1")
    engine = _issue("RR8 integration engine", engine_key, ca.subject, ca_key)
    impostor = _issue("RR8 integration engine", impostor_key, rogue_ca.subject, rogue_key)
    community_key = ec.generate_private_key(ec.SECP256R1())
    community = _issue("Community trust engine", community_key, ca.subject, ca_key)  # our CA, another sender
    return {
        "community": _write(tmp / "community.pem", community, community_key),
        "tmp": tmp, "ca": _write(tmp / "ca.pem", ca),
        "server_cert": _write(tmp / "server.pem", server), "server_key": str(_key(tmp / "server.key", server_key)),
        "engine": _write(tmp / "engine.pem", engine, engine_key),
        "impostor": _write(tmp / "impostor.pem", impostor, impostor_key),
    }


def _key(path, key):
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


@pytest.fixture(scope="module")
def gateway(pki):
    port = free_port()
    g = GatewayProcess(f"sqlite:///{pki['tmp'] / 'g.db'}", pki["tmp"], args=["--mllp-port", str(port)], extra_env={
        "GATEWAY_MLLP_TLS_CERT": pki["server_cert"], "GATEWAY_MLLP_TLS_KEY": pki["server_key"],
        "GATEWAY_MLLP_TLS_CLIENT_CA": pki["ca"], "GATEWAY_AUDIT": "on"}).start()
    g.mllp_port = port
    yield g
    g.stop()


def _client(pki, cert: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki["ca"])
    if cert:
        context.load_cert_chain(cert)
    return context


def _send(gateway, context: ssl.SSLContext | None, message: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", gateway.mllp_port), timeout=10) as raw:
        sock = context.wrap_socket(raw, server_hostname="127.0.0.1") if context else raw
        sock.sendall(frame(message))
        data = b""
        while not data.endswith(EB + CR):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed without an ACK")
            data += chunk
        return data[data.index(SB) + 1 : -2]


def test_the_trusts_engine_gets_its_ack_over_tls_and_is_audited_by_its_certificate(gateway, pki):
    ack = _send(gateway, _client(pki, pki["engine"]), admit(7001, control="TLS1"))
    assert b"MSA|AA|TLS1" in ack
    entries = httpx.get(gateway.base.replace("/fhir", "/inbox"), params={"status": "stored"}).json()
    assert "TLS1" in str(entries)
    sender = "certificate:RR8 integration engine"
    deadline = time.time() + 10
    while time.time() < deadline:  # the audit trail is written in the background, in batches
        found = httpx.get(f"{gateway.base}/AuditEvent", params={"altid": sender}).json()
        if found.get("entry"):
            break
        time.sleep(0.2)
    [event] = [e["resource"] for e in found["entry"]]
    assert event["outcome"] == "0" and "ACK AA" in event["outcomeDesc"]
    assert event["agent"][0]["network"]["address"] == "127.0.0.1"
    assert "Active Recovery test CA" in event["agent"][0]["who"]["display"]


@pytest.mark.parametrize("who", ["no certificate", "impostor", "plain TCP"])
def test_anyone_else_is_cut_off_before_a_message_is_read(gateway, pki, who):
    control = "TLSX" + who.split()[0]
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        if who == "plain TCP":
            _send(gateway, None, admit(7002, control=control))
        else:
            _send(gateway, _client(pki, pki["impostor"] if who == "impostor" else None), admit(7002, control=control))
    listed = httpx.get(gateway.base.replace("/fhir", "/inbox")).json()
    assert control not in str(listed)  # nothing of theirs was recorded


async def test_a_sender_without_a_certificate_is_audited_by_address_with_the_ack_outcome(tmp_path):
    from gateway.config import Settings
    from gateway.security.service import SecurityService

    svc = SecurityService(Settings(audit="on", data_dir=str(tmp_path)), store=None)
    svc.audit.queue = asyncio.Queue()  # what `start()` makes, without the writer task
    svc.record_mllp({"address": "10.1.2.3"}, b"MSH|^~\\&|GW|X|PAS|RR8|20250101||ACK^A01|1|P|2.4\rMSA|AE|C1\rERR|...")
    event = svc.audit.queue.get_nowait()
    assert event["agent"][0]["altId"] == "mllp:10.1.2.3" and event["agent"][0]["network"]["address"] == "10.1.2.3"
    assert event["outcome"] == "4" and "ACK AE" in event["outcomeDesc"]  # AE: the content was wrong


# -- which certificate may speak for which feed (mappings/hl7v2-feeds.json `certificates`) --------


def _mappings_with_rr8_certificate(folder):
    """The bundled mappings, with the RR8 feed taking MLLP only from the RR8 engine's certificate."""
    import json
    import shutil
    from pathlib import Path

    shutil.copytree(Path(__file__).resolve().parents[1] / "mappings", folder)
    feeds = json.loads((folder / "hl7v2-feeds.json").read_text())
    [rr8] = [f for f in feeds["feeds"] if "RR8" in f["match"]["sending_facility"]]
    rr8["certificates"] = ["RR8 integration engine"]
    (folder / "hl7v2-feeds.json").write_text(json.dumps(feeds))
    return folder


@pytest.fixture(scope="module")
def feeds_gateway(pki):
    """A gateway whose RR8 feed takes messages only from the RR8 engine's certificate."""
    mappings = _mappings_with_rr8_certificate(pki["tmp"] / "mappings")
    port = free_port()
    g = GatewayProcess(f"sqlite:///{pki['tmp'] / 'feeds.db'}", pki["tmp"], args=["--mllp-port", str(port)], extra_env={
        "GATEWAY_MLLP_TLS_CERT": pki["server_cert"], "GATEWAY_MLLP_TLS_KEY": pki["server_key"],
        "GATEWAY_MLLP_TLS_CLIENT_CA": pki["ca"], "GATEWAY_MAPPINGS_DIR": str(mappings)}).start()
    g.mllp_port = port
    yield g
    g.stop()


def test_plain_mllp_to_a_feed_that_lists_certificates_is_refused_and_the_operator_warned(pki, tmp_path):
    from gateway.transport.mllp import mllp_exchange

    mappings = _mappings_with_rr8_certificate(tmp_path / "mappings")
    port = free_port()
    g = GatewayProcess(f"sqlite:///{tmp_path / 'plain.db'}", tmp_path, args=["--mllp-port", str(port)],
                       extra_env={"GATEWAY_MAPPINGS_DIR": str(mappings)}).start()
    try:
        [ack] = asyncio.run(mllp_exchange("127.0.0.1", port, [admit(7104, control="PLAIN1", facility="RR8")]))
        assert b"MSA|AR|PLAIN1" in ack and b"no client certificate" in ack
        [ack] = asyncio.run(mllp_exchange("127.0.0.1", port, [admit(7105, control="PLAIN2", facility="RXX")]))
        assert b"MSA|AA|PLAIN2" in ack  # a feed that lists no certificates still takes plain MLLP
    finally:
        g.stop()
    assert "feeds lth-pas accept only named client certificates" in g.log.read_text()


def _inbox(gateway, status: str) -> list[dict]:
    return httpx.get(gateway.base.replace("/fhir", "/inbox"), params={"status": status, "_count": 500}).json()["entries"]


def test_a_feed_that_lists_certificates_takes_messages_only_from_them(feeds_gateway, pki):
    # Another engine with a certificate from the same CA claims to be the RR8 PAS: refused, kept, stored nothing
    ack = _send(feeds_gateway, _client(pki, pki["community"]), admit(7101, control="FEED1", facility="RR8"))
    assert b"MSA|AR|FEED1" in ack and b"Sender not authorised" in ack and b"Community trust engine" in ack
    found = httpx.get(f"{feeds_gateway.base}/Patient", params={"family": "TESTER7101"}).json()
    assert found.get("total", 0) == 0
    [refused] = [e for e in _inbox(feeds_gateway, "rejected") if e.get("claimedControlId") == "FEED1"]
    assert "Community trust engine" in refused["refused"] and refused["sender"] == "PAS^RR8"
    # The real engine, same control id: the impostor's attempt did not take it
    ack = _send(feeds_gateway, _client(pki, pki["engine"]), admit(7101, control="FEED1", facility="RR8"))
    assert b"MSA|AA|FEED1" in ack
    found = httpx.get(f"{feeds_gateway.base}/Patient", params={"family": "TESTER7101"}).json()
    assert found["total"] == 1


def test_a_registered_certificate_sends_only_for_its_own_feeds(feeds_gateway, pki):
    # The RR8 engine writing as another trust (RXX, a feed that lists no certificates): refused
    ack = _send(feeds_gateway, _client(pki, pki["engine"]), admit(7102, control="FEED2", facility="RXX"))
    assert b"MSA|AR|FEED2" in ack and b"registered for feed(s) lth-pas" in ack
    # A certificate registered nowhere may still send for a feed that lists none, as before
    ack = _send(feeds_gateway, _client(pki, pki["community"]), admit(7103, control="FEED3", facility="RXX"))
    assert b"MSA|AA|FEED3" in ack


def test_without_a_certificate_a_feed_that_lists_certificates_is_refused():
    from gateway.adapters.hl7v2.mapping.feeds import FeedConfig

    feeds = FeedConfig.from_dict({"feeds": [
        {"id": "lth-pas", "match": {"sending_facility": ["RR8"]}, "certificates": ["RR8 integration engine"]}]})
    assert "no client certificate" in feeds.refusal("PAS", "RR8", None)  # MLLP over plain TCP
    assert feeds.refusal("PAS", "rr8", "RR8 integration engine") is None  # facility matched as written or not
    assert feeds.refusal("PAS", "RXX", None) is None  # a feed listing no certificates: anyone the listener admits
