"""Every error is an OperationOutcome with the right status; JSON and XML both ways; metadata."""

from __future__ import annotations

from lxml import etree

FHIR_NS = "{http://hl7.org/fhir}"


def is_outcome(r) -> bool:
    return r.json()["resourceType"] == "OperationOutcome"


def test_status_codes(http):
    r = http.get("/Patient/does-not-exist")
    assert r.status_code == 404 and is_outcome(r)
    r = http.get("/Spaceship/1")
    assert r.status_code == 404 and is_outcome(r) and "Spaceship" in r.text
    r = http.delete("/metadata")
    assert r.status_code == 405 and is_outcome(r)
    r = http.post("/Patient", content=b"{not json", headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 400 and is_outcome(r)
    r = http.post("/Patient", content=b"hello", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and is_outcome(r)
    r = http.post("/Patient", json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}})
    assert r.status_code == 400 and is_outcome(r)
    r = http.post("/Patient", json={"resourceType": "Patient", "birthDate": "02/03/1941"})
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert issue["expression"] == ["Patient.birthDate"]
    r = http.post("/Patient", json={"resourceType": "Patient", "shoeSize": 9})
    assert r.status_code == 400 and "shoeSize" in r.text
    r = http.put("/Patient/abc", json={"resourceType": "Patient", "id": "xyz"})
    assert r.status_code == 400
    r = http.post("/Patient", content=b"x" * (11 * 1024 * 1024), headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 413 and is_outcome(r)
    r = http.request("OPTIONS", "/Patient")
    assert r.status_code == 405 and is_outcome(r) and "GET" in r.headers["allow"]


def test_rejected_writes_store_nothing(http, tag):
    before = http.get("/Patient/_history", params={"_count": 1}).json()["total"]
    http.post("/Patient", json={"resourceType": "Patient", "gender": ["female"]})
    http.post("/Unknown", json={"resourceType": "Unknown"})
    after = http.get("/Patient/_history", params={"_count": 1}).json()["total"]
    assert after == before


def test_xml_round_trip(http, tag):
    xml = f"""<Patient xmlns="http://hl7.org/fhir">
  <identifier><system value="https://fhir.example.org/Id/test"/><value value="{tag}"/></identifier>
  <active value="true"/>
  <name><family value="O'Hara"/><given value="Siobhán"/><given value="Mary"/></name>
  <gender value="female"/>
  <birthDate value="1939-12-24"/>
</Patient>"""
    r = http.post("/Patient", content=xml.encode(), headers={"Content-Type": "application/fhir+xml",
                                                              "Accept": "application/fhir+xml"})
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/fhir+xml")
    doc = etree.fromstring(r.content)
    pid = doc.find(f"{FHIR_NS}id").get("value")
    as_json = http.get(f"/Patient/{pid}").json()
    assert as_json["active"] is True
    assert as_json["name"][0]["given"] == ["Siobhán", "Mary"]
    as_xml = http.get(f"/Patient/{pid}", params={"_format": "xml"})
    assert etree.fromstring(as_xml.content).find(f"{FHIR_NS}birthDate").get("value") == "1939-12-24"
    bundle = http.get("/Patient", params={"_id": pid, "_format": "application/fhir+xml"})
    assert etree.fromstring(bundle.content).tag == f"{FHIR_NS}Bundle"


def test_hostile_xml_is_refused(http):
    bomb = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<Patient xmlns="http://hl7.org/fhir"><name><family value="&lol2;"/></name></Patient>"""
    r = http.post("/Patient", content=bomb, headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 400 and is_outcome(r)
    xxe = b"""<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<Patient xmlns="http://hl7.org/fhir"><name><family value="&x;"/></name></Patient>"""
    r = http.post("/Patient", content=xxe, headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 400 and "root:" not in r.text


def test_capability_statement_reflects_server(http):
    cs = http.get("/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    rest = cs["rest"][0]
    by_type = {r["type"]: r for r in rest["resource"]}
    for t in ("Patient", "Encounter", "EpisodeOfCare", "ServiceRequest", "CarePlan", "Goal", "Condition", "Observation",
              "Organization", "Practitioner", "PractitionerRole", "Location", "Provenance", "AuditEvent",
              "Subscription", "ConceptMap", "StructureDefinition"):
        assert t in by_type and by_type[t]["searchParam"], t
    codes = {i["code"] for i in by_type["Patient"]["interaction"]}
    assert {"read", "vread", "create", "update", "patch", "delete", "search-type", "history-instance"} <= codes
    names = {p["name"] for p in by_type["Patient"]["searchParam"]}
    assert {"identifier", "family", "given", "birthdate", "gender", "address-postalcode", "_id", "_lastUpdated"} <= names
    assert {o["name"] for o in by_type["Patient"].get("operation", [])} >= {"everything"}
    assert {i["code"] for i in rest["interaction"]} >= {"transaction", "batch", "history-system"}
    # every advertised search parameter is accepted by the search endpoint
    for p in by_type["Encounter"]["searchParam"]:
        value = {"date": "2026", "number": "1", "quantity": "1"}.get(p["type"], "x")
        if p["type"] == "reference":
            value = "Patient/x"
        r = http.get("/Encounter", params={p["name"]: value, "_summary": "count"})
        assert r.status_code == 200, (p, r.text)


def test_concept_maps_served_and_translate(http):
    url = "https://fhir.activerecovery.example/ConceptMap/hl7v2-administrative-sex"
    maps = http.get("/ConceptMap", params={"url": url}).json()
    assert maps["total"] == 1  # loaded once however often the server starts
    cm = maps["entry"][0]["resource"]
    r = http.get(f"/ConceptMap/{cm['id']}/$translate", params={"code": "F", "system": "http://terminology.hl7.org/CodeSystem/v2-0001"}).json()
    match = [p for p in r["parameter"] if p["name"] == "match"][0]
    concept = [p for p in match["part"] if p["name"] == "concept"][0]["valueCoding"]
    assert concept["code"] == "female" and concept["system"] == "http://hl7.org/fhir/administrative-gender"
    # NHS Data Dictionary code 2 is female too
    r = http.post("/ConceptMap/$translate", json={"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": url}, {"name": "code", "valueCode": "2"},
        {"name": "system", "valueUri": "https://fhir.hl7.org.uk/CodeSystem/NHSDataModelAndDictionary-PersonStatedGenderCode"}]}).json()
    assert r["parameter"][0]["valueBoolean"] is True
    none = http.get("/ConceptMap/$translate", params={"url": url, "code": "Q", "system": "http://terminology.hl7.org/CodeSystem/v2-0001"}).json()
    assert none["parameter"][0]["valueBoolean"] is False
    assert http.get("/ConceptMap/$translate", params={"url": "https://nowhere.example/x", "code": "F"}).status_code == 404


def test_browser_accept_gets_readable_json_not_an_xml_download(http, tag):
    pid = http.post("/Patient", json={"resourceType": "Patient", "active": True}).json()["id"]
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
    r = http.get(f"/Patient/{pid}", headers={"Accept": browser})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json()["id"] == pid
    assert http.get(f"/Patient/{pid}", headers={"Accept": "application/fhir+xml"}).headers["content-type"].startswith("application/fhir+xml")
