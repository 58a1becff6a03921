"""AuditEvents: every read, search, write and refused access is recorded, searchable, loop-free."""

from __future__ import annotations

import asyncio
import base64
import time

import httpx
import pytest

from conftest import ROOT, drop_pg_schema, pg_schema_url
from test_security import World, _create


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def audited(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"audit-{request.param}")
    url = f"sqlite:///{tmp / 'gateway.db'}" if request.param == "sqlite" else pg_schema_url("gwaudit")
    w = World(tmp, url)
    w.server.start()
    yield w
    w.server.stop()
    w.jwks_server.close()
    if request.param == "postgres":
        asyncio.run(drop_pg_schema(url))


def _events(w: World, params: dict, want: int = 1, timeout: float = 15) -> list[dict]:
    """AuditEvents matching `params`, waiting for the background writer (at least `want`)."""
    deadline = time.time() + timeout
    with w.client("ops", "system/*.rs") as ops:
        while True:
            b = ops.get("/AuditEvent", params={**params, "_count": "200"}).json()
            found = [e["resource"] for e in b.get("entry", [])]
            if len(found) >= want or time.time() > deadline:
                return found
            time.sleep(0.2)


def test_reads_searches_writes_and_refusals_are_recorded(audited):
    w = audited
    with w.client("hospital") as h:
        p = _create(h, {"resourceType": "Patient", "name": [{"family": "Audited"}]})
        assert h.get(f"/Patient/{p['id']}").status_code == 200
        assert h.get("/Patient", params={"family": "Audited"}).status_code == 200
    with w.client("community") as c:
        assert c.get(f"/Condition/{p['id']}").status_code == 403
    assert httpx.get(f"{w.base}/Patient/{p['id']}").status_code == 401

    reads = _events(w, {"altid": "hospital", "entity": f"Patient/{p['id']}", "subtype": "read"})
    assert reads, "the read was not audited"
    ev = reads[0]
    assert ev["action"] == "R" and ev["outcome"] == "0"
    app, org = ev["agent"]
    assert app["who"]["identifier"]["value"] == "hospital" and app["network"]["address"] == "127.0.0.1"
    assert org["who"]["identifier"] == {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RR8"}
    assert ev["recorded"]

    created = _events(w, {"altid": "hospital", "entity": f"Patient/{p['id']}", "action": "C"})
    assert created and created[0]["subtype"][0]["code"] == "create"

    searches = _events(w, {"altid": "hospital", "subtype": "search-type", "entity-type": "Patient"})
    queries = [base64.b64decode(e["entity"][0]["query"]).decode() for e in searches]
    assert "family=Audited" in queries

    refused = _events(w, {"altid": "community", "outcome": "4"})
    assert any("403" in e["outcomeDesc"] and "Condition" in e["outcomeDesc"] for e in refused)

    anonymous = _events(w, {"address": "127.0.0.1", "outcome": "4"}, want=1)
    assert any(e["outcomeDesc"].startswith("401") and "unauthenticated" in e["agent"][0]["who"]["display"]
               for e in anonymous)


def test_bundle_entries_token_issuance_and_channels_are_recorded(audited):
    w = audited
    with w.client("hospital") as h:
        tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:5a1c6c0e-0c55-4a34-9f8e-2f6e0c1b0a01", "request": {"method": "POST", "url": "Patient"},
             "resource": {"resourceType": "Patient", "name": [{"family": "InABundle"}]}},
            {"request": {"method": "POST", "url": "Encounter"},
             "resource": {"resourceType": "Encounter", "status": "planned", "class": {"code": "HH"},
                          "subject": {"reference": "urn:uuid:5a1c6c0e-0c55-4a34-9f8e-2f6e0c1b0a01"}}}]}
        out = h.post("", json=tx).json()
        pid = out["entry"][0]["response"]["location"].split("/")[1]
    events = _events(w, {"altid": "hospital", "subtype": "transaction", "entity": f"Patient/{pid}"})
    assert len(events) == 1
    whats = {e.get("what", {}).get("reference", "").split("/")[0] for e in events[0]["entity"]}
    assert whats == {"Patient", "Encounter"}

    tokens = _events(w, {"altid": "hospital", "type": "http://dicom.nema.org/resources/ontology/DCM|110114"})
    assert tokens and "access token issued" in tokens[0]["outcomeDesc"]

    adt = (ROOT / "tests" / "fixtures" / "hl7v2" / "adt_a01_v24.hl7").read_bytes()
    r = httpx.post(w.origin + "/hl7v2", content=adt, headers={"Content-Type": "x-application/hl7-v2+er7",
                                                               "Authorization": f"Bearer {w.token('hospital')}"})
    assert r.status_code == 200
    channel = _events(w, {"altid": "hospital", "action": "C", "subtype": "hl7v2"})
    assert channel and channel[0]["outcome"] == "0"


def test_audit_events_are_for_operators_only(audited):
    with audited.client("hospital") as h:  # system/*.cruds does not reach AuditEvent
        assert h.get("/AuditEvent").status_code == 403
        everything = h.post("/Patient", json={"resourceType": "Patient"}).json()
        ev = h.get(f"/Patient/{everything['id']}/$everything").json()
        assert all(e["resource"]["resourceType"] != "AuditEvent" for e in ev.get("entry", []))


def test_writing_audit_events_does_not_audit_itself(audited):
    """Each count search adds exactly one AuditEvent (its own); writing them adds none."""
    with audited.client("ops", "system/*.rs") as ops:
        def count() -> int:
            return ops.get("/AuditEvent", params={"_summary": "count"}).json()["total"]

        previous = count()
        time.sleep(1.5)  # let the writer settle everything before
        base = count()
        steps = []
        for _ in range(3):
            time.sleep(1.0)
            now = count()
            steps.append(now - base)
            base = now
        assert steps == [1, 1, 1], (previous, steps)
