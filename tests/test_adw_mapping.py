"""ADW notices (DSTU2 XML / JSON) -> R4 UK Core, and the $process-message response.

Fixtures in tests/fixtures/adw/ are hand-written, fictional notices following the structure of
NHS Digital's ADW messaging specification (nhsconnect/FHIR-ADW-Messaging). The three good ones
(assessment, discharge, withdrawal) belong to one case: same ReferralRequest.identifier, same
hospital spell.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle as R4Bundle
from fhir.resources.R4B.encounter import Encounter as R4Encounter
from fhir.resources.R4B.patient import Patient as R4Patient
from fhir.resources.R4B.servicerequest import ServiceRequest as R4ServiceRequest

from gateway.adapters.adw import AdwError, build_response, map_adw, nhs_number_valid, parse_adw
from gateway.adapters.adw.codes import PLANNED_DISCHARGE_EXT
from gateway.fhir.structure.validate import validate_resource

FIXTURES = Path(__file__).parent / "fixtures" / "adw"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS_ORG = "https://fhir.nhs.uk/Id/ods-organization-code"
ODS_SITE = "https://fhir.nhs.uk/Id/ods-site-code"
CASE_KEY = ("https://fhir.activerecovery.example/Id/adw-referral", "RR813.0754a8a2-7b46-4bbd-b123-64e08fcb4dd8")
SPELL_KEY = ("https://fhir.nhs.uk/encounter-id", "ae49d420-cf26-4eaa-b3f6-40db041bda43")


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def notice(name: str) -> dict:
    return parse_adw(load(name))


def assert_valid_r4(resource: dict, model) -> None:
    """Both the gateway's own R4 structure check and the fhir.resources R4B model accept it."""
    assert validate_resource(resource) == []
    model.model_validate(resource)


# --------------------------------------------------------------------------- assessment notice


@pytest.fixture(scope="module")
def assessment():
    return map_adw(notice("assessment_notice.xml"))


def test_assessment_header(assessment):
    m = assessment
    assert m.ok, m.errors
    assert m.kind == "assessment"
    assert m.event == "975701000000106"
    assert m.message_id == "1daa0bed-4683-4331-8e0c-933544d3c738"  # MessageHeader.id, answered in responses
    assert m.sender == "RR813"
    assert m.receiver == "V4L5CC"
    assert m.event_time == "2025-03-05T10:12:00+00:00"


def test_assessment_patient(assessment):
    p = assessment.patient
    assert assessment.patient_keys[0] == (NHS, "9434765919")
    nhs = p["identifier"][0]
    assert nhs["system"] == NHS and nhs["value"] == "9434765919"
    status = nhs["extension"][0]
    assert status["url"] == "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
    assert status["valueCodeableConcept"]["coding"][0] == {
        "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
        "code": "01", "display": "Number present and verified"}
    # the hospital number is scoped by the hospital that assigned it
    local = p["identifier"][1]
    assert local["system"] == "https://fhir.activerecovery.example/Id/adw/RR813/local-patient-identifier"
    assert local["value"] == "RR80123456"
    assert local["assigner"]["identifier"] == {"system": ODS_SITE, "value": "RR813"}
    assert assessment.patient_keys[1] == (local["system"], "RR80123456")
    # DSTU2 HumanName.family is a list; R4 is one string
    assert p["name"] == [{"use": "usual", "family": "Whitaker", "given": ["Margaret", "Ann"]}]
    assert p["gender"] == "female"
    assert p["birthDate"] == "1938-06-21"
    assert p["address"] == [{"line": ["Flat 3", "27 Harehills Avenue", "Harehills"], "city": "Leeds",
                             "district": "West Yorkshire", "postalCode": "LS8 4EX"}]
    carer = p["contact"][0]
    assert carer["relationship"][0]["coding"][0]["code"] == "Carer"
    assert carer["name"]["family"] == "Whitaker"
    assert carer["telecom"] == [{"system": "phone", "value": "07700 900123", "use": "mobile"}]
    assert p["communication"][0]["language"]["coding"][0]["code"] == "en"
    interpreter = {e["url"]: e for e in p["extension"][0]["extension"]}["interpreterRequired"]
    assert interpreter["valueBoolean"] is False
    assert p["generalPractitioner"][0]["identifier"] == {"system": ODS_ORG, "value": "B86999"}
    assert_valid_r4(p, R4Patient)


