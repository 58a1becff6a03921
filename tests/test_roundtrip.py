"""Property: any valid resource POSTed comes back equal, apart from id and meta (JSON and XML)."""

from __future__ import annotations

import string

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

text = st.text(alphabet=string.ascii_letters + string.digits + " '-éøñ.,", min_size=1, max_size=20).map(str.strip).filter(bool)
code = st.sampled_from(["a", "home", "work", "temp", "old", "usual", "official"])
date = st.dates().map(lambda d: d.isoformat()).filter(lambda s: s[0] in "12")
instant = st.datetimes(timezones=st.just(__import__("datetime").timezone.utc)).map(
    lambda d: d.replace(microsecond=0).isoformat()).filter(lambda s: s[0] in "12")
uri = st.from_regex(r"https://fhir\.example\.org/[a-z]{1,8}(/[a-z0-9]{1,6})?", fullmatch=True)

identifier = st.fixed_dictionaries({"system": uri, "value": text}, optional={"use": st.sampled_from(["usual", "official", "secondary"])})
coding = st.fixed_dictionaries({"system": uri, "code": st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True)}, optional={"display": text})
name = st.fixed_dictionaries({}, optional={"family": text, "given": st.lists(text, min_size=1, max_size=3),
                                           "prefix": st.lists(text, min_size=1, max_size=2), "use": st.sampled_from(["official", "usual", "nickname"])}).filter(bool)
address = st.fixed_dictionaries({}, optional={"line": st.lists(text, min_size=1, max_size=3), "city": text, "postalCode": text,
                                              "period": st.fixed_dictionaries({"start": date})}).filter(bool)
extension = st.one_of(
    st.fixed_dictionaries({"url": uri, "valueString": text}),
    st.fixed_dictionaries({"url": uri, "valueBoolean": st.booleans()}),
    st.fixed_dictionaries({"url": uri, "valueInteger": st.integers(-1000, 1000)}),
    st.fixed_dictionaries({"url": uri, "valueCoding": coding}),
    st.fixed_dictionaries({"url": uri, "valueDateTime": instant}),
)
patient = st.fixed_dictionaries(
    {"resourceType": st.just("Patient")},
    optional={
        "identifier": st.lists(identifier, min_size=1, max_size=3),
        "active": st.booleans(),
        "name": st.lists(name, min_size=1, max_size=2),
        "gender": st.sampled_from(["male", "female", "other", "unknown"]),
        "birthDate": date,
        "deceasedBoolean": st.booleans(),
        "address": st.lists(address, min_size=1, max_size=2),
        "telecom": st.lists(st.fixed_dictionaries({"system": st.sampled_from(["phone", "email"]), "value": text}), min_size=1, max_size=2),
        "extension": st.lists(extension, min_size=1, max_size=3),
        "maritalStatus": st.fixed_dictionaries({"coding": st.lists(coding, min_size=1, max_size=2)}, optional={"text": text}),
    },
)
observation = st.fixed_dictionaries(
    {"resourceType": st.just("Observation"), "status": st.sampled_from(["final", "amended", "preliminary"]),
     "code": st.fixed_dictionaries({"coding": st.lists(coding, min_size=1, max_size=2)})},
    optional={
        "effectiveDateTime": instant,
        "valueQuantity": st.fixed_dictionaries({"value": st.integers(0, 500), "unit": st.just("kg"),
                                                "system": st.just("http://unitsofmeasure.org"), "code": st.just("kg")}),
        "note": st.lists(st.fixed_dictionaries({"text": text}), min_size=1, max_size=2),
        "category": st.lists(st.fixed_dictionaries({"coding": st.lists(coding, min_size=1, max_size=1)}), min_size=1, max_size=2),
    },
)


