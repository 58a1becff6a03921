"""HL7 v2 ADT -> UK Core resources: what a user of the FHIR output relies on.

Fixtures are composed inline (HL72UK A.3 layouts, detail.md §1.1 example). Feed RR8 follows the
NHS England convention (PV1-36 = discharge method), feed RXX HL7 UK A.3 (PV1-36 = destination);
any other sender gets the "auto" reading.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.adapters.hl7v2.er7 import parse_message
from gateway.adapters.hl7v2.mapping import (
    EVENTS, ConceptMaps, FeedConfig, ReferralTriggers, load_concept_maps, map_adt, translate,
)
from gateway.adapters.hl7v2.mapping.datatypes import dtm, nhs_number_valid
from gateway.adapters.hl7v2.mapping.dg1 import icd10

MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
GMC = "https://fhir.hl7.org.uk/Id/gmc-number"
GMP = "https://fhir.hl7.org.uk/Id/gmp-number"
LTH_MRN = "https://fhir.leedsth.nhs.uk/Id/mrn"
LTH_SPELL = "https://fhir.leedsth.nhs.uk/Id/hospital-provider-spell"
VERIFICATION_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
DISCHARGE_METHOD_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-DischargeMethod"
UK_DEST = "https://fhir.hl7.org.uk/CodeSystem/UKCore-DischargeDestinationEngland"
IW_DEST = "https://fhir.interweavedigital.nhs.uk/CodeSystem/Interweave-DischargeDestination"


# --------------------------------------------------------------------------- fixtures


def segment(name: str, fields: dict[int, str]) -> str:
    """A segment from {field number: value}; gaps are empty fields."""
    last = max(fields) if fields else 0
    return "|".join([name] + [fields.get(i, "") for i in range(1, last + 1)])


def adt(event: str, *, facility: str = "RR8", recorded: str = "20250314153012", occurred: str = "20250314150000",
        version: str = "2.4", processing: str = "T", control: str = "", pid: dict | None = None,
        pv1: dict | None = None, segments: tuple[str, ...] = (), msh_type: str = "ADT") -> str:
    """An ADT message: MSH EVN PID PD1 PV1 + `segments`. `pid`/`pv1` override fields."""
    msh = (f"MSH|^~\\&|PAS|{facility}|ROUTE|GATEWAY|{recorded}||{msh_type}^{event}^ADT_{event}|"
           f"{control or 'CTRL' + event + recorded}|{processing}|{version}|||AL|NE")
    evn = segment("EVN", {2: recorded, 6: occurred})
    pid_fields = {
        1: "1",
        3: "RR81234567^^^RR8^MR~9434765919^^^NHS^NH",
        5: "SMITH^MARGARET^ANNE^^MRS^^L",
        7: "19380412",
        8: "2",
        11: "12 Oak Road^Headingley^LEEDS^^ls61ab^GBR^H",
        13: "0113 496 0000^PRN^PH~07700 900123^PRS^CP",
        22: "A",
        32: "NSTS01",
    }
    pid_fields.update(pid or {})
    pv1_fields = {
        1: "1",
        2: "I",
        3: "WARD7^^^RR801",
        4: "21",
        7: "C1234567^JONES^ANNA^^^DR",
        10: "300",
        14: "19",
        19: "SP98765^^^RR8^VN",
        44: "20250301101500",
    }
    pv1_fields.update(pv1 or {})
    parts = [msh, evn, segment("PID", {k: v for k, v in pid_fields.items() if v is not None}),
             "PD1|||LEEDS SURGERY^^B86001|G1234567^BROWN^PETER^^^DR",
             segment("PV1", {k: v for k, v in pv1_fields.items() if v is not None}), *segments]
    return "\r".join(parts)


def zu1_segment(*pairs) -> str:
    """ZU1 from (field, value, field, value, ...): HL72UK ZU1-14 service type, -22 medically fit,
    -24 ready for discharge, -27 NHS number status."""
    return segment("ZU1", dict(zip(pairs[::2], pairs[1::2])))


def discharge(**kw) -> str:
    pv1 = {36: "1", 37: "19", 45: "20250314150000", **kw.pop("pv1", {})}
    zu1 = kw.pop("zu1", zu1_segment(1, "20250301", 14, "REAB", 22, "Y", 24, "20250312", 27, "01"))
    dg1 = (segment("DG1", {1: "1", 3: "I639^Cerebral infarction, unspecified^I10", 5: "20250301", 6: "F", 15: "1"}),
           segment("DG1", {1: "2", 3: "S7200^Fracture of neck of femur^I10", 5: "20250301", 6: "F", 15: "2"}))
    return adt("A03", pv1=pv1, segments=(*dg1, zu1, *kw.pop("segments", ())), **kw)


@pytest.fixture(scope="module")
def codes() -> ConceptMaps:
    return ConceptMaps.load(MAPPINGS)


@pytest.fixture(scope="module")
def feeds() -> FeedConfig:
    return FeedConfig.load(MAPPINGS)


@pytest.fixture
def run(codes, feeds):
    def run(text: str, **kw):
        return map_adt(parse_message(text), feeds, codes, **kw)
    return run


def codings(concept: dict) -> list[tuple[str, str]]:
    return [(c.get("system"), c.get("code")) for c in concept.get("coding", [])]


# --------------------------------------------------------------------------- code tables


def test_concept_maps_are_generic_fhir_r4_resources():
    maps = load_concept_maps(MAPPINGS)
    sex = maps["https://fhir.activerecovery.example/ConceptMap/hl7v2-administrative-sex"]
    assert sex["resourceType"] == "ConceptMap" and sex["sourceUri"] and sex["targetUri"]
    # the generic translate returns $translate-shaped matches, with equivalence
    matches = translate(sex, "A", "http://terminology.hl7.org/CodeSystem/v2-0001")
    assert matches == [{"equivalence": "wider", "source": sex["url"],
                        "concept": {"system": "http://hl7.org/fhir/administrative-gender", "code": "other",
                                    "display": "Other"}}]
    assert translate(sex, "A", "https://fhir.hl7.org.uk/CodeSystem/NHSDataModelAndDictionary-PersonStatedGenderCode") == []
    # non-ConceptMap files in mappings/ (feeds, trigger table) are not loaded as maps
    assert all(cm["resourceType"] == "ConceptMap" for cm in maps.values())


@pytest.mark.parametrize("code,gender", [("M", "male"), ("F", "female"), ("U", "unknown"), ("O", "other"),
                                         ("1", "male"), ("2", "female"), ("9", "other"), ("0", "unknown"),
                                         ("X", "unknown"), ("N", "other")])
def test_sex_hl7_and_nhs_codes(codes, code, gender):
    assert codes.translate("hl7v2-administrative-sex", code)["code"] == gender


def test_translate_by_url_id_or_name(codes):
    url = "https://fhir.activerecovery.example/ConceptMap/hl7v2-patient-class"
    for handle in (url, "hl7v2-patient-class", "HL7v2PatientClass"):
        assert codes.translate(handle, "I") == {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                                "code": "IMP", "display": "inpatient encounter"}
    assert codes.translate("hl7v2-patient-class", "Z") is None


def test_discharge_destination_accepts_codes_uk_core_lacks(codes):
    for code in ("19", "29", "30", "37", "38", "48", "49", "50", "51", "52", "53", "54", "65", "66", "79",
                 "84", "85", "87", "88", "98", "99"):
        assert codes.translate("hl7v2-discharge-destination", code)["system"] == UK_DEST, code
    for code in ("40", "42", "55", "56", "89"):
        coding = codes.translate("hl7v2-discharge-destination", code)
        assert coding["system"] == IW_DEST and coding["code"] == code
    assert codes.translate("hl7v2-discharge-destination", "56")["display"] == "Care Home Without Nursing"


def test_discharge_method_and_verification_status(codes):
    for code in "13456789":
        assert codes.translate("hl7v2-discharge-method", code)["system"] == \
            "https://fhir.hl7.org.uk/CodeSystem/UKCore-DischargeMethodEngland"
    old = codes.translate("hl7v2-discharge-method", "2")  # retired, split into 6 and 7
    assert old["system"].endswith("NHSDataModelAndDictionary-DischargeMethod") and old["code"] == "2"
    for n in range(1, 9):
        coding = codes.translate("hl7v2-nhs-number-verification-status", f"0{n}")
        assert coding["system"] == "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
    assert codes.translate("hl7v2-admission-source", "51")["system"].endswith("UKCore-SourceOfAdmissionEngland")


def test_nhs_number_modulus_11():
    for good in ("9434765919", "9912003888", "9449305552", "9413946000", "943 476 5919"):
        assert nhs_number_valid(good), good
    for bad in ("9434765918", "943476591", "94347659190", "abcdefghij", "0000000000", "1111111111"):
        assert not nhs_number_valid(bad), bad
    # weighted sum of "100000001" is 12 -> check digit would be 10 -> invalid whatever the last digit
    assert not any(nhs_number_valid(f"100000001{d}") for d in range(10))


# --------------------------------------------------------------------------- Patient


def test_patient_is_uk_core_with_nhs_number_first(run):
    m = run(discharge())
    assert m.errors == []
    p = m.patient
    assert p["meta"]["profile"] == ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"]
    nhs = p["identifier"][0]
    assert (nhs["system"], nhs["value"]) == (NHS, "9434765919")
    assert nhs["extension"][0]["url"] == VERIFICATION_EXT
    assert codings(nhs["extension"][0]["valueCodeableConcept"]) == [
        ("https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland", "01")]
    mrn = p["identifier"][1]
    assert (mrn["system"], mrn["value"]) == (LTH_MRN, "RR81234567")
    assert mrn["assigner"]["identifier"] == {"system": ODS, "value": "RR8"}
    assert m.patient_keys == [(NHS, "9434765919"), (LTH_MRN, "RR81234567")]
    assert p["name"] == [{"use": "official", "family": "SMITH", "given": ["MARGARET", "ANNE"], "prefix": ["MRS"]}]
    assert p["gender"] == "female"  # NHS code 2
    assert p["birthDate"] == "1938-04-12"
    assert p["address"][0]["postalCode"] == "LS6 1AB"
    assert p["address"][0]["line"] == ["12 Oak Road", "Headingley"] and p["address"][0]["city"] == "LEEDS"
    assert {"system": "phone", "value": "07700 900123", "use": "mobile"} in p["telecom"]
    assert p["generalPractitioner"] == [
        {"type": "Organization", "identifier": {"system": ODS, "value": "B86001"}, "display": "LEEDS SURGERY"},
        {"type": "Practitioner", "identifier": {"system": GMP, "value": "G1234567"}, "display": "DR PETER BROWN"}]
    assert p["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "A"  # ethnic category
    assert "id" not in p


def test_verification_status_from_zu1_27_when_pid_32_absent(run):
    m = run(discharge(pid={32: ""}, zu1=zu1_segment(27, "04")))
    status = m.patient["identifier"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]
    assert status["code"] == "04"


def test_nhs_number_failing_modulus_11_is_rejected_on_pid_3(run):
    m = run(adt("A01", pid={3: "RR81234567^^^RR8^MR~9434765918^^^NHS^NH"}))
    assert [(e.segment, e.field, e.code) for e in m.errors] == [("PID", 3, "102")]
    assert "Modulus 11" in m.errors[0].message
    assert all(i["system"] != NHS for i in m.patient["identifier"])  # never kept as a matching key
    assert m.patient_keys == [(LTH_MRN, "RR81234567")]


@pytest.mark.parametrize("written", ["943 476 5919", "943-476-5919"])
def test_nhs_number_written_in_groups_is_kept_as_its_ten_digits(run, written):
    m = run(adt("A01", pid={3: f"RR81234567^^^RR8^MR~{written}^^^NHS^NH"}))
    assert m.errors == []
    assert (m.patient["identifier"][0]["system"], m.patient["identifier"][0]["value"]) == (NHS, "9434765919")
    assert m.patient_keys[0] == (NHS, "9434765919")


def test_test_range_nhs_number_rejected_on_live_production_feed(codes):
    live = FeedConfig.from_dict({"feeds": [{"id": "live", "ods_code": "RR8", "allow_test_nhs_numbers": False,
                                            "match": {"sending_facility": ["RR8"]}}]})
    m = map_adt(parse_message(adt("A01", processing="P")), live, codes)
    assert [(e.field, e.code) for e in m.errors] == [(3, "102")] and "test range" in m.errors[0].message
    assert map_adt(parse_message(adt("A01", processing="T")), live, codes).errors == []  # training/test traffic
    assert map_adt(parse_message(adt("A01", processing="P", facility="RXX01")), live, codes).errors == []


def test_death_and_pid_without_identifiers(run):
    m = run(adt("A08", pid={29: "20250314093000", 30: "Y"}))
    assert m.patient["deceasedDateTime"] == "2025-03-14T09:30:00+00:00"
    m = run(adt("A08", pid={3: ""}))
    assert [(e.segment, e.field, e.code) for e in m.errors] == [("PID", 3, "101")]


# --------------------------------------------------------------------------- time zones


def test_times_without_offset_are_london_local_time(run):
    assert dtm("20250115093000", _london()) == "2025-01-15T09:30:00+00:00"  # GMT
    assert dtm("20250715093000", _london()) == "2025-07-15T09:30:00+01:00"  # BST
    assert dtm("20250715093000+0000", _london()) == "2025-07-15T09:30:00+00:00"  # offset sent: kept
    assert dtm("202507150930", _london()) == "2025-07-15T09:30:00+01:00"
    assert dtm("20250715", _london()) == "2025-07-15"  # a date stays a date
    m = run(discharge(recorded="20250715101500", occurred="20250715100000",
                      pv1={44: "20250301101500", 45: "20250715100000"}))
    assert m.encounter["period"] == {"start": "2025-03-01T10:15:00+00:00", "end": "2025-07-15T10:00:00+01:00"}
    assert m.event_time == "2025-07-15T10:00:00+01:00"  # EVN-6
    assert m.recorded_time == "2025-07-15T10:15:00+01:00"  # EVN-2 orders events
    with pytest.raises(ValueError):
        dtm("2025-07-15", _london())


def test_malformed_time_is_a_data_type_error(run):
    m = run(discharge(pv1={45: "20251345"}))
    assert [(e.segment, e.field, e.code) for e in m.errors] == [("PV1", 45, "102")]


def _london():
    from zoneinfo import ZoneInfo
    return ZoneInfo("Europe/London")


# --------------------------------------------------------------------------- Encounter


def test_encounter_is_uk_core_spell(run):
    m = run(discharge())
    e = m.encounter
    assert m.encounter_key == (LTH_SPELL, "SP98765")
    assert e["identifier"][0]["system"] == LTH_SPELL and e["identifier"][0]["value"] == "SP98765"
    assert e["status"] == "finished"
    assert e["class"]["code"] == "IMP"
    assert e["subject"] == {"reference": "urn:gateway:patient"}
    assert e["serviceProvider"]["identifier"] == {"system": ODS, "value": "RR8"}
    atnd = e["participant"][0]
    assert atnd["type"][0]["coding"][0]["code"] == "ATND"
    assert atnd["individual"]["identifier"] == {"system": GMC, "value": "1234567"}  # consultant code C + GMC
    ward = e["location"][0]
    assert ward["location"]["identifier"] == {"system": "https://fhir.leedsth.nhs.uk/Id/ward", "value": "WARD7"}
    assert "period" not in ward  # an A03 names the ward, not when the patient arrived on it
    admitted = run(adt("A01")).encounter["location"][0]
    assert admitted["period"] == {"start": "2025-03-01T10:15:00+00:00"}
    h = e["hospitalization"]
    assert codings(h["admitSource"]) == [("https://fhir.hl7.org.uk/CodeSystem/UKCore-SourceOfAdmissionEngland", "19")]
    assert h["extension"][0]["url"].endswith("Extension-UKCore-AdmissionMethod")
    assert codings(h["dischargeDisposition"]) == [(UK_DEST, "19")]
    method = next(x for x in e["extension"] if x["url"] == DISCHARGE_METHOD_EXT)
    assert codings(method["valueCodeableConcept"]) == [
        ("https://fhir.hl7.org.uk/CodeSystem/UKCore-DischargeMethodEngland", "1")]
    assert m.discharge_time == "2025-03-14T15:00:00+00:00"


def test_discharge_time_falls_back_to_evn_6(run):
    m = run(discharge(pv1={45: ""}, occurred="20250314163000"))
    assert m.encounter["period"]["end"] == "2025-03-14T16:30:00+00:00"


def test_pv1_36_read_per_feed(run):
    # RR8: NHS England convention, PV1-36 = method, PV1-37 = destination
    rr8 = run(discharge(pv1={36: "4", 37: "79"})).encounter
    assert codings(next(x for x in rr8["extension"] if x["url"] == DISCHARGE_METHOD_EXT)["valueCodeableConcept"]) \
        [0][1] == "4"
    assert codings(rr8["hospitalization"]["dischargeDisposition"]) == [(UK_DEST, "79")]
    # RXX: HL7 UK A.3, PV1-36 = destination, PV1-37 = a place
    rxx = run(discharge(facility="RXX01", pv1={36: "54", 37: "OAK LODGE"})).encounter
    assert codings(rxx["hospitalization"]["dischargeDisposition"]) == [(UK_DEST, "54")]
    assert rxx["hospitalization"]["destination"] == {"display": "OAK LODGE"}
    assert all(x["url"] != DISCHARGE_METHOD_EXT for x in rxx.get("extension", []))
    # unknown sender: auto, 1 digit = method, 2 digits = destination
    auto_method = run(discharge(facility="RYY", pv1={36: "1", 37: "56"})).encounter
    assert codings(auto_method["hospitalization"]["dischargeDisposition"]) == [(IW_DEST, "56")]
    assert any(x["url"] == DISCHARGE_METHOD_EXT for x in auto_method["extension"])
    auto_dest = run(discharge(facility="RYY", pv1={36: "55", 37: ""})).encounter
    assert codings(auto_dest["hospitalization"]["dischargeDisposition"]) == [(IW_DEST, "55")]
    assert all(x["url"] != DISCHARGE_METHOD_EXT for x in auto_dest.get("extension", []))
    # unknown sender scopes identifiers by its own ODS code
    assert auto_dest["identifier"][0]["system"] == \
        "https://fhir.activerecovery.example/Id/hl7v2/RR8/hospital-provider-spell"  # CX-4 of PV1-19


def test_unknown_destination_code_is_kept_as_text(run):
    e = run(discharge(pv1={37: "77"})).encounter
    assert e["hospitalization"]["dischargeDisposition"] == {"text": "77"}


def test_medically_fit_and_expected_discharge(run):
    m = run(adt("A08", segments=(segment("PV2", {9: "20250320"}), zu1_segment(22, "Y", 24, "20250312"))))
    ext = {x["url"]: x for x in m.encounter["extension"]}
    safe = ext["https://fhir.interweavedigital.nhs.uk/R4/StructureDefinition/Extension-Interweave-MedicallySafeForDischarge"]
    assert safe["extension"] == [{"url": "status", "valueCode": "ready"}, {"url": "actualDate", "valueDateTime": "2025-03-12"}]
    assert ext["https://fhir.activerecovery.example/StructureDefinition/expected-discharge-date"]["valueDateTime"] \
        == "2025-03-20"
    assert m.encounter["status"] == "in-progress"  # A08 without PV1-45


def test_diagnoses_become_encounter_conditions(run):
    m = run(discharge())
    assert [c["code"]["coding"][0]["code"] for c in m.conditions] == ["I63.9", "S72.00"]
    c = m.conditions[0]
    assert c["code"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-10"
    assert c["category"][0]["coding"][0]["code"] == "encounter-diagnosis"
    assert c["subject"] == {"reference": "urn:gateway:patient"}
    assert c["encounter"] == {"reference": "urn:gateway:encounter"}
    assert c["identifier"] == [{"system": "https://fhir.activerecovery.example/Id/hl7v2-diagnosis",
                                "value": "RR8.SP98765.I63.9"}]
    assert c["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert m.encounter["diagnosis"][0] == {"condition": {"reference": "urn:gateway:condition:0"},
                                           "use": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/diagnosis-role",
                                                               "code": "DD", "display": "Discharge diagnosis"}]},
                                           "rank": 1}
    assert icd10("I639") == "I63.9" and icd10("I10") == "I10" and icd10("j18.9") == "J18.9"


# --------------------------------------------------------------------------- referral table


def test_referral_table_decides_service(run):
    home = run(discharge()).referral  # destination 19 + ZU1-14 REAB
    assert home["category"][0]["coding"][0]["code"] == "home-reablement"
    assert home["code"]["coding"] == [{"system": "http://snomed.info/sct", "code": "306238000",
                                       "display": "Referral to social services (procedure)"}]
    assert home["performer"][0]["identifier"] == {"system": ODS, "value": "ZAR01"}

    hub = run(discharge(pv1={37: "56"}, zu1=zu1_segment(14, "HUB"))).referral
    assert hub["category"][0]["coding"][0]["code"] == "recovery-hub"
    assert hub["performer"][0]["identifier"]["value"] == "ZAR02"

    therapy = run(discharge(zu1=zu1_segment(14, "THER"))).referral
    assert therapy["code"]["coding"][0]["code"] == "306171006"

    assert run(discharge(zu1=zu1_segment(22, "Y"))).referral is None  # home, no flag: no referral
    assert run(discharge(pv1={36: "4", 37: "79"})).referral is None  # died
    assert run(discharge(pv1={37: "51"})).referral is None  # to another hospital
    assert run(adt("A08", segments=(zu1_segment(14, "REAB"),))).referral is None  # only discharges refer


def test_referral_from_onward_referral_observation(run):
    """The OBX convention: OBX-3 REF ("onward referral"), OBX-5 ARS (Active Recovery service)."""
    obx = ("OBX|1|ST|MOB^Mobility on discharge^L||Walks with frame||||||F",
           "OBX|2|CE|REF^Onward referral^L||ARS^Active Recovery service^L||||||F")
    to_home = run(discharge(zu1=zu1_segment(22, "Y"), segments=obx)).referral
    assert to_home["category"][0]["coding"][0]["code"] == "home-reablement"
    to_nhs_care_home = run(discharge(pv1={37: "54"}, zu1=zu1_segment(22, "Y"), segments=obx)).referral
    assert to_nhs_care_home["category"][0]["coding"][0]["code"] == "recovery-hub"
    other_obs = ("OBX|1|CE|XYZ^Something else^L||ARS^Active Recovery service^L||||||F",)
    assert run(discharge(zu1=zu1_segment(22, "Y"), segments=other_obs)).referral is None
    # local authority residential accommodation: a council recovery hub bed without any flag
    la_bed = run(discharge(pv1={37: "65"}, zu1=zu1_segment(22, "Y"))).referral
    assert la_bed["note"][0]["text"].endswith("by referral rule 'recovery-hub-council-bed'.")


def test_referral_content_is_stable_and_complete(run):
    m = run(discharge())
    r = m.referral
    assert r["resourceType"] == "ServiceRequest"
    assert r["meta"]["profile"] == ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-ServiceRequest"]
    assert (r["status"], r["intent"]) == ("active", "order")
    assert r["identifier"] == [{"system": "https://fhir.activerecovery.example/Id/discharge-referral",
                                "value": "RR8.SP98765"}]
    assert m.referral_key == ("https://fhir.activerecovery.example/Id/discharge-referral", "RR8.SP98765")
    assert r["subject"] == {"reference": "urn:gateway:patient"}
    assert r["encounter"] == {"reference": "urn:gateway:encounter"}
    assert r["occurrenceDateTime"] == "2025-03-14T15:00:00+00:00"
    assert r["requester"]["identifier"] == {"system": GMC, "value": "1234567"}
    assert r["reasonReference"] == [{"reference": "urn:gateway:condition:0"}, {"reference": "urn:gateway:condition:1"}]
    # a second resend of the same message maps to the same referral
    assert run(discharge()).referral == r


def test_referral_table_is_data(run):
    triggers = ReferralTriggers.from_dict({
        "services": {"community-therapy": {
            "display": "Active Recovery: community therapy",
            "code": {"system": "http://snomed.info/sct", "code": "306167008",
                     "display": "Referral to community-based occupational therapy service (procedure)"},
            "performer": {"ods": "ZAR03", "name": "Therapy"}}},
        "rules": [{"id": "ot-flag", "service": "community-therapy", "when": {"fields": {"PV2-12": ["OT"]}}}],
    })
    flagged = discharge(pv1={37: "51"}, segments=(segment("PV2", {12: "OT"}),))
    assert run(flagged, triggers=triggers).referral["code"]["coding"][0]["code"] == "306167008"
    assert run(discharge(), triggers=triggers).referral is None


# --------------------------------------------------------------------------- events and errors


def test_every_event_has_an_action():
    assert {k: v.action for k, v in EVENTS.items()} == {
        "A01": "admit", "A02": "transfer", "A03": "discharge", "A04": "register", "A05": "pre-admit",
        "A14": "pre-admit", "A08": "update", "A16": "update", "A25": "update", "A11": "cancel-admit",
        "A12": "cancel-transfer", "A13": "cancel-discharge", "A28": "person-add", "A31": "person-update",
        "A40": "merge", "A34": "merge"}


@pytest.mark.parametrize("text,expected", [
    (adt("A99"), [("MSH", 9, "201")]),
    (adt("A01", version="2.2"), [("MSH", 12, "203")]),
    (adt("A01", version="2.6"), [("MSH", 12, "203")]),
    (adt("R01", msh_type="ORU"), [("MSH", 9, "200")]),
    (adt("A01", pv1={19: ""}), [("PV1", 19, "101")]),
    (adt("A03", pv1={2: ""}), [("PV1", 2, "101")]),
    (adt("A01", pv1={2: "Q"}), [("PV1", 2, "103")]),
])
def test_content_errors_become_ack_errors(run, text, expected):
    m = run(text)
    assert [(e.segment, e.field, e.code) for e in m.errors] == expected


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4", "2.5", "2.5.1"])
def test_supported_versions(run, version):
    assert run(adt("A01", version=version)).errors == []


def test_missing_pid_segment(run, feeds, codes):
    text = "\r".join(line for line in adt("A01").split("\r") if not line.startswith("PID"))
    m = map_adt(parse_message(text), feeds, codes)
    assert [(e.segment, e.field, e.code) for e in m.errors] == [("PID", None, "100")]


def test_person_events_and_demographic_a08_have_no_encounter(run):
    for event in ("A28", "A31"):
        m = run(adt(event, pv1={2: "N", 19: ""}))
        assert m.errors == [] and m.encounter is None and m.patient is not None
    m = run(adt("A08", pv1={19: ""}))
    assert m.errors == [] and m.encounter is None and m.action == "update"


def test_merge_lists_retired_identifiers(run):
    m = run(adt("A40", pid={3: "RR87654321^^^RR8^MR~9434765919^^^NHS^NH"},
                segments=("MRG|RR81234567^^^RR8^MR~9434765919^^^NHS^NH",)))
    assert m.errors == [] and m.action == "merge"
    assert m.merge_from == [(LTH_MRN, "RR81234567")]  # the shared NHS number identifies the survivor
    missing = run(adt("A40"))
    assert [(e.segment, e.code) for e in missing.errors] == [("MRG", "100")]


def test_errors_render_in_the_ack(run):
    from gateway.adapters.hl7v2.ack import build_ack

    text = adt("A01", pid={3: "9434765918^^^NHS^NH"})
    m = run(text)
    ack = build_ack(parse_message(text), "AE", control_id="ACK1", errors=m.errors)
    err = next(line for line in ack.split("\r") if line.startswith("ERR"))
    assert err.startswith("ERR|PID^1^3^102&Data type error&HL70357|PID^1^3|102^")
