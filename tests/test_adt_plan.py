"""Planner: ADT messages against a store, in order, out of order and twice.

`Store` below is just enough of a FHIR server for the plan's contract: identifier searches
(the lookups) and transactions (POST with ifNoneExist, PUT with ifMatch, urn:uuid references
rewritten, versionId bumped only on a real change).
"""

from __future__ import annotations

import copy
import json
import itertools
from pathlib import Path

import pytest

from gateway.adapters.hl7v2.er7 import parse_message
from gateway.adapters.hl7v2.mapping import LAST_EVENT_URL, ConceptMaps, FeedConfig, map_adt
from gateway.adapters.hl7v2.plan import lookups, plan_writes, unchanged
from test_adt_mapping import adt, discharge, segment, zu1_segment

MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
LTH_MRN = "https://fhir.leedsth.nhs.uk/Id/mrn"
LTH_SPELL = "https://fhir.leedsth.nhs.uk/Id/hospital-provider-spell"
REFERRAL_ID = "https://fhir.activerecovery.example/Id/discharge-referral"
DISCHARGE_METHOD_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-DischargeMethod"

# One spell, told as the PAS would: admit 1 Mar, ward move 5 Mar, discharge 14 Mar (GMT).
A01 = adt("A01", recorded="20250301102000", occurred="20250301101500")
A02 = adt("A02", recorded="20250305090500", occurred="20250305090000", pv1={3: "WARD9^^^RR801", 6: "WARD7^^^RR801"})
A03 = discharge(pv1={3: "WARD9^^^RR801"})
A13 = adt("A13", recorded="20250314170000", occurred="20250314170000", pv1={3: "WARD9^^^RR801"})
A03_AGAIN = discharge(recorded="20250316110000", occurred="20250316103000",
                      pv1={3: "WARD9^^^RR801", 45: "20250316103000"})


def _unescape_token(token: str) -> tuple[str, str]:
    parts, buf, i = [], "", 0
    while i < len(token):
        if token[i] == "\\" and i + 1 < len(token):
            buf += token[i + 1]
            i += 2
            continue
        if token[i] == "|":
            parts.append(buf)
            buf = ""
        else:
            buf += token[i]
        i += 1
    parts.append(buf)
    assert len(parts) == 2, token
    return parts[0], parts[1]


def _strip(resource: dict) -> dict:
    out = copy.deepcopy(resource)
    out.get("meta", {}).pop("versionId", None)
    return out


def _rewrite(node, ids: dict[str, str]) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str) and node["reference"] in ids:
            node["reference"] = ids[node["reference"]]
        for v in node.values():
            _rewrite(v, ids)
    elif isinstance(node, list):
        for v in node:
            _rewrite(v, ids)