def strip(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(resource=st.one_of(patient, observation))
def test_json_round_trip(base, resource):
    with httpx.Client(base_url=base, timeout=30) as c:
        r = c.post(f"/{resource['resourceType']}", json=resource)
        assert r.status_code == 201, r.text
        back = c.get(f"/{resource['resourceType']}/{r.json()['id']}").json()
    assert strip(back) == resource


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(resource=st.one_of(patient, observation))
def test_xml_round_trip(base, resource):
    with httpx.Client(base_url=base, timeout=30) as c:
        created = c.post(f"/{resource['resourceType']}", json=resource).json()
        xml = c.get(f"/{resource['resourceType']}/{created['id']}", params={"_format": "xml"}).content
        again = c.post(f"/{resource['resourceType']}", content=xml, headers={"Content-Type": "application/fhir+xml"})
        assert again.status_code == 201, again.text
        back = c.get(f"/{resource['resourceType']}/{again.json()['id']}").json()
    assert strip(back) == resource


def test_decimals_keep_their_written_precision(base):
    """FHIR: a decimal's precision is part of its value. 7.50 is served as 7.50 in every form."""
    body = (b'{"resourceType":"Observation","status":"final","code":{"text":"Serum potassium"},'
            b'"valueQuantity":{"value":7.50,"unit":"mmol/L"},'
            b'"referenceRange":[{"low":{"value":3.50},"high":{"value":5.3e0}}]}')
    headers = {"Content-Type": "application/fhir+json"}
    with httpx.Client(base_url=base, timeout=30) as c:
        created = c.post("/Observation", content=body, headers=headers)
        assert created.status_code == 201, created.text
        assert b'"value":7.50' in created.content
        oid = created.json()["id"]
        read = c.get(f"/Observation/{oid}")
        assert b'"value":7.50' in read.content and b'"value":3.50' in read.content and b'"value":5.3e0' in read.content
        pretty = c.get(f"/Observation/{oid}", headers={"Accept": "text/html"})  # a browser: indented JSON
        assert b'"value": 7.50' in pretty.content, pretty.text[:300]
        xml = c.get(f"/Observation/{oid}", params={"_format": "xml"}).content
        assert b'<value value="7.50"/>' in xml
        again = c.post("/Observation", content=xml, headers={"Content-Type": "application/fhir+xml"})
        assert b'"value":7.50' in c.get(f"/Observation/{again.json()['id']}").content  # XML in keeps it too
        summary = c.get("/Observation", params={"_id": oid, "_elements": "valueQuantity"})
        assert b'"value":7.50' in summary.content
        patched = c.patch(f"/Observation/{oid}", content=b'[{"op":"replace","path":"/status","value":"amended"}]',
                          headers={"Content-Type": "application/json-patch+json"})
        assert patched.status_code == 200 and b'"value":7.50' in c.get(f"/Observation/{oid}").content
        tx = (b'{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1f0c1c52-0000-4000-8000-000000000001",'
              b'"resource":{"resourceType":"Observation","status":"final","code":{"text":"Weight"},'
              b'"valueQuantity":{"value":70.10,"unit":"kg"}},"request":{"method":"POST","url":"Observation"}}]}')
        done = c.post("", content=tx, headers=headers)
        assert done.status_code == 200, done.text
        tid = done.json()["entry"][0]["response"]["location"].split("/")[1]
        assert b'"value":70.10' in c.get(f"/Observation/{tid}").content
        found = c.get("/Observation", params={"_id": oid, "value-quantity": "7.5"}).json()
        assert [e["resource"]["id"] for e in found.get("entry", [])] == [oid]  # still a number to search


def test_decimal_reader_is_strict_and_exact():
    from gateway.fhir.decimals import FhirDecimal, copy_json, dumps, loads

    raw = b'{"a":[1.50,2.5,10,1e3,0.1000000000000000055511151231257827,-0.0],"s":"x: 1.50"}'
    value = loads(raw)
    assert dumps(value) == raw
    assert isinstance(value["a"][0], FhirDecimal) and value["a"][0] == 1.5 and type(value["a"][1]) is float
    assert dumps(copy_json(value)) == raw and copy_json(value) is not value
    for bad in (b'{"a":NaN, "b":1.50}', b'{"a":"\\ud800", "b":1.50}', b'{"a":1.50,}'):
        with pytest.raises(ValueError):  # orjson.JSONDecodeError is a ValueError
            loads(bad)


@settings(max_examples=500, deadline=None)
@given(st.from_regex(r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,24})?([eE][+-]?[0-9]{1,2})?", fullmatch=True))
@example("0.000001").via("found by hypothesis: orjson writes it as 1e-6")
@example("-0.0000012")
def test_any_json_number_is_written_back_as_it_was_read(literal):
    from gateway.fhir.decimals import copy_json, dumps, loads

    raw = b'{"valueQuantity":{"value":' + literal.encode() + b'},"x":[' + literal.encode() + b"]}"
    assert dumps(loads(raw)) == raw
    assert dumps(copy_json(loads(raw))) == raw


def test_a_change_of_precision_alone_is_a_change(base):
    """PUT 7.50 over 7.5 writes a new version (Python's == would call them equal); PUT 7.50 again
    changes nothing."""
    headers = {"Content-Type": "application/fhir+json"}
    with httpx.Client(base_url=base, timeout=30) as c:
        made = c.post("/Observation", headers=headers, content=b'{"resourceType":"Observation","status":"final",'
                      b'"code":{"text":"Potassium"},"valueQuantity":{"value":7.5}}').json()
        body = (b'{"resourceType":"Observation","id":"' + made["id"].encode() + b'","status":"final",'
                b'"code":{"text":"Potassium"},"valueQuantity":{"value":7.50}}')
        first = c.put(f"/Observation/{made['id']}", headers=headers, content=body)
        assert first.status_code == 200 and first.json()["meta"]["versionId"] == "2"
        again = c.put(f"/Observation/{made['id']}", headers=headers, content=body)
        assert again.json()["meta"]["versionId"] == "2"  # the same 7.50 again: no new version
        assert b'"value":7.50' in c.get(f"/Observation/{made['id']}").content


def test_xml_decimals_of_any_size_are_kept(base):
    xml = (b'<Observation xmlns="http://hl7.org/fhir"><status value="final"/><code><text value="Count"/></code>'
           b'<valueQuantity><value value="123456789012345678901234"/></valueQuantity></Observation>')
    with httpx.Client(base_url=base, timeout=30) as c:
        made = c.post("/Observation", content=xml, headers={"Content-Type": "application/fhir+xml"})
        assert made.status_code == 201, made.text
        assert b'"value":123456789012345678901234' in c.get(f"/Observation/{made.json()['id']}").content
