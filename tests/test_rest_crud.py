"""CRUD, versioning, conditional interactions and headers over real HTTP, on both back ends."""

from __future__ import annotations

import asyncio

import httpx
import pytest

NHS = "https://fhir.nhs.uk/Id/nhs-number"


def patient(tag: str, family: str = "Ashworth", **extra) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "https://fhir.example.org/Id/test", "value": tag}],
        "name": [{"family": family, "given": ["Margaret"]}],
        "gender": "female",
        "birthDate": "1941-03-02",
        **extra,
    }


async def test_fhirpy_create_read_update_delete(fhir, tag):
    p = fhir.resource("Patient", **patient(tag))
    await p.save()
    assert p["id"] and p["meta"]["versionId"] == "1"
    fetched = await fhir.reference("Patient", p["id"]).to_resource()
    assert fetched["name"][0]["family"] == "Ashworth"
    fetched["name"][0]["family"] = "Ashworth-Hale"
    await fetched.save()
    assert fetched["meta"]["versionId"] == "2"
    again = await fhir.reference("Patient", p["id"]).to_resource()
    assert again["name"][0]["family"] == "Ashworth-Hale"
    await again.delete()
    with pytest.raises(Exception):
        await fhir.reference("Patient", p["id"]).to_resource()


def test_create_headers_and_prefer(http, tag):
    r = http.post("/Patient", json=patient(tag))
    assert r.status_code == 201
    body = r.json()
    assert r.headers["location"].endswith(f"/Patient/{body['id']}/_history/1")
    assert r.headers["etag"] == 'W/"1"'
    assert "last-modified" in r.headers
    assert r.headers["content-type"].startswith("application/fhir+json")
    minimal = http.post("/Patient", json=patient(tag + "m"), headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b""
    oo = http.post("/Patient", json=patient(tag + "o"), headers={"Prefer": "return=OperationOutcome"})
    assert oo.json()["resourceType"] == "OperationOutcome"


def test_server_assigns_id_on_create(http, tag):
    r = http.post("/Patient", json={**patient(tag), "id": "client-chosen"})
    assert r.status_code == 201 and r.json()["id"] != "client-chosen"


def test_update_with_client_id_creates_then_versions(http, tag):
    pid = f"pt-{tag}"
    r1 = http.put(f"/Patient/{pid}", json={**patient(tag), "id": pid})
    assert r1.status_code == 201 and r1.json()["meta"]["versionId"] == "1"
    r2 = http.put(f"/Patient/{pid}", json={**patient(tag, "Brook"), "id": pid})
    assert r2.status_code == 200 and r2.json()["meta"]["versionId"] == "2"
    # the same content again is not a new version
    r3 = http.put(f"/Patient/{pid}", json={**patient(tag, "Brook"), "id": pid})
    assert r3.json()["meta"]["versionId"] == "2"
    v1 = http.get(f"/Patient/{pid}/_history/1")
    assert v1.status_code == 200 and v1.json()["name"][0]["family"] == "Ashworth"
    assert http.get(f"/Patient/{pid}/_history/9").status_code == 404


def test_if_match(http, tag):
    pid = f"im-{tag}"
    http.put(f"/Patient/{pid}", json={**patient(tag), "id": pid})
    stale = http.put(f"/Patient/{pid}", json={**patient(tag, "X"), "id": pid}, headers={"If-Match": 'W/"7"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    ok = http.put(f"/Patient/{pid}", json={**patient(tag, "X"), "id": pid}, headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200 and ok.headers["etag"] == 'W/"2"'


def test_delete_is_a_tombstone(http, tag):
    pid = http.post("/Patient", json=patient(tag)).json()["id"]
    assert http.delete(f"/Patient/{pid}").status_code == 200
    gone = http.get(f"/Patient/{pid}")
    assert gone.status_code == 410 and gone.json()["resourceType"] == "OperationOutcome"
    hist = http.get(f"/Patient/{pid}/_history").json()
    assert [e["response"]["status"].split()[0] for e in hist["entry"]] == ["410", "201"]
    assert http.get(f"/Patient/{pid}/_history/1").status_code == 200
    # searching never returns the deleted resource
    assert http.get("/Patient", params={"identifier": f"https://fhir.example.org/Id/test|{tag}"}).json()["total"] == 0
    # an update after delete brings it back as a new version
    back = http.put(f"/Patient/{pid}", json={**patient(tag), "id": pid})
    assert back.status_code == 201 and back.json()["meta"]["versionId"] == "3"


def test_json_patch(http, tag):
    pid = http.post("/Patient", json=patient(tag)).json()["id"]
    r = http.patch(
        f"/Patient/{pid}",
        content=b'[{"op":"replace","path":"/gender","value":"male"},{"op":"add","path":"/active","value":true}]',
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["gender"] == "male" and r.json()["active"] is True and r.json()["meta"]["versionId"] == "2"
    bad = http.patch(f"/Patient/{pid}", content=b'[{"op":"replace","path":"/gender","value":7}]',
                     headers={"Content-Type": "application/json-patch+json"})
    assert bad.status_code == 422
    assert http.get(f"/Patient/{pid}").json()["gender"] == "male"
    wrong_type = http.patch(f"/Patient/{pid}", json=[], headers={"Content-Type": "application/json"})
    assert wrong_type.status_code == 415


def test_conditional_create(http, tag):
    ident = f"https://fhir.example.org/Id/test|{tag}"
    r1 = http.post("/Patient", json=patient(tag), headers={"If-None-Exist": f"identifier={ident}"})
    r2 = http.post("/Patient", json=patient(tag), headers={"If-None-Exist": f"identifier={ident}"})
    assert r1.status_code == 201 and r2.status_code == 200
    assert r1.json()["id"] == r2.json()["id"]


def test_conditional_update(http, tag):
    ident = f"https://fhir.example.org/Id/test|{tag}"
    r1 = http.put("/Patient", params={"identifier": ident}, json=patient(tag))
    assert r1.status_code == 201
    r2 = http.put("/Patient", params={"identifier": ident}, json=patient(tag, "Clough"))
    assert r2.status_code == 200 and r2.json()["id"] == r1.json()["id"]
    assert r2.json()["name"][0]["family"] == "Clough"
    http.post("/Patient", json=patient(tag))  # now two match
    r3 = http.put("/Patient", params={"identifier": ident}, json=patient(tag))
    assert r3.status_code == 412


async def test_concurrent_conditional_create_makes_one(base, tag):
    """Two clients sending the same conditional create at once: exactly one resource."""
    ident = f"https://fhir.example.org/Id/race|{tag}"
    body = patient(tag)
    body["identifier"] = [{"system": "https://fhir.example.org/Id/race", "value": tag}]
    async with httpx.AsyncClient(base_url=base, timeout=30) as a, httpx.AsyncClient(base_url=base, timeout=30) as b:
        results = await asyncio.gather(*[
            c.post("/Patient", json=body, headers={"If-None-Exist": f"identifier={ident}"})
            for _ in range(8) for c in (a, b)
        ])
        assert sorted({r.status_code for r in results}) == [200, 201]
        assert [r.status_code for r in results].count(201) == 1
        assert len({r.json()["id"] for r in results}) == 1
        found = await a.get("/Patient", params={"identifier": ident})
        assert found.json()["total"] == 1


async def test_concurrent_conditional_update_makes_one(base, tag):
    ident = f"https://fhir.example.org/Id/race|u{tag}"
    body = patient(tag)
    body["identifier"] = [{"system": "https://fhir.example.org/Id/race", "value": "u" + tag}]
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        results = await asyncio.gather(*[c.put("/Patient", params={"identifier": ident}, json=body) for _ in range(10)])
        assert all(r.status_code in (200, 201) for r in results)
        assert (await c.get("/Patient", params={"identifier": ident})).json()["total"] == 1


def test_conditional_delete(http, tag):
    ident = f"https://fhir.example.org/Id/test|{tag}"
    pid = http.post("/Patient", json=patient(tag)).json()["id"]
    assert http.delete("/Patient", params={"identifier": ident}).status_code == 200
    assert http.get(f"/Patient/{pid}").status_code == 410


def test_if_none_match_read(http, tag):
    r = http.post("/Patient", json=patient(tag))
    pid = r.json()["id"]
    assert http.get(f"/Patient/{pid}", headers={"If-None-Match": 'W/"1"'}).status_code == 304
