"""Access control end to end: a real `gateway serve` with a partner registry, on both back ends.

Keys are generated per run; tokens come from the gateway's own `POST /auth/token` (SMART Backend
Services, private_key_jwt) or are signed directly by a trusted issuer's test key. The restricted
data is a council safeguarding note labelled v3-Confidentiality R, and a protected person.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest

from conftest import ROOT, GatewayProcess, drop_pg_schema, free_port, pg_schema_url
from test_security_units import JWT_BEARER, Keypair, assertion, request_token

CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
R_LABEL = {"system": CONF, "code": "R", "display": "restricted"}
SAFEGUARDING = "https://fhir.activerecovery.example/CodeSystem/council-note|safeguarding"
IDP = "https://idp.test.example"
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


class _JwksServer:
    """A partner's JWKS published over real HTTP on loopback (for `jwks_uri`)."""

    def __init__(self, jwks: dict) -> None:
        body = json.dumps(jwks).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class World:
    """The secured gateway, its partners' keys and helpers to call it as each partner."""

    def __init__(self, tmp, database_url: str) -> None:
        self.keys = {name: Keypair("ec" if name in ("council", "reader") else "rsa")
                     for name in ("hospital", "council", "community", "reader", "ops", "nolabel")}
        self.idp = Keypair()
        self.jwks_server = _JwksServer(self.keys["reader"].jwks())
        (tmp / "hospital.jwks.json").write_text(json.dumps(self.keys["hospital"].jwks()))
        (tmp / "idp.jwks.json").write_text(json.dumps(self.idp.jwks()))
        clients = {
            "issuers": [{"issuer": IDP, "jwks_file": "idp.jwks.json"}],
            "clients": [
                {"client_id": "hospital", "name": "City Hospitals", "organization": "RR8",
                 "scopes": ["system/*.cruds"], "channels": ["hl7v2", "adw"], "jwks_file": "hospital.jwks.json"},
                {"client_id": "council", "name": "City Council", "organization": "LDS01", "scopes": ["system/*.cruds"],
                 "channels": ["ingest-council"], "labels": ["R"], "jwks": self.keys["council"].jwks()},
                {"client_id": "community", "name": "Community Therapy", "organization": "RY6",
                 "scopes": ["system/Patient.rs", "system/Encounter.rs", "system/Observation.cruds",
                            "system/Subscription.cruds"],
                 "channels": ["ingest-community"], "jwks": self.keys["community"].jwks()},
                {"client_id": "reader", "name": "Read-only viewer", "organization": "RX1",
                 "scopes": ["user/Patient.read"], "jwks_uri": self.jwks_server.url},
                {"client_id": "ops", "name": "Service desk", "organization": "LDS01", "scopes": ["system/*.rs"],
                 "labels": ["R", "V"], "operator": True, "jwks": self.keys["ops"].jwks()},
                {"client_id": "nolabel", "name": "No scopes at all", "organization": "RX2", "scopes": [],
                 "jwks": self.keys["nolabel"].jwks()},
            ],
        }
        self.clients_file = tmp / "clients.json"
        self.clients_file.write_text(json.dumps(clients))
        self.server = GatewayProcess(database_url, tmp, extra_env={
            "GATEWAY_CLIENTS_FILE": str(self.clients_file), "GATEWAY_AUDIT_BATCH_SIZE": "50"})
        self.origin = f"http://127.0.0.1:{self.server.port}"
        self.base = self.origin + "/fhir"
        self._tokens: dict[tuple[str, str], str] = {}

    def token(self, who: str, scope: str = "system/*.cruds") -> str:
        key = (who, scope)
        if key not in self._tokens:
            resp = request_token(self.origin, who, self.keys[who], scope)
            assert resp.status_code == 200, resp.text
            self._tokens[key] = resp.json()["access_token"]
        return self._tokens[key]

    def client(self, who: str, scope: str = "system/*.cruds") -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=30,
                            headers={**FHIR_JSON, "Authorization": f"Bearer {self.token(who, scope)}"})

    def idp_token(self, client_id: str, scope: str, **over) -> str:
        now = int(time.time())
        claims = {"iss": IDP, "sub": client_id, "client_id": client_id, "aud": self.base, "exp": now + 300,
                  "iat": now, "scope": scope, "jti": uuid.uuid4().hex}
        claims.update(over)
        return self.idp.sign({k: v for k, v in claims.items() if v is not None})


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"sec-{request.param}")
    url = f"sqlite:///{tmp / 'gateway.db'}" if request.param == "sqlite" else pg_schema_url("gwsec")
    w = World(tmp, url)
    w.server.start()
    w.data = _seed(w)
    yield w
    w.server.stop()
    w.jwks_server.close()
    if request.param == "postgres":
        asyncio.run(drop_pg_schema(url))