def test_assessment_encounter_keeps_the_proposed_date_out_of_period_end(assessment):
    enc = assessment.encounter_update
    assert assessment.encounter_key == SPELL_KEY
    assert enc["identifier"] == [{"system": SPELL_KEY[0], "value": SPELL_KEY[1]}]
    assert enc["status"] == "in-progress"
    assert enc["class"]["code"] == "IMP"
    assert enc["priority"]["coding"][0]["code"] == "EM"  # ADW admission type E
    assert enc["period"] == {"start": "2025-03-03"}  # no end: the patient is still in hospital
    assert enc["extension"] == [{"url": PLANNED_DISCHARGE_EXT, "valueDateTime": "2025-03-14"}]
    assert enc["reasonCode"] == [{"text": "Fall at home; fractured left wrist"}]
    assert enc["location"] == [{"location": {"display": "Ward J14"}}]
    assert enc["serviceProvider"]["identifier"] == {"system": ODS_SITE, "value": "RR813"}
    assert enc["subject"] == {"reference": "urn:gateway:patient"}
    assert_valid_r4(enc, R4Encounter)


def test_assessment_service_request(assessment):
    sr = assessment.service_request
    assert assessment.referral_key == CASE_KEY
    assert sr["identifier"] == [{"system": CASE_KEY[0], "value": CASE_KEY[1]}]
    assert (sr["status"], sr["intent"]) == ("active", "order")
    assert sr["code"]["coding"][0]["system"] == "http://snomed.info/sct"
    assert sr["code"]["coding"][0]["code"] == "710824005"
    assert sr["category"][0]["coding"][0]["code"] == "975701000000106"
    assert sr["subject"] == {"reference": "urn:gateway:patient"}
    assert sr["encounter"] == {"reference": "urn:gateway:encounter"}
    assert sr["authoredOn"] == "2025-03-05T10:12:00+00:00"
    assert sr["requester"]["identifier"] == {"system": ODS_SITE, "value": "RR813"}
    assert sr["requester"]["display"] == "St James's University Hospital"
    assert sr["performer"] == [{"type": "Organization", "identifier": {"system": ODS_ORG, "value": "V4L5CC"},
                                "display": "Leeds City Council"}]
    assert "personal care and mobility" in sr["reasonCode"][0]["text"]
    notes = "\n".join(n["text"] for n in sr["note"])
    assert "Walking with a frame" in notes  # the care needs described by the ward
    assert "Hospital liaison: Priya Nair" in notes and "0113 496 0456" in notes
    assert "Are there safeguarding concerns? No" in notes
    assert_valid_r4(sr, R4ServiceRequest)


def test_same_notice_in_json_maps_identically(assessment):
    from_json = notice("assessment_notice.json")
    assert from_json == notice("assessment_notice.xml")  # the XML reader yields DSTU2 JSON
    assert map_adw(from_json) == assessment


def test_retried_notice_maps_to_the_same_keys(assessment):
    again = map_adw(notice("assessment_notice.xml"))
    assert again.message_id == assessment.message_id
    assert again.service_request["identifier"] == assessment.service_request["identifier"]


# --------------------------------------------------------------------------- discharge notice


def test_discharge_notice_updates_the_planned_date():
    m = map_adw(notice("discharge_notice.xml"))
    assert m.ok, m.errors
    assert m.kind == "discharge"
    assert m.referral_key == CASE_KEY  # the same case as the assessment notice
    assert m.encounter_key == SPELL_KEY
    assert m.encounter_update["extension"] == [{"url": PLANNED_DISCHARGE_EXT, "valueDateTime": "2025-03-17"}]
    assert "end" not in m.encounter_update["period"]
    assert m.service_request is None and m.withdraws is None
    # the spaced NHS number is normalised, and the embedded document's Patient is not this patient
    assert m.patient_keys[0] == (NHS, "9434765919")
    assert all(v != "9876543210" for _, v in m.patient_keys)
    assert_valid_r4(m.encounter_update, R4Encounter)


def test_discharge_of_a_finished_encounter_is_the_actual_discharge():
    bundle = notice("discharge_notice.xml")
    encounter = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter")
    encounter["status"] = "finished"
    enc = map_adw(bundle).encounter_update
    assert enc["status"] == "finished"
    assert enc["period"] == {"start": "2025-03-03", "end": "2025-03-17"}
    assert "extension" not in enc


def test_discharge_notice_without_a_date_is_an_error():
    bundle = notice("discharge_notice.xml")
    encounter = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter")
    del encounter["period"]["end"]
    m = map_adw(bundle)
    assert not m.ok
    assert m.errors == [("Bundle.entry[2].resource.period.end",
                         "a Discharge Notice must give the proposed discharge date")]