class Store:
    def __init__(self, codes: ConceptMaps, feeds: FeedConfig) -> None:
        self.codes, self.feeds = codes, feeds
        self.resources: dict[str, dict] = {}
        self.ids = itertools.count(1)
        self.writes = 0

    def search(self, resource_type: str, query: str) -> dict | None:
        assert query.startswith("identifier="), query
        system, value = _unescape_token(query[len("identifier="):])
        hits = [r for key, r in self.resources.items() if key.startswith(resource_type + "/")
                and any(i.get("system") == system and i.get("value") == value for i in r.get("identifier", []))]
        assert len(hits) <= 1, f"{query} matches {len(hits)} resources"
        return copy.deepcopy(hits[0]) if hits else None

    def of_type(self, resource_type: str) -> list[dict]:
        return [r for key, r in sorted(self.resources.items()) if key.startswith(resource_type + "/")]

    def map(self, text: str):
        m = map_adt(parse_message(text), self.feeds, self.codes)
        assert m.errors == [], m.errors
        return m

    def found(self, m) -> dict:
        return {name: self.search(rtype, q) for name, (rtype, q) in lookups(m).items()}

    def send(self, text: str) -> list[dict]:
        m = self.map(text)
        entries = plan_writes(m, self.found(m))
        self.transact(entries)
        return entries

    def transact(self, entries: list[dict]) -> None:
        ids: dict[str, str] = {}
        for e in entries:
            req = e["request"]
            assert e["fullUrl"].startswith("urn:uuid:")
            if req["method"] == "POST":
                assert self.search(req["url"], req["ifNoneExist"]) is None, "duplicate create"
                ids[e["fullUrl"]] = f"{req['url']}/{next(self.ids)}"
            else:
                assert req["method"] == "PUT"
                current = self.resources[req["url"]]
                assert req["ifMatch"] == f'W/"{current["meta"]["versionId"]}"'
                ids[e["fullUrl"]] = req["url"]
        for e in entries:
            resource = copy.deepcopy(e["resource"])
            _rewrite(resource, ids)
            key = ids[e["fullUrl"]]
            resource["id"] = key.split("/")[1]
            old = self.resources.get(key)
            if old is not None and _strip(old) == _strip(resource):
                continue
            version = int(old["meta"]["versionId"]) + 1 if old else 1
            resource.setdefault("meta", {})["versionId"] = str(version)
            self.resources[key] = resource
            self.writes += 1

    # views
    def encounter(self) -> dict:
        (enc,) = self.of_type("Encounter")
        return enc

    def referral(self) -> dict | None:
        refs = self.of_type("ServiceRequest")
        assert len(refs) <= 1
        return refs[0] if refs else None


@pytest.fixture(scope="module")
def codes():
    return ConceptMaps.load(MAPPINGS)


@pytest.fixture(scope="module")
def feeds():
    return FeedConfig.load(MAPPINGS)


@pytest.fixture
def store(codes, feeds):
    return Store(codes, feeds)


def wards(enc: dict) -> list[tuple]:
    return [(loc["location"]["identifier"]["value"], loc["status"], loc.get("period", {}).get("start"),
             loc.get("period", {}).get("end")) for loc in enc.get("location", [])]


def last_event(resource: dict) -> dict:
    ext = next(e for e in resource["extension"] if e["url"] == LAST_EVENT_URL)
    return {e["url"]: next(v for k, v in e.items() if k.startswith("value")) for e in ext["extension"]}


# --------------------------------------------------------------------------- lookups


def test_lookups_nhs_number_first_then_local_ids(store):
    m = store.map(A03)
    assert lookups(m) == {
        "patient": ("Patient", f"identifier={NHS}|9434765919"),
        "patient_1": ("Patient", f"identifier={LTH_MRN}|RR81234567"),
        "encounter": ("Encounter", f"identifier={LTH_SPELL}|SP98765"),
        "referral": ("ServiceRequest", f"identifier={REFERRAL_ID}|RR8.SP98765"),
        "condition_0": ("Condition", "identifier=https://fhir.activerecovery.example/Id/hl7v2-diagnosis|RR8.SP98765.I63.9"),
        "condition_1": ("Condition", "identifier=https://fhir.activerecovery.example/Id/hl7v2-diagnosis|RR8.SP98765.S72.00"),
    }
    merge = store.map(adt("A40", segments=("MRG|RR81111111^^^RR8^MR",)))
    assert lookups(merge)["merge_from_0"] == ("Patient", f"identifier={LTH_MRN}|RR81111111")
    assert "referral" not in lookups(store.map(A01))


def test_lookup_values_are_escaped(store):
    m = store.map(adt("A01", pid={3: "AB\\F\\1,2^^^RR8^MR"}))  # MRN "AB|1,2" (\\F\\ = escaped |)
    assert lookups(m)["patient"] == ("Patient", f"identifier={LTH_MRN}|AB\\|1\\,2")


# --------------------------------------------------------------------------- create and update