def _create(c: httpx.Client, resource: dict) -> dict:
    r = c.post(f"/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return r.json()


def _seed(w: World) -> dict:
    tag = uuid.uuid4().hex[:10]
    with w.client("council") as c:
        org = _create(c, {"resourceType": "Organization", "name": f"Council {tag}"})
        p1 = _create(c, {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": f"p1-{tag}"}],
                         "name": [{"family": f"Visible{tag}"}], "managingOrganization": {"reference": f"Organization/{org['id']}"}})
        p2 = _create(c, {"resourceType": "Patient", "meta": {"security": [R_LABEL]},
                         "identifier": [{"system": "urn:test", "value": f"p2-{tag}"}], "name": [{"family": f"Protected{tag}"}]})
        system, code = SAFEGUARDING.split("|")
        note = _create(c, {"resourceType": "Observation", "status": "final", "meta": {"security": [R_LABEL]},
                           "code": {"coding": [{"system": system, "code": code}]}, "subject": {"reference": f"Patient/{p1['id']}"},
                           "effectiveDateTime": "2026-01-10T10:00:00Z",
                           "valueString": "Safeguarding concern raised by the council"})
        visit = _create(c, {"resourceType": "Observation", "status": "final",
                            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "273302005"}]},
                            "subject": {"reference": f"Patient/{p1['id']}"}, "valueInteger": 15})
        e1 = _create(c, {"resourceType": "Encounter", "status": "finished", "class": {"code": "HH"},
                         "subject": {"reference": f"Patient/{p1['id']}"},
                         "serviceProvider": {"reference": f"Organization/{org['id']}"}})
        e2 = _create(c, {"resourceType": "Encounter", "status": "finished", "class": {"code": "HH"},
                         "subject": {"reference": f"Patient/{p2['id']}"}})
        cond = _create(c, {"resourceType": "Condition", "subject": {"reference": f"Patient/{p1['id']}"},
                           "code": {"text": "Hip fracture"}})
    return {"tag": tag, "org": org["id"], "p1": p1["id"], "p2": p2["id"], "note": note["id"], "visit": visit["id"],
            "e1": e1["id"], "e2": e2["id"], "cond": cond["id"]}


def _ids(bundle: dict) -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])}


# --- authentication -------------------------------------------------------------------------------