# --------------------------------------------------------------------------- withdrawal notice


def test_withdraw_all_revokes_the_case():
    m = map_adw(notice("withdrawal_notice.xml"))
    assert m.ok, m.errors
    assert m.kind == "withdrawal"
    assert m.withdraw_scope == "all"
    assert m.withdraws == CASE_KEY  # the ServiceRequest raised from the assessment notice
    assert m.clear_planned_discharge is True
    assert m.withdraw_reason["coding"][0]["code"] == "09"
    assert m.withdraw_reason["text"] == "Transferred to a recovery hub bed for rehabilitation."
    assert m.patient_keys == [(NHS, "9434765919")]
    assert m.encounter_key == SPELL_KEY
    assert m.service_request is None and m.encounter_update is None


def test_withdraw_discharge_only_keeps_the_assessment():
    xml = load("withdrawal_notice.xml").replace(b"975841000000102", b"975851000000104")
    m = map_adw(parse_adw(xml))
    assert m.ok, m.errors
    assert m.withdraw_scope == "discharge"
    assert m.withdraws is None  # the assessment request stays active
    assert m.referral_key == CASE_KEY
    assert m.clear_planned_discharge is True


# --------------------------------------------------------------------------- bad input


def test_not_a_message_bundle():
    with pytest.raises(AdwError) as exc:
        parse_adw(load("not_message_bundle.xml"))
    assert exc.value.location == "Bundle.type"
    assert "'collection'" in exc.value.message


def test_missing_patient_is_reported():
    m = map_adw(notice("missing_patient.xml"))
    assert not m.ok
    assert ("Bundle.entry[1].resource.patient", "the notice has no Patient") in m.errors
    assert m.patient is None and m.patient_keys == []


def test_bad_nhs_number_is_reported_and_never_a_key():
    m = map_adw(notice("bad_nhs_number.xml"))
    assert not m.ok
    assert m.errors[0] == ("Bundle.entry[2].resource.identifier[0].value",
                           "NHS number '9434765918' fails the Modulus 11 check")
    assert all(system != NHS for system, _ in m.patient_keys)
    assert all(i["system"] != NHS for i in m.patient.get("identifier", []))


def test_doctype_and_entities_are_refused_quickly():
    started = time.monotonic()
    with pytest.raises(AdwError) as exc:
        parse_adw(load("doctype_entity.xml"))
    assert time.monotonic() - started < 1
    assert "DOCTYPE" in exc.value.message


def test_doctype_in_utf16_is_refused():
    utf16 = load("doctype_entity.xml").decode("utf-8").replace('encoding="UTF-8"', 'encoding="UTF-16"')
    with pytest.raises(AdwError, match="DOCTYPE"):
        parse_adw(utf16.encode("utf-16"))


def test_missing_message_header():
    bundle = notice("assessment_notice.json")
    bundle["entry"] = bundle["entry"][1:]
    with pytest.raises(AdwError) as exc:
        map_adw(bundle)
    assert exc.value.location == "Bundle.entry[0].resource"


def test_message_header_not_first():
    bundle = notice("assessment_notice.json")
    bundle["entry"].append(bundle["entry"].pop(0))
    with pytest.raises(AdwError, match="first entry"):
        map_adw(bundle)


@pytest.mark.parametrize("system,code,match", [
    ("http://snomed.info/sct", "123456789", "unknown ADW event"),
    ("http://example.org/events", "975701000000106", "unknown ADW event"),
    ("http://snomed.info/sct", "975711000000108", "is a response"),  # an accept response sent to us
])
def test_unknown_event(system, code, match):
    bundle = notice("assessment_notice.json")
    bundle["entry"][0]["resource"]["event"] = {"system": system, "code": code}
    with pytest.raises(AdwError, match=match) as exc:
        map_adw(bundle)
    assert exc.value.location == "Bundle.entry[0].resource.event"


@pytest.mark.parametrize("body", [b"", b"<Bundle", b"{not json", b"[]", b"hello",
                                  b'<Bundle xmlns="http://example.org/"/>', b'{"resourceType": "Patient"}'])
def test_malformed_input(body):
    with pytest.raises(AdwError):
        parse_adw(body)