def test_admission_creates_patient_and_encounter_with_placeholders_resolved(store):
    entries = store.send(A01)
    assert [(e["request"]["method"], e["request"]["url"]) for e in entries] == [("POST", "Patient"), ("POST", "Encounter")]
    patient_entry, enc_entry = entries
    assert patient_entry["request"]["ifNoneExist"] == f"identifier={NHS}|9434765919"
    assert enc_entry["resource"]["subject"] == {"reference": patient_entry["fullUrl"]}
    enc = store.encounter()
    assert enc["subject"] == {"reference": "Patient/1"}
    assert enc["status"] == "in-progress"
    assert enc["period"] == {"start": "2025-03-01T10:15:00+00:00"}
    assert wards(enc) == [("WARD7", "active", "2025-03-01T10:15:00+00:00", None)]
    assert last_event(enc) == {"event": "A01", "recorded": "2025-03-01T10:20:00+00:00"}


def test_patient_update_keeps_other_sources_identifiers(store):
    store.resources["Patient/77"] = {
        "resourceType": "Patient", "id": "77", "meta": {"versionId": "3", "tag": [{"code": "council"}]},
        "identifier": [{"system": "https://fhir.leeds.gov.uk/Id/person", "value": "LCC-555"},
                       {"system": NHS, "value": "9434765919"}],
        "name": [{"family": "SMYTH", "given": ["MAGGIE"]}],
        "maritalStatus": {"text": "Widowed"},
    }
    entries = store.send(A01)
    put = entries[0]
    assert put["request"] == {"method": "PUT", "url": "Patient/77", "ifMatch": 'W/"3"'}
    p = store.resources["Patient/77"]
    systems = [(i["system"], i["value"]) for i in p["identifier"]]
    assert systems == [("https://fhir.leeds.gov.uk/Id/person", "LCC-555"), (NHS, "9434765919"), (LTH_MRN, "RR81234567")]
    assert p["identifier"][1]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "01"
    assert p["name"][0]["family"] == "SMITH"  # names come from the message
    assert p["maritalStatus"] == {"text": "Widowed"} and p["meta"]["tag"] == [{"code": "council"}]
    assert store.encounter()["subject"] == {"reference": "Patient/77"}


def test_found_by_local_id_when_nhs_number_unknown(store):
    store.send(adt("A01", pid={3: "RR81234567^^^RR8^MR"}))  # no NHS number yet
    store.send(adt("A08", recorded="20250302090000"))  # traced: NHS number now present
    (p,) = store.of_type("Patient")
    assert [i["system"] for i in p["identifier"]] == [LTH_MRN, NHS]


def test_older_message_does_not_overwrite_newer_demographics(store):
    store.send(adt("A08", recorded="20250310090000", pid={5: "JONES^MARGARET^^^MRS^^L"}))
    store.send(adt("A01", recorded="20250301102000", pid={5: "SMITH^MARGARET^^^MRS^^L"}))
    (p,) = store.of_type("Patient")
    assert p["name"][0]["family"] == "JONES"


# --------------------------------------------------------------------------- the spell