def test_public_discovery(world):
    meta = httpx.get(world.base + "/metadata", headers={"Accept": "application/fhir+json"}).json()
    security = meta["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = security["extension"][0]
    assert uris["url"].endswith("oauth-uris") and uris["extension"][0]["valueUri"] == world.origin + "/auth/token"
    for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
        conf = httpx.get(world.origin + path).json()
        assert conf["token_endpoint"] == world.origin + "/auth/token"
        assert "private_key_jwt" in conf["token_endpoint_auth_methods_supported"]
        assert "client_credentials" in conf["grant_types_supported"]
        assert "permission-v2" in conf["capabilities"]
    jwks = httpx.get(conf["jwks_uri"]).json()
    assert jwks["keys"] and "d" not in jwks["keys"][0]


@pytest.mark.parametrize("path", ["/fhir/Patient", "/fhir/Patient/x", "/patients", "/inbox", "/events", "/fhir/_history"])
def test_no_token_is_401_with_www_authenticate(world, path):
    r = httpx.get(world.origin + path)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["resourceType"] == "OperationOutcome"


def test_bad_tokens_are_401(world):
    pid = world.data["p1"]
    good = world.token("hospital")
    header, payload, sig = good.split(".")
    forged_sig = header + "." + payload + "." + ("A" if sig[0] != "A" else "B") + sig[1:]
    other = Keypair()
    now = int(time.time())
    own_claims = {"iss": world.origin + "/auth", "sub": "hospital", "client_id": "hospital", "aud": world.base,
                  "exp": now + 300, "scope": "system/*.cruds"}
    cases = {
        "wrong signature (tampered)": forged_sig,
        "signed by a stranger's key as if by the gateway": other.sign(own_claims),
        "expired": world.idp_token("hospital", "system/*.rs", exp=now - 120, iat=now - 600),
        "wrong audience": world.idp_token("hospital", "system/*.rs", aud="https://other.example/fhir"),
        "unknown issuer": Keypair().sign({**own_claims, "iss": "https://evil.example"}),
        "unregistered client": world.idp_token("stranger", "system/*.rs"),
        "organisation mismatch": world.idp_token("hospital", "system/*.rs", organization="XXX"),
        "not a JWT": "abc.def",
        "alg none": "eyJhbGciOiJub25lIn0." + payload + ".",
    }
    for what, token in cases.items():
        r = httpx.get(f"{world.base}/Patient/{pid}", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, what
        assert 'error="invalid_token"' in r.headers["www-authenticate"], what
    ok = httpx.get(f"{world.base}/Patient/{pid}", headers={"Authorization": f"Bearer {good}"})
    assert ok.status_code == 200


def test_trusted_issuer_token_is_accepted_and_narrowed(world):
    pid = world.data["p1"]
    # the IdP grants more than the registry allows the community client: the registry wins
    token = world.idp_token("community", "system/*.cruds")
    h = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    assert httpx.get(f"{world.base}/Patient/{pid}", headers=h).status_code == 200
    assert httpx.get(f"{world.base}/Condition/{world.data['cond']}", headers=h).status_code == 403
    r = httpx.post(f"{world.base}/Patient", headers={**h, "Content-Type": "application/fhir+json"},
                   json={"resourceType": "Patient"})
    assert r.status_code == 403


# --- the token endpoint ------------------------------------------------------------------------------

def test_token_endpoint_end_to_end(world):
    r = request_token(world.origin, "community", world.keys["community"], "system/Patient.rs system/Condition.rs")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 300 and body["scope"] == "system/Patient.rs"
    assert r.headers["cache-control"] == "no-store"
    h = {"Authorization": f"Bearer {body['access_token']}", "Accept": "application/fhir+json"}
    assert httpx.get(f"{world.base}/Patient/{world.data['p1']}", headers=h).status_code == 200
    assert httpx.get(f"{world.base}/Encounter/{world.data['e1']}", headers=h).status_code == 403  # not requested
    # v1 scope from a client whose key is published at a jwks_uri (fetched over HTTP)
    r = request_token(world.origin, "reader", world.keys["reader"], "user/Patient.read")
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "user/Patient.rs"


def test_token_endpoint_refusals(world):
    url = world.origin + "/auth/token"
    key = world.keys["community"]
    replay = assertion("community", key, url)
    form = {"grant_type": "client_credentials", "scope": "system/Patient.rs", "client_assertion_type": JWT_BEARER}
    assert httpx.post(url, data={**form, "client_assertion": replay}).status_code == 200
    again = httpx.post(url, data={**form, "client_assertion": replay})
    assert again.status_code == 401 and "replay" in again.json()["error_description"]
    cases = {
        "wrong aud": assertion("community", key, "https://elsewhere.example/token"),
        "expired": assertion("community", key, url, exp=int(time.time()) - 120),
        "exp too far ahead": assertion("community", key, url, exp=int(time.time()) + 3600),
        "no jti": assertion("community", key, url, jti=None),
        "sub differs": assertion("community", key, url, sub="council"),
        "wrong key": assertion("community", world.keys["council"], url),
        "unknown client": assertion("nobody", key, url),
    }
    for what, a in cases.items():
        r = httpx.post(url, data={**form, "client_assertion": a})
        assert r.status_code == 401, (what, r.text)
        assert r.json()["error"] == "invalid_client", what
    r = httpx.post(url, data={**form, "grant_type": "password", "client_assertion": assertion("community", key, url)})
    assert r.json()["error"] == "unsupported_grant_type"
    r = request_token(world.origin, "community", key, "system/Condition.rs")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = httpx.post(url, data={**form, "client_assertion_type": "client_secret"})
    assert r.status_code == 401


# --- scopes --------------------------------------------------------------------------------------------

def test_scopes_per_interaction(world):
    d = world.data
    with world.client("community") as c:
        assert c.get(f"/Patient/{d['p1']}").status_code == 200
        assert c.get("/Patient", params={"_id": d["p1"]}).status_code == 200
        assert c.get(f"/Condition/{d['cond']}").status_code == 403
        assert c.get("/Condition", params={"subject": d["p1"]}).status_code == 403
        assert c.post("/Patient", json={"resourceType": "Patient"}).status_code == 403
        assert c.delete(f"/Encounter/{d['e1']}").status_code == 403
        assert c.get("/_history").status_code == 403  # system history needs every type
        denied = c.get("/Condition")
        assert denied.json()["issue"][0]["code"] == "forbidden"
        created = c.post("/Observation", json={"resourceType": "Observation", "status": "final",
                                                "code": {"text": "walk test"}, "subject": {"reference": f"Patient/{d['p1']}"}})
        assert created.status_code == 201
    with world.client("reader", "user/Patient.read") as c:
        assert c.get(f"/Patient/{d['p1']}").status_code == 200
        assert c.get(f"/Encounter/{d['e1']}").status_code == 403
        assert c.put(f"/Patient/{d['p1']}", json={"resourceType": "Patient", "id": d["p1"]}).status_code == 403


def test_has_on_a_type_outside_scope_is_refused(world):
    with world.client("community") as c:
        r = c.get("/Patient", params={"_has:Condition:subject:code": "x"})
        assert r.status_code == 403
        assert c.get("/Patient", params={"_has:Encounter:subject:status": "finished", "_id": world.data["p1"]}).status_code == 200


def test_includes_and_chains_skip_types_outside_scope(world):
    d = world.data
    with world.client("community") as c:
        b = c.get("/Encounter", params={"_id": d["e1"], "_include": "Encounter:service-provider"}).json()
        assert _ids(b) == {f"Encounter/{d['e1']}"}  # the Organization is not the community client's to read
        b = c.get("/Patient", params={"_id": d["p1"], "_revinclude": "Condition:subject"}).json()
        assert f"Condition/{d['cond']}" not in _ids(b)
        b = c.get("/Encounter", params={"service-provider:Organization.name": f"Council {d['tag']}"}).json()
        assert b["total"] == 0  # cannot probe Organization fields through a chain
        ev = c.get(f"/Patient/{d['p1']}/$everything").json()
        assert {i.split("/")[0] for i in _ids(ev)} <= {"Patient", "Encounter", "Observation"}
        assert ev["total"] == len(ev["entry"])
    with world.client("hospital") as c:
        b = c.get("/Encounter", params={"_id": d["e1"], "_include": "Encounter:service-provider"}).json()
        assert f"Organization/{d['org']}" in _ids(b)


# --- security labels: invisible everywhere, 404 on read ---------------------------------------------

def test_labelled_resources_direct_read(world):
    d = world.data
    with world.client("hospital") as c:
        assert c.get(f"/Observation/{d['note']}").status_code == 404
        assert c.get(f"/Patient/{d['p2']}").status_code == 404
        assert c.get(f"/Observation/{d['note']}/_history/1").status_code == 404
        hist = c.get(f"/Observation/{d['note']}/_history").json()
        assert hist.get("entry", []) == [] and "total" not in hist
        assert c.get(f"/Patient/{d['p2']}/$everything").status_code == 404
    with world.client("council") as c:
        assert c.get(f"/Observation/{d['note']}").status_code == 200
        assert c.get(f"/Patient/{d['p2']}").status_code == 200


def test_labelled_resources_are_absent_from_search_and_totals(world):
    d = world.data
    with world.client("hospital") as h, world.client("council") as c:
        q = {"subject": f"Patient/{d['p1']}"}
        hb, cb = h.get("/Observation", params=q).json(), c.get("/Observation", params=q).json()
        assert f"Observation/{d['note']}" in _ids(cb) and f"Observation/{d['note']}" not in _ids(hb)
        assert hb["total"] == cb["total"] - 1
        hc = h.get("/Observation", params={**q, "_summary": "count"}).json()
        assert hc["total"] == hb["total"]
        fam = {"family": f"Protected{d['tag']}"}
        assert h.get("/Patient", params=fam).json()["total"] == 0
        assert c.get("/Patient", params=fam).json()["total"] == 1
        sec = {"_security": f"{CONF}|R"}  # searching for the label itself finds nothing hidden
        assert all(e["resource"]["id"] not in (d["note"], d["p2"]) for e in h.get("/Observation", params=sec).json().get("entry", []))


def test_labelled_resources_are_absent_from_includes(world):
    d = world.data
    with world.client("hospital") as h, world.client("council") as c:
        q = {"_id": d["e2"], "_include": "Encounter:subject"}
        assert f"Patient/{d['p2']}" in _ids(c.get("/Encounter", params=q).json())
        assert _ids(h.get("/Encounter", params=q).json()) == {f"Encounter/{d['e2']}"}
        q = {"_id": d["p1"], "_revinclude": "Observation:subject"}
        hb, cb = h.get("/Patient", params=q).json(), c.get("/Patient", params=q).json()
        assert f"Observation/{d['note']}" in _ids(cb) and f"Observation/{d['note']}" not in _ids(hb)
        assert f"Observation/{d['visit']}" in _ids(hb)
        q = {"_id": d["note"], "_include": "Observation:subject"}  # iterate from a hidden row: nothing
        assert _ids(h.get("/Observation", params=q).json()) == set()


def test_labelled_resources_do_not_leak_through_has_or_chains(world):
    d = world.data
    code = SAFEGUARDING
    with world.client("hospital") as h, world.client("council") as c:
        q = {"_has:Observation:subject:code": code, "_id": d["p1"]}
        assert c.get("/Patient", params=q).json()["total"] == 1
        assert h.get("/Patient", params=q).json()["total"] == 0  # the note's existence is not revealed
        q = {"subject:Patient.family": f"Protected{d['tag']}"}
        assert c.get("/Encounter", params=q).json()["total"] == 1
        assert h.get("/Encounter", params=q).json()["total"] == 0


def test_labelled_resources_are_absent_from_everything(world):
    d = world.data
    with world.client("hospital") as h, world.client("council") as c:
        hb = h.get(f"/Patient/{d['p1']}/$everything").json()
        cb = c.get(f"/Patient/{d['p1']}/$everything").json()
        assert f"Observation/{d['note']}" in _ids(cb) and f"Observation/{d['note']}" not in _ids(hb)
        assert hb["total"] == len(hb["entry"]) and cb["total"] == hb["total"] + 1


def test_labels_in_batch_and_transaction(world):
    d = world.data
    with world.client("hospital") as h:
        batch = {"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": f"Observation/{d['note']}"}},
            {"request": {"method": "GET", "url": f"Observation/{d['visit']}"}},
            {"request": {"method": "GET", "url": f"Observation?subject=Patient/{d['p1']}"}},
            {"request": {"method": "GET", "url": f"Patient/{d['p2']}/$everything"}},
        ]}
        out = h.post("", json=batch).json()["entry"]
        assert out[0]["response"]["status"].startswith("404")
        assert out[1]["response"]["status"].startswith("200")
        assert f"Observation/{d['note']}" not in _ids(out[2]["resource"])
        assert out[3]["response"]["status"].startswith("404")
        tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "GET", "url": f"Observation?subject=Patient/{d['p1']}"}},
            {"request": {"method": "GET", "url": f"Observation/{d['note']}"}}]}
        assert h.post("", json=tx).status_code == 404
        tx["entry"] = tx["entry"][:1]
        r = h.post("", json=tx)
        assert r.status_code == 200 and f"Observation/{d['note']}" not in _ids(r.json()["entry"][0]["resource"])
        # a write entry outside scope fails the whole transaction; labels the client lacks cannot be written
        tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "POST", "url": "Observation"},
             "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                          "meta": {"security": [R_LABEL]}}}]}
        assert h.post("", json=tx).status_code == 403
    with world.client("community") as c:
        batch = {"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": f"Condition/{d['cond']}"}},
            {"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": "Patient"}}]}
        out = c.post("", json=batch).json()["entry"]
        assert [e["response"]["status"][:3] for e in out] == ["403", "403"]


