"""History at three levels, and Patient/$everything as the shared history."""

from __future__ import annotations

import time
from datetime import datetime, timezone

T = "https://fhir.example.org/Id/test"


def test_instance_type_system_history(http, tag):
    pid = f"h-{tag}"
    for fam in ("A", "B", "C"):
        http.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "name": [{"family": fam}]})
    h = http.get(f"/Patient/{pid}/_history").json()
    assert h["type"] == "history" and h["total"] == 3
    assert [e["resource"]["meta"]["versionId"] for e in h["entry"]] == ["3", "2", "1"]
    assert h["entry"][-1]["request"]["method"] == "PUT"
    paged = http.get(f"/Patient/{pid}/_history", params={"_count": 2}).json()
    assert len(paged["entry"]) == 2
    nxt = [l["url"] for l in paged["link"] if l["relation"] == "next"][0]
    rest = http.get(nxt).json()
    assert [e["resource"]["meta"]["versionId"] for e in rest["entry"]] == ["1"]
    th = http.get("/Patient/_history", params={"_count": 5}).json()
    assert all(e["fullUrl"].split("/")[-2] == "Patient" for e in th["entry"])
    sh = http.get("/_history", params={"_count": 5}).json()
    assert sh["type"] == "history" and len(sh["entry"]) == 5


def test_history_since(http, tag):
    pid = f"s-{tag}"
    http.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "active": True})
    time.sleep(0.05)
    cut = datetime.now(timezone.utc).isoformat()
    time.sleep(0.05)
    http.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "active": False})
    h = http.get(f"/Patient/{pid}/_history", params={"_since": cut}).json()
    assert [e["resource"]["meta"]["versionId"] for e in h["entry"]] == ["2"]


def test_everything_gathers_compartment_and_referenced(http, tag):
    org = http.post("/Organization", json={"resourceType": "Organization", "name": f"Leeds Teaching Hospitals {tag}",
                                           "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RR8"}]}).json()
    pat = http.post("/Patient", json={"resourceType": "Patient", "identifier": [{"system": T, "value": tag}],
                                      "managingOrganization": {"reference": f"Organization/{org['id']}"}}).json()
    other = http.post("/Patient", json={"resourceType": "Patient"}).json()
    subject = {"reference": f"Patient/{pat['id']}"}
    enc = http.post("/Encounter", json={"resourceType": "Encounter", "status": "finished", "class": {"code": "IMP"},
                                        "subject": subject, "serviceProvider": {"reference": f"Organization/{org['id']}"}}).json()
    sr = http.post("/ServiceRequest", json={"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                                            "subject": subject, "encounter": {"reference": f"Encounter/{enc['id']}"}}).json()
    cp = http.post("/CarePlan", json={"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": subject}).json()
    http.post("/Encounter", json={"resourceType": "Encounter", "status": "finished", "class": {"code": "IMP"},
                                  "subject": {"reference": f"Patient/{other['id']}"}})
    r = http.get(f"/Patient/{pat['id']}/$everything")
    assert r.status_code == 200
    got = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in r.json()["entry"]}
    assert got == {("Patient", pat["id"]), ("Encounter", enc["id"]), ("ServiceRequest", sr["id"]),
                   ("CarePlan", cp["id"]), ("Organization", org["id"])}
    only = http.get(f"/Patient/{pat['id']}/$everything", params={"_type": "Encounter"}).json()
    assert {e["resource"]["resourceType"] for e in only["entry"]} == {"Encounter"}
    paged = http.get(f"/Patient/{pat['id']}/$everything", params={"_count": 2}).json()
    assert len(paged["entry"]) == 2 and paged["total"] == 5
    second = http.get([l["url"] for l in paged["link"] if l["relation"] == "next"][0]).json()
    assert not {e["resource"]["id"] for e in second["entry"]} & {e["resource"]["id"] for e in paged["entry"]}
    assert http.get("/Patient/nobody/$everything").status_code == 404
