"""Search over HTTP on both back ends: each parameter type, modifier, prefix and result control.

Each test writes its own small world under a unique tag and searches within it, so tests sharing
a server stay independent.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

NHS = "https://fhir.nhs.uk/Id/nhs-number"
T = "https://fhir.example.org/Id/test"


def tx(http, resources: list[dict]) -> list[str]:
    """Create resources in one transaction; urn:uuid:N references resolve to the Nth."""
    entries = [
        {"fullUrl": f"urn:uuid:00000000-0000-0000-0000-{i:012d}", "resource": r,
         "request": {"method": "POST", "url": r["resourceType"]}}
        for i, r in enumerate(resources)
    ]
    r = http.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert r.status_code == 200, r.text
    return [e["response"]["location"].split("/")[1] for e in r.json()["entry"]]


def ref(i: int) -> dict:
    return {"reference": f"urn:uuid:00000000-0000-0000-0000-{i:012d}"}


def ids(bundle: dict, mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode", "match") == mode]


@pytest.fixture
def world(http, tag):
    """Three patients, their encounters, a referral and a plan, all tagged."""
    people = [
        {"resourceType": "Patient", "identifier": [{"system": T, "value": tag}, {"system": NHS, "value": "9434765919"}],
         "name": [{"family": "Ashworth", "given": ["Margaret", "Ann"]}], "gender": "female", "birthDate": "1941-03-02",
         "address": [{"postalCode": "LS6 2QB", "city": "Leeds"}], "active": True},
        {"resourceType": "Patient", "identifier": [{"system": T, "value": tag}], "name": [{"family": "Ásbjørnsen", "given": ["Émile"]}],
         "gender": "male", "birthDate": "1950-07-19", "address": [{"postalCode": "LS11 5QQ"}]},
        {"resourceType": "Patient", "identifier": [{"system": T, "value": tag}], "name": [{"family": "Ashby", "given": ["Tom"]}],
         "gender": "male", "birthDate": "1938"},
        {"resourceType": "Encounter", "identifier": [{"system": T, "value": tag}], "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
         "subject": ref(0), "period": {"start": "2026-03-28T23:30:00+00:00", "end": "2026-04-02T11:00:00+01:00"}},
        {"resourceType": "Encounter", "identifier": [{"system": T, "value": tag}], "status": "in-progress",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"},
         "subject": ref(1), "period": {"start": "2026-05-10T09:00:00+01:00"}},
        {"resourceType": "ServiceRequest", "identifier": [{"system": T, "value": tag}], "status": "active", "intent": "order",
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "1255661000000109", "display": "Referral to reablement service"}]},
         "subject": ref(0), "encounter": ref(3), "occurrenceDateTime": "2026-04-02"},
        {"resourceType": "CarePlan", "identifier": [{"system": T, "value": tag}], "status": "active", "intent": "plan",
         "subject": ref(0), "basedOn": [ref(5)], "period": {"start": "2026-04-03", "end": "2026-04-30"},
         "note": [{"text": "Prefers morning visits"}]},
    ]
    return dict(zip(["p0", "p1", "p2", "e0", "e1", "sr", "cp"], tx(http, people)))


def search(http, rtype: str, tag: str, **params):
    params = {"identifier": f"{T}|{tag}", **params}
    r = http.get(f"/{rtype}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_string_default_prefix_case_and_accent_insensitive(http, tag, world):
    assert sorted(ids(search(http, "Patient", tag, family="ash"))) == sorted([world["p0"], world["p2"]])
    assert ids(search(http, "Patient", tag, family="asbj")) == [world["p1"]]  # accent-insensitive
    assert ids(search(http, "Patient", tag, given="emile")) == [world["p1"]]
    assert ids(search(http, "Patient", tag, name="ann")) == [world["p0"]]


def test_string_exact_and_contains(http, tag, world):
    assert ids(search(http, "Patient", tag, **{"family:exact": "Ashworth"})) == [world["p0"]]
    assert ids(search(http, "Patient", tag, **{"family:exact": "ashworth"})) == []
    assert sorted(ids(search(http, "Patient", tag, **{"family:contains": "WOR"}))) == [world["p0"]]


def test_token_forms(http, tag, world):
    assert ids(search(http, "Patient", tag, gender="female")) == [world["p0"]]
    both = http.get("/Patient", params=[("identifier", f"{NHS}|9434765919"), ("identifier", f"{T}|{tag}")]).json()
    assert ids(both) == [world["p0"]]
    sys_only = http.get("/Patient", params=[("identifier", f"{T}|{tag}"), ("identifier", f"{NHS}|")]).json()
    assert ids(sys_only) == [world["p0"]]
    assert sorted(ids(search(http, "Patient", tag, **{"gender:not": "female"}))) == sorted([world["p1"], world["p2"]])
    sr = search(http, "ServiceRequest", tag, **{"code:text": "referral to reab"})
    assert ids(sr) == [world["sr"]]
    assert ids(search(http, "ServiceRequest", tag, code="http://snomed.info/sct|1255661000000109")) == [world["sr"]]
    assert ids(search(http, "ServiceRequest", tag, code="|1255661000000109")) == []


def test_token_list_keeps_each_system_with_its_code(http, tag, world):
    """`identifier=a|1,b|2` matches a|1 or b|2, never a|2: the pairs are not mixed."""
    def found(value: str) -> list[str]:
        r = http.get("/Patient", params={"identifier": value, "_count": "1000"})
        assert r.status_code == 200, r.text
        return ids(r.json())

    # (other tests' worlds share the NHS number, so only this world's patients are looked at)
    mine = {world["p0"], world["p1"], world["p2"]}
    assert mine & set(found(f"{NHS}|9434765919,{T}|no-such-{tag}")) == {world["p0"]}
    assert not mine & set(found(f"{T}|9434765919,{NHS}|{tag}"))  # each code under the other system
    assert mine <= set(found(f"{T}|{tag},{NHS}|9434765919"))


def test_or_and_and(http, tag, world):
    either = search(http, "Patient", tag, family="Ashworth,Ashby")
    assert sorted(ids(either)) == sorted([world["p0"], world["p2"]])
    both = http.get("/Patient", params=[("identifier", f"{T}|{tag}"), ("given", "margaret"), ("given", "ann")]).json()
    assert ids(both) == [world["p0"]]


def test_reference_forms_and_chaining(http, tag, world):
    p0 = world["p0"]
    assert ids(search(http, "Encounter", tag, subject=f"Patient/{p0}")) == [world["e0"]]
    assert ids(search(http, "Encounter", tag, subject=p0)) == [world["e0"]]
    assert ids(search(http, "Encounter", tag, patient=p0)) == [world["e0"]]
    assert ids(search(http, "Encounter", tag, **{"subject:Patient": p0})) == [world["e0"]]
    chained = search(http, "Encounter", tag, **{"subject:Patient.identifier": f"{NHS}|9434765919"})
    assert ids(chained) == [world["e0"]]
    assert ids(search(http, "Encounter", tag, **{"subject.family": "asbj"})) == [world["e1"]]
    assert ids(search(http, "CarePlan", tag, **{"based-on": f"ServiceRequest/{world['sr']}"})) == [world["cp"]]


def test_chain_over_several_target_types(http, tag):
    """`subject.name` on Observation: the subject may be a Patient or a Location (both have
    `name`); each matching kind of target counts, a non-matching one does not."""
    obs = {"resourceType": "Observation", "identifier": [{"system": T, "value": tag}], "status": "final",
           "code": {"text": "Mobility score"}}
    made = tx(http, [
        {"resourceType": "Patient", "name": [{"family": "Thornbury"}]},
        {"resourceType": "Location", "name": "Thornbury Recovery Hub"},
        {"resourceType": "Patient", "name": [{"family": "Whitley"}]},
        {**obs, "subject": ref(0)}, {**obs, "subject": ref(1)}, {**obs, "subject": ref(2)},
    ])
    found = search(http, "Observation", tag, **{"subject.name": "thornbury"})
    assert sorted(ids(found)) == sorted(made[3:5]) and found["total"] == 2
    assert ids(search(http, "Observation", tag, **{"subject:Location.name": "thornbury"})) == [made[4]]
    assert ids(search(http, "Observation", tag, **{"subject:Patient.name": "whitley"})) == [made[5]]


def test_reverse_chaining_has(http, tag, world):
    r = search(http, "Patient", tag, **{"_has:Encounter:subject:status": "in-progress"})
    assert ids(r) == [world["p1"]]
    r = search(http, "Patient", tag, **{"_has:ServiceRequest:subject:code": "1255661000000109"})
    assert ids(r) == [world["p0"]]


def test_dates_prefixes_and_periods(http, tag, world):
    assert ids(search(http, "Patient", tag, birthdate="1941-03-02")) == [world["p0"]]
    assert ids(search(http, "Patient", tag, birthdate="1941")) == [world["p0"]]
    assert sorted(ids(search(http, "Patient", tag, birthdate="lt1945"))) == sorted([world["p0"], world["p2"]])
    assert ids(search(http, "Patient", tag, birthdate="ge1950-07-19")) == [world["p1"]]
    assert sorted(ids(search(http, "Patient", tag, birthdate="ne1941-03-02"))) == sorted([world["p1"], world["p2"]])
    # period 2026-03-28T23:30Z .. 2026-04-02T10:00Z; 23:30 UTC on 28 March is 28 March in London (GMT)
    assert ids(search(http, "Encounter", tag, date="2026-03-28")) == []  # eq needs the whole period inside the day
    assert ids(search(http, "Encounter", tag, date="2026-03")) == []
    assert sorted(ids(search(http, "Encounter", tag, date="ge2026-04-01"))) == sorted([world["e0"], world["e1"]])
    assert ids(search(http, "Encounter", tag, date="sa2026-04-03")) == [world["e1"]]
    assert ids(search(http, "Encounter", tag, date="eb2026-04-03")) == [world["e0"]]
    assert ids(search(http, "Encounter", tag, date="lt2026-03-29T00:00:00+00:00")) == [world["e0"]]
    assert ids(search(http, "Encounter", tag, date="gt2026-04-02T10:30:00Z")) == [world["e1"]]  # open end
    # time zone: 11:00+01:00 is 10:00Z
    assert ids(search(http, "Encounter", tag, date="le2026-04-02T09:59:59Z", status="finished")) == [world["e0"]]


def test_missing(http, tag, world):
    assert ids(search(http, "Patient", tag, **{"address:missing": "true"})) == [world["p2"]]
    assert sorted(ids(search(http, "Patient", tag, **{"address-postalcode:missing": "false"}))) == sorted([world["p0"], world["p1"]])


def test_postcode(http, tag, world):
    assert ids(search(http, "Patient", tag, **{"address-postalcode": "LS6 2QB"})) == [world["p0"]]
    assert ids(search(http, "Patient", tag, **{"address-postalcode": "ls6"})) == [world["p0"]]


def test_id_and_last_updated(http, tag, world):
    r = http.get("/Patient", params={"_id": f"{world['p0']},{world['p1']}"}).json()
    assert sorted(ids(r)) == sorted([world["p0"], world["p1"]])
    assert ids(search(http, "Patient", tag, _lastUpdated="lt2000-01-01")) == []
    assert len(ids(search(http, "Patient", tag, _lastUpdated="gt2020-01-01"))) == 3


def test_sort_several_keys_and_descending(http, tag, world):
    r = search(http, "Patient", tag, _sort="gender,-birthdate")
    assert ids(r) == [world["p0"], world["p1"], world["p2"]]
    r = search(http, "Patient", tag, _sort="-family")
    assert ids(r) == [world["p0"], world["p2"], world["p1"]]  # Ashworth > Ashby > Asbjornsen after folding


def test_sort_on_several_values_uses_lowest_then_highest(http, tag):
    """Ascending sorts a resource by its lowest value, descending by its highest."""
    a, b = tx(http, [
        {"resourceType": "Patient", "identifier": [{"system": T, "value": tag}], "name": [{"given": ["Zoe", "Amy"]}]},
        {"resourceType": "Patient", "identifier": [{"system": T, "value": tag}], "name": [{"given": ["Mia"]}]},
    ])
    assert ids(search(http, "Patient", tag, _sort="given")) == [a, b]  # amy < mia
    assert ids(search(http, "Patient", tag, _sort="-given")) == [a, b]  # zoe > mia
    c, d = tx(http, [
        {"resourceType": "Encounter", "identifier": [{"system": T, "value": tag}], "status": "finished",
         "class": {"code": "IMP"}, "period": {"start": "2026-01-01", "end": "2026-03-01"}},
        {"resourceType": "Encounter", "identifier": [{"system": T, "value": tag}], "status": "finished",
         "class": {"code": "IMP"}, "period": {"start": "2026-02-01", "end": "2026-02-02"}},
    ])
    assert ids(search(http, "Encounter", tag, _sort="date")) == [c, d]  # starts first
    assert ids(search(http, "Encounter", tag, _sort="-date")) == [c, d]  # ends last


def test_paging_is_stable_under_writes(http, tag):
    for i in range(7):
        http.post("/Patient", json={"resourceType": "Patient", "identifier": [{"system": T, "value": tag}],
                                    "name": [{"family": f"Page{i}"}]})
    seen: list[str] = []
    page = search(http, "Patient", tag, _count="3", _sort="family")
    assert page["total"] == 7
    while True:
        seen += ids(page)
        # a write between pages (sorting first) must neither shift nor repeat rows
        http.post("/Patient", json={"resourceType": "Patient", "identifier": [{"system": T, "value": tag}],
                                    "name": [{"family": "Aaa"}]})
        nxt = [l["url"] for l in page["link"] if l["relation"] == "next"]
        if not nxt:
            break
        page = http.get(nxt[0]).json()
    assert len(seen) == len(set(seen)) == 7


def test_include_revinclude_iterate(http, tag, world):
    r = search(http, "Encounter", tag, _id=world["e0"], _include="Encounter:subject")
    assert ids(r) == [world["e0"]] and ids(r, "include") == [world["p0"]]
    r = search(http, "Patient", tag, _id=world["p0"], _revinclude="Encounter:subject")
    assert ids(r, "include") == [world["e0"]]
    r = http.get("/CarePlan", params=[("_id", world["cp"]), ("_include", "CarePlan:based-on"),
                                      ("_include:iterate", "ServiceRequest:subject")]).json()
    assert sorted(ids(r, "include")) == sorted([world["sr"], world["p0"]])
    assert r["total"] == 1  # includes never count


def test_summary_count_total_elements(http, tag, world):
    r = search(http, "Patient", tag, _summary="count")
    assert r["total"] == 3 and "entry" not in r
    r = search(http, "Patient", tag, _total="none")
    assert "total" not in r
    r = search(http, "Patient", tag, _elements="gender")
    res = r["entry"][0]["resource"]
    assert set(res) <= {"resourceType", "id", "meta", "gender"}
    assert any(t["code"] == "SUBSETTED" for t in res["meta"]["tag"])
    r = search(http, "Patient", tag, _summary="true", _id=world["p0"])
    res = r["entry"][0]["resource"]
    # summary elements stay (name, gender, birthDate, identifier); non-summary ones go
    assert res["name"] and res["gender"] == "female" and res["identifier"]
    r = search(http, "CarePlan", tag, _summary="true")
    assert "basedOn" in r["entry"][0]["resource"] and "subject" in r["entry"][0]["resource"]
    assert "note" not in r["entry"][0]["resource"]


def test_count_default_and_max(http, tag):
    for i in range(23):
        http.post("/Patient", json={"resourceType": "Patient", "identifier": [{"system": T, "value": tag}]})
    r = search(http, "Patient", tag)
    assert len(r["entry"]) == 20 and r["total"] == 23
    assert len(search(http, "Patient", tag, _count="5000")["entry"]) == 23


def test_post_search(http, tag, world):
    r = http.post("/Patient/_search", data={"identifier": f"{T}|{tag}", "gender": "female"})
    assert r.status_code == 200 and ids(r.json()) == [world["p0"]]


def test_unknown_parameter_strict_and_lenient(http, tag, world):
    r = http.get("/Patient", params={"identifier": f"{T}|{tag}", "shoe-size": "9"})
    assert r.status_code == 400 and "shoe-size" in r.text
    r = http.get("/Patient", params={"identifier": f"{T}|{tag}", "shoe-size": "9"}, headers={"Prefer": "handling=lenient"})
    assert r.status_code == 200 and len(ids(r.json())) == 3
    self_link = [l["url"] for l in r.json()["link"] if l["relation"] == "self"][0]
    assert "shoe-size" not in parse_qs(urlsplit(self_link).query)


def test_bad_values_are_400(http):
    assert http.get("/Patient", params={"birthdate": "xx1941"}).status_code == 400
    assert http.get("/Patient", params={"_count": "lots"}).status_code == 400
    assert http.get("/Patient", params={"_sort": "shoe-size"}).status_code == 400
