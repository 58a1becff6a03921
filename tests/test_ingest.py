"""Council and community files in, over HTTP (and the CLI); one person across partners; $match.

Fixture files are personalised per test (NHS numbers and source person ids replaced) so tests
sharing a server never see each other's people.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from hl7_helpers import ack_code, nhs_number

FIX = Path(__file__).parent / "fixtures"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
COUNCIL_PERSON = "https://fhir.activerecovery.example/Id/council/E08000035/person"
REVIEW = "https://fhir.activerecovery.example/CodeSystem/identity-review|possible-duplicate"


class World:
    """Fresh NHS numbers and person ids standing in for the fixtures' ones."""

    def __init__(self):
        self.n = uuid.uuid4().int % 10**6
        self.nhs = {old: nhs_number(self.n * 10 + i) for i, old in enumerate(["9990000107", "9990000174", "9990000247"])}
        self.suffix = f"{self.n:06d}"

    def file(self, path: str) -> bytes:
        text = (FIX / path).read_text(encoding="utf-8-sig")
        for old, new in self.nhs.items():
            text = text.replace(old, new).replace(f"{old[:3]} {old[3:6]} {old[6:]}", f"{new[:3]} {new[3:6]} {new[6:]}")
        text = re.sub(r"\bLA000(\d{5})\b", lambda m: f"LA{m.group(1)}{self.suffix}", text)
        text = re.sub(r"\b10023(\d{5})\b", lambda m: f"9{m.group(1)}{self.suffix}", text)
        return text.encode()

    def margaret(self) -> str:
        return self.nhs["9990000107"]



@pytest.fixture
def ingest(base):
    import httpx

    root = base.removesuffix("/fhir")

    def send(kind: str, body: bytes, source: str = "test.csv"):
        return httpx.post(f"{root}/ingest/{kind}", content=body, headers={"Content-Type": "text/csv"},
                          params={"source": source}, timeout=60)
    return send


def info(outcome: dict) -> str:
    return outcome["issue"][0]["diagnostics"]


def patients(http, nhs: str) -> list[dict]:
    b = http.get("/Patient", params={"identifier": f"{NHS}|{nhs}"}).json()
    return [e["resource"] for e in b.get("entry", [])]


def test_council_file_loads_and_reload_changes_nothing(http, ingest):
    w = World()
    r = ingest("council", w.file("council/cld_valid.csv"))
    assert r.status_code == 200, r.text
    assert "8 rows read, 8 loaded" in info(r.json())
    [margaret] = patients(http, w.margaret())
    everything = http.get(f"/Patient/{margaret['id']}/$everything").json()
    types = sorted({e["resource"]["resourceType"] for e in everything["entry"]})
    assert {"ServiceRequest", "Encounter", "CarePlan", "EpisodeOfCare", "Provenance"} <= set(types)
    before = http.get("/_history", params={"_count": "1"}).json()["total"]
    again = ingest("council", w.file("council/cld_valid.csv"))
    assert "0 resources created, 0 updated" in info(again.json())
    assert http.get("/_history", params={"_count": "1"}).json()["total"] == before


def test_bad_rows_rejected_with_line_numbers_good_rows_load(http, ingest):
    w = World()
    r = ingest("council", w.file("council/cld_malformed.csv")).json()
    errors = [i for i in r["issue"] if i["severity"] == "error"]
    lines = sorted(int(i["location"][0].split()[1]) for i in errors)
    assert lines == [3, 4, 5, 6, 7]
    assert any("Modulus 11" in i["diagnostics"] for i in errors)
    assert "2 loaded" in info(r)


def test_unknown_column_is_reported_and_missing_required_column_refuses_the_file(ingest):
    w = World()
    r = ingest("council", w.file("council/cld_unknown_column.csv")).json()
    warnings = [i["diagnostics"] for i in r["issue"] if i["severity"] == "warning"]
    assert any("Social_Worker" in w and "Locality" in w and "not in spec" in w for w in warnings), warnings
    missing = ingest("council", w.file("council/cld_missing_column.csv"))
    assert missing.status_code == 400
    assert any(i["severity"] == "error" for i in missing.json()["issue"])
    import httpx

    assert httpx.post(str(missing.request.url).split("?")[0], content=b"{}", headers={"Content-Type": "application/json"}).status_code == 415