def test_missing_referral_identifier():
    bundle = notice("assessment_notice.json")
    del bundle["entry"][1]["resource"]["identifier"]
    m = map_adw(bundle)
    assert ("Bundle.entry[1].resource.identifier",
            "ReferralRequest.identifier is missing (it links the notices of one case)") in m.errors
    assert m.referral_key is None


def test_content_type_selects_the_reader():
    xml = load("assessment_notice.xml")
    assert parse_adw(xml, "application/xml+fhir; charset=utf-8")["type"] == "message"
    with pytest.raises(AdwError):
        parse_adw(xml, "application/json+fhir")
    with pytest.raises(AdwError, match="content type"):
        parse_adw(xml, "text/plain")


@pytest.mark.parametrize("number,valid", [("9434765919", True), ("943 476 5919", True), ("9434765918", False),
                                          ("4010232137", True), ("1111111111", False), ("123", False)])
def test_nhs_number_modulus_11(number, valid):
    assert nhs_number_valid(number) is valid


# --------------------------------------------------------------------------- the response message


def test_accept_response():
    bundle = notice("assessment_notice.xml")
    reply = build_response(bundle, True, [], timestamp="2025-03-05T10:12:05+00:00")
    assert reply["resourceType"] == "Bundle" and reply["type"] == "message"
    header = reply["entry"][0]["resource"]
    assert header["resourceType"] == "MessageHeader"
    assert header["response"] == {"identifier": "1daa0bed-4683-4331-8e0c-933544d3c738", "code": "ok"}
    assert header["eventCoding"]["code"] == "975711000000108"  # Assessment Notice Accept Response
    assert header["destination"] == [{"endpoint": "urn:nhs-uk:addressing:ods:RR813"}]  # back to the hospital
    assert header["source"] == {"endpoint": "urn:nhs-uk:addressing:ods:V4L5CC"}
    assert len(reply["entry"]) == 1
    assert validate_resource(reply) == []
    R4Bundle.model_validate(reply)
    # answering a retry gives the same message
    assert build_response(bundle, True, [], timestamp="2025-03-05T10:12:05+00:00") == reply


def test_reject_response_carries_an_operation_outcome():
    bundle = notice("bad_nhs_number.xml")
    m = map_adw(bundle)
    reply = build_response(bundle, m.ok, m.errors, timestamp="2025-03-05T11:30:02+00:00")
    header, outcome = (e["resource"] for e in reply["entry"])
    assert header["response"]["identifier"] == "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e"
    assert header["response"]["code"] == "fatal-error"
    assert header["eventCoding"]["code"] == "975721000000102"  # Assessment Notice Reject Response
    assert header["response"]["details"] == {"reference": reply["entry"][1]["fullUrl"]}
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[2].resource.identifier[0].value"]
    assert "Modulus 11" in outcome["issue"][0]["diagnostics"]
    assert validate_resource(reply) == []
    R4Bundle.model_validate(reply)


def test_transient_error_response():
    bundle = notice("withdrawal_notice.xml")
    reply = build_response(bundle, False, [("Bundle", "the store is unavailable")], transient=True,
                           timestamp="2025-03-13T09:05:01+00:00")
    header, outcome = (e["resource"] for e in reply["entry"])
    assert header["response"]["code"] == "transient-error"
    assert header["eventCoding"]["code"] == "1025641000000106"  # Withdraw Notice Reject
    assert outcome["issue"][0]["code"] == "transient"
    R4Bundle.model_validate(reply)


def test_response_to_a_refused_message():
    """An AdwError (here: not a message bundle) answered as a fatal error."""
    bundle = copy.deepcopy(notice("assessment_notice.json"))
    bundle["type"] = "collection"
    try:
        map_adw(bundle)
    except AdwError as exc:
        reply = build_response(bundle, False, [(exc.location, exc.message)], timestamp="2025-03-05T10:12:05+00:00")
    header = reply["entry"][0]["resource"]
    assert header["response"]["code"] == "fatal-error"
    assert header["response"]["identifier"] == "1daa0bed-4683-4331-8e0c-933544d3c738"
    assert reply["entry"][1]["resource"]["issue"][0]["expression"] == ["Bundle.type"]
    R4Bundle.model_validate(reply)


def test_council_named_by_ons_code():
    xml = load("assessment_notice.xml").replace(b"addressing:ods:V4L5CC", b"addressing:ods:E08000035")
    m = map_adw(parse_adw(xml))
    assert m.receiver == "E08000035"
    assert m.service_request["performer"][0]["identifier"] == {
        "system": "https://fhir.activerecovery.example/Id/ons-gss-code", "value": "E08000035"}
