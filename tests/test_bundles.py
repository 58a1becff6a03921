"""transaction and batch Bundles: all-or-nothing, urn:uuid rewriting, conditional entries."""

from __future__ import annotations

T = "https://fhir.example.org/Id/test"


def entry(i: int, resource: dict, method: str = "POST", url: str | None = None, **req) -> dict:
    return {"fullUrl": f"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e30000{i:04d}", "resource": resource,
            "request": {"method": method, "url": url or resource["resourceType"], **req}}


def uuid_ref(i: int) -> dict:
    return {"reference": f"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e30000{i:04d}"}


def test_transaction_rewrites_references(http, tag):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        entry(1, {"resourceType": "Encounter", "identifier": [{"system": T, "value": tag}], "status": "finished",
                  "class": {"code": "IMP"}, "subject": uuid_ref(0)}),
        entry(0, {"resourceType": "Patient", "identifier": [{"system": T, "value": tag}]}),
    ]}
    r = http.post("", json=bundle)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    enc_id = out["entry"][0]["response"]["location"].split("/")[1]
    pat_id = out["entry"][1]["response"]["location"].split("/")[1]
    enc = http.get(f"/Encounter/{enc_id}").json()
    assert enc["subject"]["reference"] == f"Patient/{pat_id}"


def test_transaction_rolls_back_on_failing_entry(http, tag):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        entry(0, {"resourceType": "Patient", "identifier": [{"system": T, "value": tag}]}),
        entry(1, {"resourceType": "Patient", "id": "x", "identifier": [{"system": T, "value": tag}]},
              method="PUT", url="Patient/x", ifMatch='W/"99"'),
    ]}
    r = http.post("", json=bundle)
    assert r.status_code == 412
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "entry[1]" in r.text
    assert http.get("/Patient", params={"identifier": f"{T}|{tag}"}).json()["total"] == 0


def test_transaction_rejects_invalid_resource_before_writing(http, tag):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        entry(0, {"resourceType": "Patient", "identifier": [{"system": T, "value": tag}]}),
        entry(1, {"resourceType": "Patient", "gender": 12}),
    ]}
    r = http.post("", json=bundle)
    assert r.status_code == 400
    assert http.get("/Patient", params={"identifier": f"{T}|{tag}"}).json()["total"] == 0


def test_transaction_conditional_entries(http, tag):
    ident = f"{T}|{tag}"
    pat = {"resourceType": "Patient", "identifier": [{"system": T, "value": tag}], "name": [{"family": "One"}]}
    b = {"resourceType": "Bundle", "type": "transaction", "entry": [
        entry(0, pat, ifNoneExist=f"identifier={ident}"),
        entry(1, {"resourceType": "Encounter", "status": "planned", "class": {"code": "HH"}, "subject": uuid_ref(0),
                  "identifier": [{"system": T, "value": tag}]},
              method="PUT", url=f"Encounter?identifier={ident}"),
    ]}
    first = http.post("", json=b).json()
    second = http.post("", json=b).json()
    assert [e["response"]["status"] for e in first["entry"]] == ["201 Created", "201 Created"]
    assert second["entry"][0]["response"]["status"] == "200 OK"
    assert http.get("/Patient", params={"identifier": ident}).json()["total"] == 1
    assert http.get("/Encounter", params={"identifier": ident}).json()["total"] == 1
    enc = http.get("/Encounter", params={"identifier": ident}).json()["entry"][0]["resource"]
    pid = http.get("/Patient", params={"identifier": ident}).json()["entry"][0]["resource"]["id"]
    assert enc["subject"]["reference"] == f"Patient/{pid}"


def test_conditional_reference(http, tag):
    http.post("/Patient", json={"resourceType": "Patient", "identifier": [{"system": T, "value": tag}]})
    b = {"resourceType": "Bundle", "type": "transaction", "entry": [
        entry(0, {"resourceType": "Encounter", "status": "planned", "class": {"code": "HH"},
                  "subject": {"reference": f"Patient?identifier={T}|{tag}"}}),
    ]}
    r = http.post("", json=b)
    assert r.status_code == 200, r.text
    loc = r.json()["entry"][0]["response"]["location"]
    enc = http.get("/" + loc.split("/_history")[0]).json()
    assert enc["subject"]["reference"].startswith("Patient/")


def test_batch_entries_independent(http, tag):
    b = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "identifier": [{"system": T, "value": tag}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
        {"request": {"method": "GET", "url": f"Patient?identifier={T}|{tag}"}},
    ]}
    r = http.post("", json=b)
    assert r.status_code == 200
    out = r.json()
    assert out["type"] == "batch-response"
    assert out["entry"][0]["response"]["status"].startswith("201")
    assert out["entry"][1]["response"]["status"].startswith("404")
    assert out["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert out["entry"][2]["resource"]["type"] == "searchset"


def test_post_base_needs_transaction_or_batch(http):
    assert http.post("", json={"resourceType": "Bundle", "type": "collection"}).status_code == 400
    assert http.post("", json={"resourceType": "Patient"}).status_code == 400
