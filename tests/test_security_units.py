"""Security building blocks without a server: scopes, visibility rule, audit writer, start-up rule.

Also holds the key and token helpers the end-to-end security tests share (keys are generated
here, per test run; nothing is checked in).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gateway.config import Settings
from gateway.security.principal import CONFIDENTIALITY, Principal, may_read, parse_labels
from gateway.security.scopes import narrow, parse_scope, parse_scopes
from gateway.security.service import StartupRefused, check_startup
from gateway.security.visibility import visibility_condition

R = (CONFIDENTIALITY, "R")
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


# --- helpers shared by the security tests -----------------------------------------------------------

class Keypair:
    """A private key, its kid and public JWK (RSA for RS384, EC P-384 for ES384)."""

    def __init__(self, kind: str = "rsa") -> None:
        if kind == "rsa":
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.alg = "RS384"
            jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        else:
            self.key = ec.generate_private_key(ec.SECP384R1())
            self.alg = "ES384"
            jwk = json.loads(ECAlgorithm.to_jwk(self.key.public_key()))
        self.kid = uuid.uuid4().hex[:16]
        self.public_jwk = {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def jwks(self) -> dict:
        return {"keys": [self.public_jwk]}

    def sign(self, claims: dict, kid: str | None = None) -> str:
        return jwt.encode(claims, self.key, algorithm=self.alg, headers={"kid": kid or self.kid})


def assertion(client_id: str, key: Keypair, token_url: str, **overrides) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 240, "iat": now,
              "jti": uuid.uuid4().hex}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return key.sign(claims)


def request_token(origin: str, client_id: str, key: Keypair, scope: str, **overrides) -> httpx.Response:
    token_url = f"{origin}/auth/token"
    return httpx.post(token_url, data={
        "grant_type": "client_credentials", "scope": scope, "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion(client_id, key, token_url, **overrides)}, timeout=30)


# --- scopes -----------------------------------------------------------------------------------------

def test_scope_grammar_v2_and_v1():
    assert str(parse_scope("system/Encounter.rs")) == "system/Encounter.rs"
    assert parse_scope("system/*.cruds").letters == "cruds"
    assert parse_scope("user/Patient.r").context == "user"
    assert parse_scope("user/Patient.read").letters == "rs"
    assert parse_scope("system/Observation.write").letters == "cud"
    assert parse_scope("system/*.*").letters == "cruds"
    for bad in ("system/Encounter.sr", "system/Encounter.rr", "patient/Patient.r", "launch", "openid",
                "system/Observation.rs?category=laboratory", "system/encounter.r", "system/Encounter.x"):
        assert parse_scope(bad) is None, bad


def test_requested_scopes_are_narrowed_to_the_allowance():
    allowed = parse_scopes("system/Encounter.rs system/Patient.r")
    got = {str(s) for s in narrow(parse_scopes("system/*.cruds system/Encounter.cruds system/Goal.r"), allowed)}
    assert got == {"system/Encounter.rs", "system/Patient.r"}
    assert narrow(parse_scopes("system/Goal.r"), allowed) == []


def test_principal_permissions():
    p = Principal("c", scopes=tuple(parse_scopes("system/Encounter.rs user/Patient.read system/Observation.c")))
    assert p.allows("Encounter", "r") and p.allows("Encounter", "s") and not p.allows("Encounter", "u")
    assert p.can_see_type("Patient") and not p.can_see_type("Observation") and not p.all_types
    assert p.readable_types() == ["Encounter", "Patient"]


# --- the visibility rule ------------------------------------------------------------------------------

def test_may_read_by_type_and_label():
    restricted = parse_labels(f"{CONFIDENTIALITY}|R,{CONFIDENTIALITY}|V")
    plain = {"resourceType": "Observation", "id": "1"}
    labelled = {"resourceType": "Observation", "id": "2", "meta": {"security": [{"system": CONFIDENTIALITY, "code": "R"}]}}
    other_label = {"resourceType": "Observation", "id": "3", "meta": {"security": [{"system": "x", "code": "R"}]}}
    nobody = Principal("n", scopes=tuple(parse_scopes("system/*.rs")))
    cleared = Principal("c", scopes=tuple(parse_scopes("system/*.rs")), labels=frozenset({R}))
    typed = Principal("t", scopes=tuple(parse_scopes("system/Patient.rs")), labels=frozenset({R}))
    assert may_read(nobody, plain, restricted) and not may_read(nobody, labelled, restricted)
    assert may_read(nobody, other_label, restricted)  # same code, another system: not restricted
    assert may_read(cleared, labelled, restricted)
    assert not may_read(typed, plain, restricted)
    assert may_read(None, labelled, restricted)  # the gateway itself
    # bytes as stored, with and without the label
    assert not may_read(nobody, json.dumps(labelled, separators=(",", ":")).encode(), restricted)
    assert may_read(nobody, b'{"resourceType":"Observation","id":"1"}', restricted)


def test_subscriptions_are_visible_to_their_owner_only():
    from gateway.security.guard import _owned

    sub = _owned({"resourceType": "Subscription", "meta": {"tag": [
        {"system": "https://fhir.activerecovery.example/CodeSystem/subscription-owner", "code": "mallory"}]}}, "alice")
    alice = Principal("alice", scopes=tuple(parse_scopes("system/*.cruds")))
    bob = Principal("bob", scopes=tuple(parse_scopes("system/*.cruds")))
    ops = Principal("ops", scopes=tuple(parse_scopes("system/*.rs")), operator=True)
    assert may_read(alice, sub, frozenset()) and not may_read(bob, sub, frozenset()) and may_read(ops, sub, frozenset())


def test_visibility_condition_shapes():
    labels = frozenset({R})
    assert visibility_condition(Principal("x", unrestricted=True), frozenset()) is None
    everything = Principal("o", scopes=tuple(parse_scopes("system/*.rs")), operator=True)
    assert visibility_condition(everything, frozenset()) is None
    cond, args = visibility_condition(everything, labels)
    assert "_security" in cond and args == [CONFIDENTIALITY, "R"]
    cond, args = visibility_condition(Principal("t", scopes=tuple(parse_scopes("system/Patient.rs"))), frozenset())
    assert cond.startswith("(type || '') IN (?)") and args == ["Patient"]
    cond, _ = visibility_condition(Principal("none"), frozenset())
    assert cond == "1 = 0"


# --- start-up rule ------------------------------------------------------------------------------------

def test_no_auth_means_loopback_only(tmp_path):
    assert "OFF" in check_startup(Settings(host="127.0.0.1"))
    assert "OFF" in check_startup(Settings(host="::1"))
    assert "OFF" in check_startup(Settings(host="localhost"))
    for host in ("0.0.0.0", "::", "10.1.2.3", "gateway.example"):
        with pytest.raises(StartupRefused, match="refusing to serve without authentication"):
            check_startup(Settings(host=host))
    with pytest.raises(StartupRefused):
        check_startup(Settings(host="0.0.0.0", auth="off", clients_file=str(tmp_path / "c.json")))
    with pytest.raises(StartupRefused):  # MLLP on a public address without auth
        check_startup(Settings(host="127.0.0.1", mllp_port=2575, mllp_host="0.0.0.0"))
    with pytest.raises(StartupRefused, match="needs GATEWAY_CLIENTS_FILE"):
        check_startup(Settings(host="127.0.0.1", auth="on"))
    assert "ON" in check_startup(Settings(host="0.0.0.0", clients_file=str(tmp_path / "c.json")))


def test_registry_rejects_bad_files(tmp_path):
    from gateway.security.clients import Registry, RegistryError

    def write(obj) -> str:
        p = tmp_path / f"{uuid.uuid4().hex}.json"
        p.write_text(json.dumps(obj))
        return str(p)

    with pytest.raises(RegistryError, match="scope"):
        Registry(write({"clients": [{"client_id": "a", "scopes": ["patient/Patient.r"]}]}))
    with pytest.raises(RegistryError, match="channels"):
        Registry(write({"clients": [{"client_id": "a", "channels": ["fax"]}]}))
    with pytest.raises(RegistryError, match="twice"):
        Registry(write({"clients": [{"client_id": "a"}, {"client_id": "a"}]}))
    private = Keypair().public_jwk | {"d": "secret"}
    with pytest.raises(RegistryError, match="public keys"):
        Registry(write({"clients": [{"client_id": "a", "jwks": {"keys": [private]}}]}))
    with pytest.raises(RegistryError, match="https"):
        Registry(write({"clients": [{"client_id": "a", "jwks_uri": "http://partner.example/jwks"}]}))
    reg = Registry(write({"clients": [{"client_id": "a", "scopes": ["system/*.rs"], "labels": ["R"],
                                       "jwks": Keypair("ec").jwks()}]}))
    assert reg.client("a").labels == frozenset({R})


def test_example_clients_file_is_valid():
    from gateway.security.clients import Registry

    root = Path(__file__).resolve().parent.parent
    reg = Registry(str(root / "conf" / "clients.example.json"))
    assert reg.clients and all(c.organization for c in reg.clients.values())


# --- depth limit -----------------------------------------------------------------------------------

def test_depth_limit():
    from gateway.fhir.outcome import FhirError
    from gateway.security.limits import check_depth, too_deep

    nested: dict = {}
    node = nested
    for _ in range(100):
        node["a"] = {}
        node = node["a"]
    assert too_deep(nested, 64) and not too_deep(nested, 101)
    with pytest.raises(FhirError) as exc:
        check_depth([nested], 64)
    assert exc.value.status == 400
    check_depth({"resourceType": "Patient", "name": [{"given": ["A"]}]}, 64)


# --- audit writer: bounded, never blocking, loop-free -------------------------------------------------

async def test_audit_queue_drops_and_counts_when_full(tmp_path):
    from gateway.security.audit import AuditWriter, build_event
    from gateway.store.sqlite import SqliteStore

    store = SqliteStore(str(tmp_path / "a.db"), Settings().tz, "NORMAL")
    await store.open()
    try:
        writer = AuditWriter(store, queue_size=5, batch_size=2)
        writer.start()
        t0 = time.perf_counter()
        for i in range(50):  # no await between: the writer cannot drain, the queue overflows
            writer.record(build_event(None, "127.0.0.1", "read", 401, f"probe {i}", []))
        assert time.perf_counter() - t0 < 0.5  # recording never waits for the store
        assert writer.dropped == 45
        await writer.flush()
        assert writer.written == 5
        async with store.session() as s:
            rows = await s.find("r.type = ? AND r.deleted = 0", ["AuditEvent"], limit=100)
        assert len(rows) == 5
        await writer.stop()
    finally:
        await store.close()


async def test_audit_writer_survives_a_broken_store(tmp_path):
    from gateway.security.audit import AuditWriter, build_event
    from gateway.store.sqlite import SqliteStore

    store = SqliteStore(str(tmp_path / "b.db"), Settings().tz, "NORMAL")
    await store.open()
    writer = AuditWriter(store, queue_size=10, batch_size=10)
    writer.start()
    await store.close()  # the store goes away under the writer
    writer.record(build_event(None, "", "read", 401, "x", []))
    await writer.flush(2)
    assert writer.failed == 1 and writer.written == 0
    await writer.stop()


def test_shared_helpers_sign_verifiable_assertions():
    k = Keypair("ec")
    token = assertion("c1", k, "http://127.0.0.1:1/auth/token")
    claims = jwt.decode(token, jwt.PyJWK.from_dict(k.public_jwk).key, algorithms=["ES384"],
                        audience="http://127.0.0.1:1/auth/token")
    assert claims["iss"] == claims["sub"] == "c1"




def test_visibility_wraps_every_statement_shape_or_refuses():
    from gateway.security.visibility import UnfilterableQuery, _prefixed

    assert _prefixed("SELECT pk FROM resource_version", "t", "c") is None  # not the resource table
    assert _prefixed("SELECT r.pk FROM resource r", "t", "c").startswith("WITH resource AS NOT MATERIALIZED")
    merged = _prefixed("WITH x AS (SELECT pk FROM resource) SELECT * FROM x", "t", "c")
    assert merged.startswith("WITH resource AS NOT MATERIALIZED (SELECT * FROM t WHERE c), x AS")
    with pytest.raises(UnfilterableQuery):
        _prefixed("WITH RECURSIVE x AS (SELECT pk FROM resource) SELECT * FROM x", "t", "c")