def test_admit_transfer_discharge_refer(store):
    store.send(A01)
    store.send(A02)
    assert wards(store.encounter()) == [
        ("WARD7", "completed", "2025-03-01T10:15:00+00:00", "2025-03-05T09:00:00+00:00"),
        ("WARD9", "active", "2025-03-05T09:00:00+00:00", None)]
    store.send(A03)
    enc = store.encounter()
    assert enc["status"] == "finished"
    assert enc["period"] == {"start": "2025-03-01T10:15:00+00:00", "end": "2025-03-14T15:00:00+00:00"}
    assert wards(enc)[-1] == ("WARD9", "completed", "2025-03-05T09:00:00+00:00", "2025-03-14T15:00:00+00:00")
    assert enc["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == "19"
    assert any(e["url"] == DISCHARGE_METHOD_EXT for e in enc["extension"])
    assert len(enc["diagnosis"]) == 2
    conditions = store.of_type("Condition")
    assert {d["condition"]["reference"] for d in enc["diagnosis"]} == {f"Condition/{c['id']}" for c in conditions}
    r = store.referral()
    assert (r["status"], r["intent"]) == ("active", "order")
    assert r["subject"] == {"reference": "Patient/1"} and r["encounter"] == {"reference": f"Encounter/{enc['id']}"}
    assert r["identifier"] == [{"system": REFERRAL_ID, "value": "RR8.SP98765"}]
    assert r["occurrenceDateTime"] == "2025-03-14T15:00:00+00:00"
    assert sorted(x["reference"] for x in r["reasonReference"]) == sorted(f"Condition/{c['id']}" for c in conditions)


def test_same_message_twice_changes_nothing(store):
    for text in (A01, A02, A03):
        store.send(text)
    before = copy.deepcopy(store.resources)
    writes = store.writes
    m = store.map(A03)
    found = store.found(m)
    entries = plan_writes(m, found)
    assert plan_writes(m, found) == entries  # deterministic
    current = {e["request"]["url"]: store.resources[e["request"]["url"]] for e in entries}
    assert all(unchanged(e, current[e["request"]["url"]]) for e in entries)
    store.transact(entries)
    assert store.writes == writes and store.resources == before
    assert len(store.of_type("ServiceRequest")) == 1
    for text in (A01, A02):  # older re-sends do nothing either
        store.send(text)
    assert store.resources == before


def test_plan_is_deterministic_across_stores(codes, feeds):
    a, b = Store(codes, feeds), Store(codes, feeds)
    assert a.send(A03) == b.send(A03)


def test_discharge_before_admission_gives_one_finished_spell(store):
    early = discharge(pv1={44: "", 3: "WARD9^^^RR801"})  # no admit time on this A03
    store.send(early)
    enc = store.encounter()
    assert enc["status"] == "finished" and "start" not in enc["period"]
    assert wards(enc) == [("WARD9", "completed", None, "2025-03-14T15:00:00+00:00")]
    assert store.referral()["status"] == "active"
    store.send(A01)  # late admission: fills gaps only
    enc = store.encounter()
    assert enc["status"] == "finished"
    assert enc["period"] == {"start": "2025-03-01T10:15:00+00:00", "end": "2025-03-14T15:00:00+00:00"}
    assert last_event(enc)["event"] == "A03"
    assert len(store.of_type("Encounter")) == 1 and store.referral()["status"] == "active"
    store.send(A02)  # late transfer does not reopen or move the finished spell
    assert store.encounter()["status"] == "finished" and wards(store.encounter()) == wards(enc)


def test_cancel_discharge_revokes_referral_and_later_discharge_reactivates(store):
    for text in (A01, A02, A03):
        store.send(text)
    store.send(A13)
    enc = store.encounter()
    assert enc["status"] == "in-progress"
    assert "end" not in enc["period"]
    assert "dischargeDisposition" not in enc["hospitalization"]
    assert all(e["url"] != DISCHARGE_METHOD_EXT for e in enc["extension"])
    assert wards(enc) == [
        ("WARD7", "completed", "2025-03-01T10:15:00+00:00", "2025-03-05T09:00:00+00:00"),
        ("WARD9", "active", "2025-03-05T09:00:00+00:00", None)]  # back on the ward, no end
    assert store.referral()["status"] == "revoked"
    store.send(A03)  # the original A03 replayed: older than the A13, ignored
    assert store.encounter()["status"] == "in-progress" and store.referral()["status"] == "revoked"
    store.send(A03_AGAIN)
    assert store.encounter()["status"] == "finished"
    assert store.encounter()["period"]["end"] == "2025-03-16T10:30:00+00:00"
    r = store.referral()
    assert r["status"] == "active" and r["occurrenceDateTime"] == "2025-03-16T10:30:00+00:00"
    assert len(store.of_type("ServiceRequest")) == 1


def test_discharge_from_an_unheard_of_ward(store):
    store.send(A01)  # WARD7; the A02 to WARD9 never arrived
    store.send(A03)
    assert wards(store.encounter()) == [("WARD7", "completed", "2025-03-01T10:15:00+00:00", None),
                                        ("WARD9", "completed", None, "2025-03-14T15:00:00+00:00")]


def test_cancel_discharge_arriving_first_raises_nothing(store):
    store.send(A01)
    store.send(A13)  # overtook its A03
    store.send(A03)
    assert store.encounter()["status"] == "in-progress"
    assert store.referral() is None


def test_a03_and_a13_at_the_same_second_cancel_wins(store):
    store.send(A01)
    same_time_cancel = adt("A13", recorded="20250314153012", pv1={3: "WARD9^^^RR801"})
    store.send(same_time_cancel)
    store.send(A03)  # same EVN-2 as the A13
    assert store.encounter()["status"] == "in-progress" and store.referral() is None


def test_corrected_discharge_that_no_longer_qualifies_revokes(store):
    store.send(A03)
    died = discharge(recorded="20250314160000", pv1={36: "4", 37: "79"})
    store.send(died)
    assert store.referral()["status"] == "revoked"


def test_missing_trigger_table_revokes_nothing(store, codes):
    store.send(A03)
    no_table = FeedConfig.load(MAPPINGS)
    no_table.referral_triggers = None  # e.g. the file was removed by mistake
    m = map_adt(parse_message(A03_AGAIN), no_table, codes)
    assert m.referral is None and not m.referral_decided
    store.transact(plan_writes(m, store.found(m)))
    assert store.referral()["status"] == "active"


def test_service_progress_is_not_reset_by_a_resent_discharge(store):
    store.send(A03)
    key = next(k for k in store.resources if k.startswith("ServiceRequest/"))
    store.resources[key]["status"] = "completed"  # the service finished its work
    store.resources[key]["meta"]["versionId"] = "2"
    store.send(A03_AGAIN)
    assert store.referral()["status"] == "completed"


def test_cancel_transfer_removes_last_move_once(store):
    store.send(A01)
    store.send(A02)
    a12 = adt("A12", recorded="20250305100000", occurred="20250305095500", pv1={3: "WARD7^^^RR801", 6: "WARD9^^^RR801"})
    store.send(a12)
    assert wards(store.encounter()) == [("WARD7", "active", "2025-03-01T10:15:00+00:00", None)]
    store.send(a12)  # twice: still one ward
    assert wards(store.encounter()) == [("WARD7", "active", "2025-03-01T10:15:00+00:00", None)]
    assert store.encounter()["status"] == "in-progress"


def test_cancel_admit_marks_spell_entered_in_error(store):
    store.send(A01)
    store.send(adt("A11", recorded="20250301120000"))
    assert store.encounter()["status"] == "entered-in-error"
    store.send(A01)  # the cancelled admit replayed: stays cancelled
    assert store.encounter()["status"] == "entered-in-error"


def test_update_changes_details_not_status(store):
    store.send(A03)
    a08 = adt("A08", recorded="20250315090000", pid={5: "SMITH^MAGGIE^^^MRS^^L"},
              pv1={7: "C7654321^PATEL^RAJ^^^DR", 37: "56", 45: "20250314150000"},
              segments=(segment("PV2", {9: "20250314"}),))
    store.send(a08)
    enc = store.encounter()
    assert enc["status"] == "finished"
    assert enc["participant"][0]["individual"]["identifier"]["value"] == "7654321"
    assert enc["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == "56"
    assert store.of_type("Patient")[0]["name"][0]["given"] == ["MAGGIE"]
    a08_admitted = adt("A08", recorded="20250302090000", pv1={3: "WARD8^^^RR801"})
    other = Store(store.codes, store.feeds)
    other.send(A01)
    other.send(a08_admitted)
    assert other.encounter()["status"] == "in-progress"
    assert wards(other.encounter()) == [("WARD8", "active", "2025-03-01T10:15:00+00:00", None)]


def test_pre_admission_is_planned_until_admitted(store):
    store.send(adt("A05", recorded="20250220090000", pv1={2: "P", 44: ""}))
    assert store.encounter()["status"] == "planned"
    assert store.encounter()["class"]["code"] == "PRENC"
    assert wards(store.encounter()) == [("WARD7", "planned", None, None)]
    store.send(A01)
    assert store.encounter()["status"] == "in-progress"
    assert store.encounter()["class"]["code"] == "IMP"
    assert wards(store.encounter()) == [("WARD7", "active", "2025-03-01T10:15:00+00:00", None)]


def test_merge_links_retired_and_surviving_patients(store):
    store.send(adt("A28", pid={3: "RR81111111^^^RR8^MR", 5: "SMITH^MAGGIE^^^MRS^^L"}, pv1={2: "N", 19: ""}))
    store.send(A01)  # the surviving record (MRN RR81234567 + NHS number)
    a40 = adt("A40", recorded="20250302090000", pv1={2: "N", 19: ""},
              segments=("MRG|RR81111111^^^RR8^MR",))
    store.send(a40)
    retired = store.search("Patient", f"identifier={LTH_MRN}|RR81111111")
    survivor = store.search("Patient", f"identifier={NHS}|9434765919")
    assert retired["id"] != survivor["id"]
    assert retired["active"] is False
    assert retired["link"] == [{"other": {"reference": f"Patient/{survivor['id']}"}, "type": "replaced-by"}]
    assert survivor["link"] == [{"other": {"reference": f"Patient/{retired['id']}"}, "type": "replaces"}]
    writes = store.writes
    store.send(a40)  # again: no change
    assert store.writes == writes


def test_rejected_message_plans_nothing(codes, feeds):
    m = map_adt(parse_message(adt("A01", pid={3: "9434765918^^^NHS^NH"})), feeds, codes)
    assert m.errors and plan_writes(m, {}) == []


def test_referral_flag_in_medically_fit_zu1_survives_round_trip(store):
    store.send(discharge(zu1=zu1_segment(14, "HUB", 22, "Y"), pv1={37: "55"}))
    r = store.referral()
    assert r["category"][0]["coding"][0]["code"] == "recovery-hub"
    assert r["performer"][0]["identifier"]["value"] == "ZAR02"


FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hl7v2"


def test_shared_story_fixtures(store):
    """The parser's story files (owned by the ER7 tests): admit, move, discharge home without a
    referral flag, cancel, re-discharge to a council residential bed -> recovery hub referral."""
    story = sorted(FIXTURES.glob("story_0*.hl7"))
    assert len(story) == 5, "the five story fixtures are part of the repository"
    seen = []
    for path in story:
        store.send(path.read_text())
        r = store.referral()
        seen.append((store.encounter()["status"], r and (r["status"], r["category"][0]["coding"][0]["code"])))
    assert seen == [("in-progress", None), ("in-progress", None), ("finished", None), ("in-progress", None),
                    ("finished", ("active", "recovery-hub"))]
    assert len(store.encounter()["location"]) == 2


def test_every_adt_fixture_maps_and_plans(codes, feeds):
    paths = sorted(FIXTURES.glob("adt_a*.hl7"))
    assert paths, "the ADT fixtures are part of the repository"
    for path in paths:
        store = Store(codes, feeds)
        text = path.read_text()
        entries = store.send(text)  # Store.map asserts no errors
        assert entries and entries[0]["resource"]["resourceType"] == "Patient", path.name
        before = copy.deepcopy(store.resources)
        store.send(text)  # every event is idempotent
        assert store.resources == before, path.name


def test_everything_written_is_valid_fhir(store):
    import fhir.resources.R4B as r4b  # a test dependency: missing means a broken install, not a skip
    for text in (A01, A02, A03, A13, A03_AGAIN,
                 adt("A28", pid={3: "RR81111111^^^RR8^MR"}, pv1={2: "N", 19: ""}),
                 adt("A40", recorded="20250320090000", pv1={2: "N", 19: ""}, segments=("MRG|RR81111111^^^RR8^MR",))):
        store.send(text)
    assert {r["resourceType"] for r in store.resources.values()} == {"Patient", "Encounter", "Condition", "ServiceRequest"}
    for resource in store.resources.values():
        r4b.get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    for path in MAPPINGS.glob("hl7v2-*.json"):
        data = json.loads(path.read_text())
        if data.get("resourceType") == "ConceptMap":
            r4b.get_fhir_model_class("ConceptMap").model_validate(data)