def test_one_person_across_hospital_council_and_community(http, ingest, base):
    import httpx

    w = World()
    nhs = w.margaret()
    root = base.removesuffix("/fhir")
    adt = (FIX / "hl7v2" / "story_01_a01_admit.hl7").read_text().replace("9998219930", nhs).replace(
        "RR8PAS0000701", f"X{w.n}").replace("SPRR820250777", f"SPW{w.n}")
    assert ack_code(httpx.post(f"{root}/hl7v2", content=adt.encode(), headers={"Content-Type": "text/plain"}).text) == "AA"
    assert ingest("council", w.file("council/cld_valid.csv")).status_code == 200
    assert ingest("community", w.file("community/csds_valid.csv")).status_code == 200
    [person] = patients(http, nhs)  # one Patient, whichever source spoke first
    systems = {i["system"] for i in person["identifier"]}
    assert NHS in systems
    assert any("/council/" in s for s in systems) and any("/community/" in s for s in systems)
    assert any("hl7v2" in s or "mrn" in s for s in systems)
    everything = http.get(f"/Patient/{person['id']}/$everything", params={"_count": "1000"}).json()
    got = [e["resource"] for e in everything["entry"]]
    encounters = [r for r in got if r["resourceType"] == "Encounter"]
    ids = {i["system"] for r in encounters for i in r.get("identifier", [])}
    assert any("hospital-provider-spell" in s for s in ids)  # the hospital stay, from the ADT feed
    assert any("/council/" in s for s in ids) and any("/community/" in s for s in ids)
    # each partner's record of the journey is kept with its own identifier and Provenance
    provenance_agents = {p["agent"][0]["who"].get("display") for p in got if p["resourceType"] == "Provenance"}
    assert len(provenance_agents) >= 3


def test_possible_duplicate_kept_apart_then_linked_when_nhs_number_arrives(http, ingest):
    w = World()
    nhs = w.margaret()
    assert ingest("council", w.file("council/cld_valid.csv")).status_code == 200
    [council_view] = patients(http, nhs)
    # the community knows Margaret without her NHS number: same name, birth date and postcode
    text = w.file("community/csds_valid.csv").decode()
    no_nhs = text.replace(nhs, "")
    r = ingest("community", no_nhs.encode()).json()
    assert any(i["code"] == "duplicate" for i in r["issue"])
    flagged = http.get("/Patient", params={"_tag": REVIEW, "birthdate": "1938-05-14", "family": "holroyd"}).json()
    ids = {e["resource"]["id"] for e in flagged["entry"]}
    assert council_view["id"] in ids and len(ids) >= 2  # never merged on a demographic match
    community_view = [e["resource"] for e in flagged["entry"] if e["resource"]["id"] != council_view["id"]
                      and any("/community/" in i["system"] for i in e["resource"]["identifier"])][0]
    assert {"other": {"reference": f"Patient/{council_view['id']}"}, "type": "seealso"} in community_view["link"]
    # later the community sends her NHS number: the records are linked and her history moves
    ingest("community", text.encode())
    old = http.get(f"/Patient/{community_view['id']}").json()
    assert old["active"] is False
    assert any(l["type"] == "replaced-by" and l["other"]["reference"] == f"Patient/{council_view['id']}" for l in old["link"])
    everything = http.get(f"/Patient/{council_view['id']}/$everything", params={"_count": "1000"}).json()
    assert any(any("/community/" in i["system"] for i in e["resource"].get("identifier", []))
               for e in everything["entry"] if e["resource"]["resourceType"] == "Encounter")


def test_patient_match(http, ingest):
    w = World()
    ingest("council", w.file("council/cld_valid.csv"))
    nhs = w.margaret()
    body = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {
        "resourceType": "Patient", "identifier": [{"system": NHS, "value": nhs}]}}]}
    r = http.post("/Patient/$match", json=body).json()
    assert r["entry"][0]["search"]["extension"][0]["valueCode"] == "certain" and r["entry"][0]["search"]["score"] == 1.0
    by_demographics = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {
        "resourceType": "Patient", "name": [{"family": "Holroyd", "given": ["Margaret"]}], "birthDate": "1938-05-14",
        "address": [{"postalCode": "LS6 2QT"}]}}]}
    r = http.post("/Patient/$match", json=by_demographics).json()
    grades = {e["search"]["extension"][0]["valueCode"] for e in r["entry"]}
    assert grades and grades <= {"probable", "possible"}
    assert all(0 < e["search"]["score"] < 1 for e in r["entry"])
    only = {**by_demographics, "parameter": by_demographics["parameter"] + [{"name": "onlyCertainMatches", "valueBoolean": True}]}
    assert http.post("/Patient/$match", json=only).json().get("entry", []) == []
    assert http.post("/Patient/$match", json={"resourceType": "Parameters"}).status_code == 400


def test_cli_ingest_with_progress_summary_and_rejects_csv(tmp_path, gateway_server):
    w = World()
    f = tmp_path / "cld.csv"
    f.write_bytes(w.file("council/cld_malformed.csv"))
    rejects = tmp_path / "rejects.csv"
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "ingest", "council", str(f), "--rejects", str(rejects),
                          "--database-url", gateway_server.database_url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "7 rows read" in out.stdout and "5 rejected" in out.stdout
    lines = rejects.read_text().splitlines()
    assert lines[0] == "source,line,reasons" and len(lines) == 6 and lines[1].startswith("cld.csv,3,")
