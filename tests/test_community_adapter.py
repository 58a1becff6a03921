"""Community therapy extracts (CSDS data items, CSV) -> FHIR transaction entries the pipeline loads."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from gateway.adapters.community import RowResult, read_community_file
from gateway.adapters.council import read_council_file
from gateway.adapters.tabular import load_spec
from gateway.fhir.structure.validate import validate_resource

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "community"
ID = "https://fhir.activerecovery.example/Id/community/RY6"
ODS_RY6 = {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RY6"}}
REFERRAL = f"ServiceRequest?identifier={ID}/service-request|SR55501"
EPISODE = f"EpisodeOfCare?identifier={ID}/episode|SR55501"


@pytest.fixture(scope="module")
def spec():
    return load_spec(ROOT / "mappings" / "community-csds.json")


def read(name: str, spec) -> tuple[list[str], dict[int, RowResult]]:
    messages, rows = read_community_file(FIXTURES / name, spec)
    return messages, {r.line: r for r in rows}


def only(row: RowResult, rtype: str | None = None) -> dict:
    resources = [e["resource"] for e in row.entries if rtype is None or e["resource"]["resourceType"] == rtype]
    assert len(resources) == 1
    return resources[0]


def attendance(encounter: dict) -> dict:
    return {e["url"]: e for e in encounter["extension"][0]["extension"]}


@pytest.fixture(scope="module")
def valid(spec) -> dict[int, RowResult]:
    messages, rows = read("csds_valid.csv", spec)
    assert messages == []
    assert all(r.errors == [] and r.warnings == [] for r in rows.values())
    assert sorted(rows) == list(range(2, 15))
    return rows


# --------------------------------------------------------------------------- the output contract


def test_entries_are_conditional_puts_scoped_by_the_provider(valid) -> None:
    kinds = []
    for row in valid.values():
        for entry in row.entries:
            res = entry["resource"]
            ident = res["identifier"][0]
            assert ident["system"].startswith(f"{ID}/")
            assert entry["request"] == {"method": "PUT",
                                        "url": f"{res['resourceType']}?identifier={ident['system']}|{ident['value']}"}
            kinds.append(res["resourceType"])
            assert validate_resource(res) == [], res["resourceType"]
        assert validate_resource(row.patient) == []
    assert sorted(set(kinds)) == ["CarePlan", "Encounter", "EpisodeOfCare", "Goal", "Observation", "Procedure",
                                  "ServiceRequest"]


def test_output_is_deterministic(spec) -> None:
    def dump() -> bytes:
        _, rows = read_community_file(FIXTURES / "csds_valid.csv", spec)
        return orjson.dumps([(r.line, r.patient, r.entries) for r in rows])
    assert dump() == dump()
    raw = (FIXTURES / "csds_valid.csv").read_bytes()
    _, rows = read_community_file(io.BytesIO(raw), spec)
    assert orjson.dumps([(r.line, r.patient, r.entries) for r in rows]) == dump()


def test_council_and_community_identifiers_never_collide(valid) -> None:
    _, council = read_council_file(ROOT / "tests" / "fixtures" / "council" / "cld_valid.csv",
                                   ROOT / "mappings" / "council-cld.json")
    council_urls = {e["request"]["url"] for r in council for e in r.entries}
    community_urls = {e["request"]["url"] for r in valid.values() for e in r.entries}
    assert council_urls and community_urls and not council_urls & community_urls


# --------------------------------------------------------------------------- CYP101 referral


def test_referral_becomes_service_request_and_owns_its_episode(valid) -> None:
    row = valid[2]
    request, episode = only(row, "ServiceRequest"), only(row, "EpisodeOfCare")
    assert request["status"] == "active" and request["intent"] == "order" and request["priority"] == "urgent"
    assert request["authoredOn"] == "2025-03-13T10:05:00+00:00"  # GMT in March
    source = request["extension"][0]
    assert source["url"] == "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-SourceOfServiceRequest"
    assert [c["code"] for c in source["valueCodeableConcept"]["coding"]] == ["H2", "185360007"]
    assert request["performer"] == [{"identifier": {"system": f"{ID}/team", "value": "ART-NW"}}]
    assert episode["status"] == "active" and episode["period"] == {"start": "2025-03-13"}
    assert episode["managingOrganization"] == ODS_RY6
    assert episode["referralRequest"] == [{"reference": row.entries[0]["fullUrl"]}]
    assert row.entries[1]["request"]["url"] == EPISODE


def test_discharged_and_rejected_referrals(valid) -> None:
    discharged = valid[11]
    assert only(discharged, "ServiceRequest")["status"] == "completed"
    episode = only(discharged, "EpisodeOfCare")
    assert episode["status"] == "finished" and episode["period"] == {"start": "2025-02-03", "end": "2025-03-28"}
    rejected = valid[14]
    request = only(rejected, "ServiceRequest")
    assert request["status"] == "revoked"
    assert request["note"] == [{"text": "Referral rejected: reason 03"}]
    assert only(rejected, "EpisodeOfCare")["status"] == "cancelled"


# --------------------------------------------------------------------------- CYP201 care contact


def test_home_visit_that_happened(valid) -> None:
    encounter = only(valid[3])
    assert encounter["resourceType"] == "Encounter"
    assert encounter["identifier"] == [{"system": f"{ID}/care-contact", "value": "CC9001"}]
    assert encounter["status"] == "finished"
    assert encounter["class"]["code"] == "HH"
    assert encounter["type"][0]["coding"][0]["code"] == "01"
    assert encounter["period"] == {"start": "2025-03-15T10:30:00+00:00"}
    assert encounter["length"] == {"value": 45, "unit": "minutes", "system": "http://unitsofmeasure.org", "code": "min"}
    assert encounter["location"][0]["physicalType"]["coding"] == [{
        "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-EncounterLocationTypeEngland", "code": "A01",
        "display": "Patient's Home"}]
    assert encounter["basedOn"] == [{"reference": REFERRAL}]
    assert encounter["episodeOfCare"] == [{"reference": EPISODE}]
    assert encounter["serviceProvider"] == ODS_RY6
    assert attendance(encounter)["attendance"]["valueCodeableConcept"]["coding"][0]["code"] == "5"


@pytest.mark.parametrize("line, cls, status", [
    (7, "VR", "finished"),  # telephone
    (8, "HH", "cancelled"),  # did not attend
    (9, "HH", "cancelled"),  # cancelled by the provider
    (10, "VR", "finished"),  # video, arrived late but seen
    (12, "HH", "finished"),  # care home without nursing
])
def test_contact_class_and_status(valid, line: int, cls: str, status: str) -> None:
    encounter = only(valid[line])
    assert (encounter["class"]["code"], encounter["status"]) == (cls, status)


def test_missed_and_cancelled_contacts_keep_the_reason(valid) -> None:
    dna = only(valid[8])
    assert attendance(dna)["attendance"]["valueCodeableConcept"]["coding"][0]["code"] == "3"
    assert "length" not in dna
    cancelled = attendance(only(valid[9]))
    assert cancelled["attendance"]["valueCodeableConcept"]["coding"][0]["code"] == "4"
    assert cancelled["cancellationReason"] == {"url": "cancellationReason", "valueString": "02"}


def test_local_times_carry_the_summer_time_offset(valid) -> None:
    assert only(valid[10])["period"]["start"] == "2025-04-01T10:00:00+01:00"


# --------------------------------------------------------------------------- CYP202 care activity


def test_scored_assessment_becomes_an_observation_of_the_contact(valid) -> None:
    obs = only(valid[4])
    assert obs["resourceType"] == "Observation" and obs["status"] == "final"
    assert obs["code"]["coding"] == [{"system": "http://snomed.info/sct", "code": "273302005"}]  # Barthel index
    assert obs["valueQuantity"] == {"value": 55, "unit": "{score}", "system": "http://unitsofmeasure.org",
                                    "code": "{score}"}
    assert obs["encounter"] == {"reference": f"Encounter?identifier={ID}/care-contact|CC9001"}
    assert obs["category"][0]["coding"][0]["code"] == "02" and obs["category"][0]["text"] == "Assessments"
    assert obs["effectiveDateTime"] == "2025-03-15T10:30:00+00:00"


def test_coded_procedure(valid) -> None:
    procedure = only(valid[5])
    assert procedure["resourceType"] == "Procedure" and procedure["status"] == "completed"
    assert procedure["code"]["coding"][0]["code"] == "84478008"  # occupational therapy
    assert procedure["category"]["coding"][0]["code"] == "03"
    actor = {"identifier": {"system": f"{ID}/care-professional", "value": "OT-4411"}}
    assert procedure["performer"] == [{"actor": actor}]
    assert procedure["performedDateTime"] == "2025-03-15"


# --------------------------------------------------------------------------- CYP004 plan and goals


def test_therapy_plan_with_goals(valid) -> None:
    row = valid[6]
    plan, *goals = [e["resource"] for e in row.entries]
    assert plan["resourceType"] == "CarePlan" and plan["status"] == "active" and plan["intent"] == "plan"
    assert plan["period"] == {"start": "2025-03-16"} and plan["created"] == "2025-03-15"
    assert plan["supportingInfo"] == [{"reference": REFERRAL}, {"reference": EPISODE}]
    assert plan["goal"] == [{"reference": e["fullUrl"]} for e in row.entries[1:]]
    assert [g["identifier"][0]["value"] for g in goals] == ["CP3001.1", "CP3001.2", "CP3001.3"]
    assert [(g["lifecycleStatus"], g["achievementStatus"]["coding"][0]["code"]) for g in goals] == [
        ("active", "in-progress"), ("completed", "achieved"), ("accepted", "in-progress")]
    assert goals[0]["description"] == {"text": "Walk to the end of the street and back with a stick"}
    assert goals[0]["target"] == [{"dueDate": "2025-04-12"}]


# --------------------------------------------------------------------------- Patient


def test_patient_as_the_trust_knows_the_person(valid) -> None:
    patient = valid[2].patient
    nhs, local = patient["identifier"]
    assert nhs["value"] == "9990000107"
    assert nhs["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "01"  # traced and verified
    assert local == {"system": f"{ID}/patient", "value": "1002345678", "type": local["type"], "assigner": ODS_RY6}
    assert patient["name"][0]["family"] == "HOLROYD"
    assert patient["address"] == [{"postalCode": "LS6 2QT"}]
    assert patient["gender"] == "female" and patient["birthDate"] == "1938-05-14"
    without_nhs = valid[11].patient
    assert [i["system"] for i in without_nhs["identifier"]] == [f"{ID}/patient"]


# --------------------------------------------------------------------------- bad input


def test_malformed_rows_are_rejected_with_line_and_reason(spec) -> None:
    messages, rows = read("csds_malformed.csv", spec)
    assert messages == [] and rows[2].errors == []
    assert rows[3].errors == ["Contact_Date: '15/13/2025' is not a date in the expected format (%Y-%m-%d or %d/%m/%Y)"]
    assert rows[4].errors == ["NHSNumber: '9990000100' fails the NHS number Modulus 11 check"]
    assert rows[5].errors == ["ConsMechanism: '07' is not a known code (ConceptMap community-consultation-mechanism)",
                              "ActLocTypeCode: 'Z99' is not a known code (ConceptMap community-activity-location-type)"]
    assert rows[6].errors == ["ServiceRequestID: required value missing for a contact row",
                              "AttendanceStatus: required value missing for a contact row"]
    assert rows[7].errors[0].startswith("Record_Type: 'CYP999' is not one of CYP101")
    assert rows[8].errors == ["Postcode: 'LEEDS 6' is not a UK postcode",
                              "CareActivity_Duration: -5 is below the minimum 0",
                              "CodedProcedure: 'not-a-code' does not match the expected pattern [0-9]{6,18}"]
    assert all(rows[n].entries == [] and rows[n].patient is None for n in range(3, 9))


def test_unknown_and_missing_columns(spec) -> None:
    messages, rows = read("csds_unknown_column.csv", spec)
    assert messages == ["warning: columns not in spec community-csds were ignored: SystmOneUnitID"]
    assert rows[2].entries
    messages, rows = read("csds_missing_column.csv", spec)
    assert messages == ["error: required columns missing from the header: OrgID_Provider, LocalPatientID"]
    assert rows == {}


def test_partial_file(spec) -> None:
    _, rows = read("csds_partial.csv", spec)
    assert [n for n, r in rows.items() if not r.errors] == [2, 3]
    assert rows[4].errors == ["row has 37 values but the header has 58 (a cut-off line or an unquoted delimiter)"]


def test_duplicate_rows(spec) -> None:
    _, rows = read("csds_duplicate.csv", spec)
    assert rows[4].entries == [] and rows[4].warnings == ["duplicate of line 3: identical row, loaded once"]
    assert rows[5].errors == ["the same contact event (CC9001) is on line 3 with different values; "
                              "which one is right cannot be told"]


def test_csds_xml_submissions_are_refused_not_misread(spec) -> None:
    xml = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
           b"<CSDS><CYP001MPI><LocalPatientID>1</LocalPatientID></CYP001MPI></CSDS>\n")
    messages, rows = read_community_file(io.BytesIO(xml), spec)
    assert messages[0].startswith("error: required columns missing from the header")
    assert list(rows) == []