def test_writes_cannot_reach_hidden_resources(world):
    d = world.data
    with world.client("hospital") as h:
        note = {"resourceType": "Observation", "id": d["note"], "status": "amended", "code": {"text": "overwritten"}}
        assert h.put(f"/Observation/{d['note']}", json=note).status_code == 404
        assert h.delete(f"/Observation/{d['note']}").status_code == 404
        r = h.patch(f"/Observation/{d['note']}", content=b'[{"op":"replace","path":"/status","value":"amended"}]',
                    headers={"Content-Type": "application/json-patch+json"})
        assert r.status_code == 404
        r = h.delete("/Patient", params={"identifier": f"urn:test|p2-{d['tag']}"})
        assert r.status_code == 403
        r = h.post("/Observation", json={"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                         "meta": {"security": [R_LABEL]}})
        assert r.status_code == 403
    with world.client("council") as c:
        assert c.get(f"/Observation/{d['note']}").json()["status"] == "final"


# --- inbound channels and pages ---------------------------------------------------------------------

def test_inbound_channel_permissions(world):
    adt = (ROOT / "tests" / "fixtures" / "hl7v2" / "adt_a01_v24.hl7").read_bytes()
    er7 = {"Content-Type": "x-application/hl7-v2+er7"}
    csv = {"Content-Type": "text/csv"}
    hospital, council, community = (world.token(w) for w in ("hospital", "council", "community"))
    r = httpx.post(world.origin + "/hl7v2", content=adt, headers={**er7, "Authorization": f"Bearer {hospital}"})
    assert r.status_code == 200 and b"MSA|A" in r.content
    r = httpx.post(world.origin + "/hl7v2", content=adt, headers={**er7, "Authorization": f"Bearer {community}"})
    assert r.status_code == 403
    assert httpx.post(world.origin + "/hl7v2", content=adt, headers=er7).status_code == 401
    body = b"not,a,real,file\n"
    r = httpx.post(world.origin + "/ingest/community", content=body, headers={**csv, "Authorization": f"Bearer {council}"})
    assert r.status_code == 403
    r = httpx.post(world.origin + "/ingest/council", content=body, headers={**csv, "Authorization": f"Bearer {council}"})
    assert r.status_code in (200, 400)  # let through to the pipeline, which judges the file
    r = httpx.post(world.base + "/$process-message", content=b"{}",
                   headers={"Content-Type": "application/fhir+json", "Authorization": f"Bearer {council}"})
    assert r.status_code == 403
    r = httpx.post(world.base + "/$process-message", content=b"{}",
                   headers={"Content-Type": "application/fhir+json", "Authorization": f"Bearer {hospital}"})
    assert r.status_code != 403
    ops = world.token("ops", "system/*.rs")
    assert httpx.get(world.origin + "/inbox", headers={"Authorization": f"Bearer {hospital}"}).status_code == 403
    assert httpx.get(world.origin + "/inbox", headers={"Authorization": f"Bearer {ops}"}).status_code == 200


def test_pages_need_a_token_and_filter_like_the_api(world):
    d = world.data
    h = {"Authorization": f"Bearer {world.token('hospital')}", "Accept": "text/html"}
    r = httpx.get(f"{world.origin}/patients/{d['p1']}", headers=h)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert r.headers["x-frame-options"] == "DENY" and "default-src" in r.headers["content-security-policy"]
    assert "Safeguarding concern" not in r.text
    council = {"Authorization": f"Bearer {world.token('council')}", "Accept": "text/html"}
    assert "Safeguarding concern" in httpx.get(f"{world.origin}/patients/{d['p1']}", headers=council).text
    r = httpx.get(f"{world.origin}/patients/{d['p2']}", headers=h)
    assert r.status_code == 404
    reader = {"Authorization": f"Bearer {world.token('reader', 'user/Patient.read')}"}
    assert httpx.get(f"{world.origin}/patients?q=Visible{d['tag']}", headers=reader).status_code == 200
    r = httpx.get(f"{world.origin}/patients/{d['p1']}", headers={"Authorization": f"Bearer {world.idp_token('nolabel', '')}"})
    assert r.status_code == 403  # a client that may not read Patient gets no pages


def test_subscriptions_belong_to_their_creator(world):
    sub = {"resourceType": "Subscription", "status": "off", "reason": "test", "criteria": "Encounter?status=finished",
           "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"},
           "meta": {"tag": [{"system": "https://fhir.activerecovery.example/CodeSystem/subscription-owner",
                             "code": "hospital"}]}}
    with world.client("council") as c:
        created = c.post("/Subscription", json=sub).json()
        tags = created["meta"]["tag"]
        assert {"system": "https://fhir.activerecovery.example/CodeSystem/subscription-owner", "code": "council"} in [
            {k: t[k] for k in ("system", "code")} for t in tags]
        assert c.get(f"/Subscription/{created['id']}").status_code == 200
    with world.client("hospital") as h:
        assert h.get(f"/Subscription/{created['id']}").status_code == 404
        assert created["id"] not in {e["resource"]["id"] for e in h.get("/Subscription").json().get("entry", [])}
    with world.client("ops", "system/*.rs") as o:
        assert o.get(f"/Subscription/{created['id']}").status_code == 200
    token = world.idp_token("community", "system/*.cruds")  # may not read Condition: may not subscribe to it
    r = httpx.post(f"{world.base}/Subscription", json={**sub, "criteria": "Condition?code=x"},
                   headers={**FHIR_JSON, "Authorization": f"Bearer {token}"})
    assert r.status_code == 403 and "may not subscribe to Condition" in r.text
    r = httpx.post(f"{world.base}/Subscription", json={**sub, "criteria": "Encounter?status=finished"},
                   headers={**FHIR_JSON, "Authorization": f"Bearer {token}"})
    assert r.status_code == 201


def test_subscribers_receive_only_what_they_may_read(world):
    """A partner subscribed to Observations is not told about a council safeguarding note it may
    not read, though the note matches its criteria."""
    from test_events_support import Receiver, create_active, subscription

    code = f"obs-{uuid.uuid4().hex[:8]}"
    receiver = Receiver()
    try:
        with world.client("community", "system/Observation.cruds system/Subscription.cruds") as c:
            create_active(c, world.base, subscription(f"Observation?code=urn:test|{code}", receiver.url))

        def observation(label: bool, text: str) -> dict:
            obs = {"resourceType": "Observation", "status": "final", "valueString": text,
                   "code": {"coding": [{"system": "urn:test", "code": code}]},
                   "subject": {"reference": f"Patient/{world.data['p1']}"}}
            return {**obs, "meta": {"security": [R_LABEL]}} if label else obs

        with world.client("council") as council:
            seen = _create(council, observation(False, "mobility improving"))
            hidden = _create(council, observation(True, "safeguarding concern"))
            last = _create(council, observation(False, "discharged from reablement"))
        rows = receiver.wait_for(lambda rows: len([r for r in rows if not r.handshake]) >= 2)
        time.sleep(1.0)  # anything owed for the labelled note would have been sent with its neighbours
        told = [r.json()["id"] for r in receiver.notifications()]
        assert told == [seen["id"], last["id"]], (told, hidden["id"], len(rows))
        assert all(b"safeguarding" not in r.body for r in receiver.snapshot())
    finally:
        receiver.close()


def test_rate_limits_are_per_client_not_per_address(world, tmp_path):
    """Two partners behind one address (a shared proxy) each get their own bucket."""
    g = GatewayProcess(world.server.database_url, tmp_path, extra_env={  # a second process on the same store
        "GATEWAY_CLIENTS_FILE": str(world.clients_file), "GATEWAY_RATE_LIMIT": "1",
        "GATEWAY_RATE_LIMIT_BURST": "3"}).start()
    try:
        time.sleep(3.1)  # start-up probes came from this address: let its bucket refill

        def get(client_id: str) -> int:
            token = world.idp_token(client_id, "system/Patient.rs", aud=g.base)
            return httpx.get(f"{g.base}/Patient", headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code

        council = [get("council") for _ in range(5)]
        assert council[:3] == [200, 200, 200] and council[3:] == [429, 429], council
        assert get("hospital") == 200  # same address, another partner: its own bucket
    finally:
        g.stop()


def test_deeply_nested_bodies_are_400(world):
    with world.client("council") as c:
        deep: dict = {"resourceType": "Patient", "extension": []}
        node = deep
        for _ in range(200):
            child = {"url": "http://x", "extension": []}
            node["extension"].append(child)
            node = child
        r = c.post("/Patient", json=deep)
        assert r.status_code == 400 and "nested" in r.text
        xml = ("<Patient xmlns='http://hl7.org/fhir'>" + "<extension url='http://x'>" * 150
               + "</extension>" * 150 + "</Patient>").encode()
        r = c.post("/Patient", content=xml, headers={"Content-Type": "application/fhir+xml"})
        assert r.status_code == 400


# --- start-up rule ------------------------------------------------------------------------------------

def test_refuses_to_start_on_all_interfaces_without_auth(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATA_DIR"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "refusing to serve without authentication on 0.0.0.0" in proc.stderr + proc.stdout
    # the same settings through the app factory (gateway demo, uvicorn directly): startup fails, non-zero
    env["GATEWAY_HOST"] = "0.0.0.0"
    proc = subprocess.run([sys.executable, "-m", "uvicorn", "gateway.app:app_from_env", "--factory", "--host", "127.0.0.1",
                           "--port", str(free_port())], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "refusing to serve" in proc.stderr + proc.stdout


def test_says_auth_is_off_on_loopback(tmp_path):
    server = GatewayProcess(f"sqlite:///{tmp_path / 'g.db'}", tmp_path).start()
    try:
        assert "auth: OFF" in server.log.read_text()
        assert httpx.get(server.base + "/Patient").status_code == 200  # no token needed on loopback
        assert httpx.get(server.base + "/.well-known/smart-configuration").status_code == 404
    finally:
        server.stop()
