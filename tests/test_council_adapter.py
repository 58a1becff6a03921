"""Council adult social care extracts (CLD layout) -> FHIR transaction entries the pipeline loads."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from gateway.adapters.council import RowResult, read_council_file
from gateway.adapters.tabular import load_spec
from gateway.adapters.tabular.fhir import conditional_url, search_value
from gateway.fhir.structure.validate import validate_resource

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "council"
ID = "https://fhir.activerecovery.example/Id/council/E08000035"
LA_CODE = {"identifier": {"system": "https://fhir.activerecovery.example/Id/la-code", "value": "E08000035"}}
MARGARET_EPISODE_QUERY = f"identifier={ID}/episode|LA00012345.EP-2025-0042"


def episode_full_url(system: str, value: str) -> str:
    from gateway.adapters.tabular.fhir import full_url

    return full_url("EpisodeOfCare", system, value)


# Rows other than the Request point at the episode entry of their own transaction: a
# create-if-missing stub, so a Service that arrives before its Request still links up.
MARGARET_EPISODE = episode_full_url(f"{ID}/episode", "LA00012345.EP-2025-0042")


@pytest.fixture(scope="module")
def spec():
    return load_spec(ROOT / "mappings" / "council-cld.json")


def read(name: str, spec) -> tuple[list[str], list[RowResult]]:
    messages, rows = read_council_file(FIXTURES / name, spec)
    return messages, list(rows)


def by_line(rows: list[RowResult]) -> dict[int, RowResult]:
    return {r.line: r for r in rows}


def resource(row: RowResult, rtype: str, index: int = 0) -> dict:
    return [e["resource"] for e in row.entries if e["resource"]["resourceType"] == rtype][index]


def codes(concept: dict) -> set[tuple[str, str]]:
    return {(c["system"].rsplit("/", 1)[-1], c["code"]) for c in concept["coding"]}


@pytest.fixture(scope="module")
def valid(spec) -> dict[int, RowResult]:
    messages, rows = read("cld_valid.csv", spec)
    assert messages == []
    assert [r.errors for r in rows] == [[]] * 8
    return by_line(rows)


# --------------------------------------------------------------------------- the output contract


def test_every_entry_is_a_conditional_put_by_source_scoped_identifier(valid) -> None:
    urls = []
    for row in valid.values():
        for entry in row.entries:
            res, req = entry["resource"], entry["request"]
            ident = res["identifier"][0]
            url = f"{res['resourceType']}?identifier={ident['system']}|{ident['value']}"
            if req["method"] == "POST":  # the episode stub: created only if the episode is missing
                assert req == {"method": "POST", "url": "EpisodeOfCare", "ifNoneExist": url.split("?", 1)[1]}
                assert entry["fullUrl"] == episode_full_url(ident["system"], ident["value"])
                continue
            assert req == {"method": "PUT", "url": url}
            assert ident["system"].startswith(f"{ID}/")
            assert entry["fullUrl"].startswith("urn:uuid:")
            assert "id" not in res
            urls.append(req["url"])
    assert len(urls) == len(set(urls)) == 13


def test_every_resource_is_structurally_valid_r4(valid) -> None:
    for row in valid.values():
        for res in [row.patient, *(e["resource"] for e in row.entries)]:
            assert validate_resource(res) == [], res["resourceType"]


def test_output_is_deterministic(spec) -> None:
    def dump() -> bytes:
        _, rows = read_council_file(FIXTURES / "cld_valid.csv", spec)
        return orjson.dumps([(r.line, r.patient, r.entries, r.errors, r.warnings) for r in rows])
    assert dump() == dump()


def test_stream_inputs_read_like_the_file(spec) -> None:
    raw = (FIXTURES / "cld_valid.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # a BOM, as Excel writes it
    expected = [r.entries for r in read("cld_valid.csv", spec)[1]]
    from_bytes = [r.entries for r in read_council_file(io.BytesIO(raw), spec)[1]]
    from_text = [r.entries for r in read_council_file(io.StringIO(raw.decode("utf-8"), newline=""), spec)[1]]
    assert from_bytes == from_text == expected


# --------------------------------------------------------------------------- Request


def test_request_from_hospital_discharge(valid) -> None:
    row = valid[2]
    request = resource(row, "ServiceRequest")
    assert request["identifier"] == [{"system": f"{ID}/request", "value": "REQ-7781"}]
    assert request["status"] == "completed" and request["intent"] == "order"
    assert codes(request["category"][0]) == {("cld-request-route-of-access", "Discharge from Hospital"),
                                             ("Interweave-SocialCareContactReason", "HD")}
    assert request["subject"] == {"reference": "urn:gateway:patient"}
    assert request["authoredOn"] == "2025-03-12"
    assert request["performer"] == [LA_CODE]
    outcome = {e["url"]: e for e in request["extension"][0]["extension"]}
    assert codes(outcome["outcome"]["valueCodeableConcept"]) == {("cld-event-outcome", "Progress to reablement/ST-Max"),
                                                                 ("Interweave-SocialCareAssessmentOutcome", "PRO-R")}
    assert outcome["date"]["valueDate"] == "2025-03-13"
    assert "washing and dressing" in request["note"][0]["text"]
    assert ("cld-primary-support-reason", "Physical support: Personal care support") in codes(request["reasonCode"][0])


def test_the_request_owns_the_recovery_episode(valid) -> None:
    row = valid[2]
    episode_entry = next(e for e in row.entries if e["resource"]["resourceType"] == "EpisodeOfCare")
    episode = episode_entry["resource"]
    assert episode_entry["request"]["url"] == f"EpisodeOfCare?{MARGARET_EPISODE_QUERY}"
    assert episode_entry["fullUrl"] == MARGARET_EPISODE
    assert episode["status"] == "active"
    assert episode["type"][0]["coding"][0]["code"] == "R"  # Interweave service type: Reablement
    assert episode["managingOrganization"] == LA_CODE
    assert episode["period"] == {"start": "2025-03-12"}
    assert episode["patient"] == {"reference": "urn:gateway:patient"}
    assert episode["referralRequest"] == [{"reference": row.entries[0]["fullUrl"]}]


def test_a_request_without_an_episode_reference_opens_its_own_episode(valid) -> None:
    row = valid[8]  # NFA after information and advice, sent in Release 1 wording
    request, episode = resource(row, "ServiceRequest"), resource(row, "EpisodeOfCare")
    outcome = request["extension"][0]["extension"][0]["valueCodeableConcept"]
    assert outcome["coding"][0]["code"] == "NFA: Information and advice or signposting"
    assert outcome["text"] == "NFA - Information & Advice / Signposting only"
    assert request["status"] == "completed"
    assert episode["identifier"][0]["value"] == "LA00034567.REQ-7802"
    assert episode["status"] == "finished" and episode["period"] == {"start": "2025-03-01", "end": "2025-03-03"}


# --------------------------------------------------------------------------- Assessment, Review


def test_assessment_is_a_home_encounter_linked_to_the_episode_and_the_proposed_plan(valid) -> None:
    row = valid[3]
    encounter = resource(row, "Encounter")
    assert encounter["status"] == "finished"
    assert encounter["class"]["code"] == "HH"
    assert codes(encounter["type"][0]) == {("cld-assessment-type", "Short term assessment"),
                                           ("Interweave-SocialCareAssessmentType", "RA")}
    assert encounter["period"] == {"start": "2025-03-13", "end": "2025-03-14"}
    assert encounter["episodeOfCare"] == [{"reference": MARGARET_EPISODE}]
    assert encounter["serviceProvider"] == LA_CODE
    proposal = resource(row, "CarePlan")
    assert proposal["intent"] == "proposal" and proposal["status"] == "active"
    assert proposal["encounter"] == {"reference": row.entries[0]["fullUrl"]}
    assert proposal["category"][0]["coding"][0]["code"] == "reablement"
    assert proposal["supportingInfo"] == [{"reference": MARGARET_EPISODE}]


def test_review_by_telephone_is_virtual(valid) -> None:
    encounter = resource(valid[5], "Encounter")
    assert encounter["class"]["code"] == "VR"
    assert encounter["type"][0]["coding"][0]["code"] == "Review"
    assert {"text": "Review reason: Planned"} in encounter["reasonCode"]
    parts = {e["url"]: e for e in encounter["extension"][0]["extension"]}
    assert parts["outcomesAchieved"]["valueString"] == "Partially achieved"


# --------------------------------------------------------------------------- Service


def test_open_st_max_service_is_an_active_reablement_plan(valid) -> None:
    row = valid[4]
    assert [e["resource"]["resourceType"] for e in row.entries] == ["CarePlan", "EpisodeOfCare"]
    plan = resource(row, "CarePlan")
    assert plan["identifier"] == [{"system": f"{ID}/service", "value": "SVC-9902"}]
    assert plan["status"] == "active" and plan["intent"] == "plan"
    assert codes(plan["category"][0]) == {("cld-service-type", "Short term support: ST-Max"),
                                          ("Interweave-SocialCareServiceCategory", "STS-STMAX")}
    assert plan["period"] == {"start": "2025-03-14"}
    assert plan["supportingInfo"] == [{"reference": MARGARET_EPISODE}]
    detail = plan["activity"][0]["detail"]
    assert codes(detail["code"]) == {("cld-service-component", "Reablement"), ("Interweave-SocialCareServiceType", "R")}
    assert detail["status"] == "in-progress"
    assert detail["quantity"] == {"value": 14, "unit": "units per week", "system": "http://unitsofmeasure.org",
                                  "code": "/wk"}
    assert detail["performer"][0]["identifier"]["value"] == "1-101234567"
    assert "outcomeCodeableConcept" not in plan["activity"][0]


def test_decimal_cells_keep_their_written_precision(spec, tmp_path) -> None:
    """A council's "10.50 units per week" is 10.50 in the record, not 10.5 (FHIR decimal precision)."""
    from gateway.fhir.decimals import dumps

    lines = (FIXTURES / "cld_valid.csv").read_text(encoding="utf-8-sig").splitlines()
    fields = lines[0].split(",")
    changed = lines[3].split(",")
    assert "SVC-9902" in changed
    column = len(changed) - (len(fields) - fields.index("Planned_units_per_week"))  # the row has quoted commas
    assert changed[column] == "14"
    changed[column] = "10.50"
    (tmp_path / "units.csv").write_text("\n".join([lines[0], ",".join(changed)]) + "\n", encoding="utf-8")
    messages, rows = read_council_file(tmp_path / "units.csv", spec)
    plan = resource(list(rows)[0], "CarePlan")
    assert dumps(plan["activity"][0]["detail"]["quantity"]).startswith(b'{"value":10.50,')


def test_ended_service_carries_its_outcome(valid) -> None:
    plan = resource(valid[7], "CarePlan")
    assert plan["status"] == "completed"
    assert plan["period"] == {"start": "2025-02-21", "end": "2025-04-03"}
    activity = plan["activity"][0]
    assert codes(activity["outcomeCodeableConcept"][0]) == {("cld-event-outcome", "NFA: Support ended as planned"),
                                                            ("Interweave-SocialCareAssessmentOutcome", "SEP")}
    assert activity["detail"]["status"] == "completed"
    assert activity["detail"]["quantity"]["value"] == 10.5


def test_service_ended_by_hospital_admission_is_revoked(valid) -> None:
    plan = resource(valid[9], "CarePlan")
    assert plan["status"] == "revoked"
    assert plan["activity"][0]["detail"]["status"] == "stopped"
    # Release 1 wording of the service type maps to the Release 2 value
    assert plan["category"][0]["coding"][0]["code"] == "Short term support: ST-Max"
    assert plan["category"][0]["text"] == "Short Term Support: ST-Max"


def test_uk_dates_are_accepted_where_the_spec_allows_them(valid) -> None:
    assert resource(valid[6], "ServiceRequest")["authoredOn"] == "2025-02-20"


# --------------------------------------------------------------------------- Patient


def test_patient_as_the_council_knows_the_person(valid) -> None:
    patient = valid[2].patient
    nhs, local = patient["identifier"]
    assert nhs["system"] == "https://fhir.nhs.uk/Id/nhs-number" and nhs["value"] == "9990000107"
    assert nhs["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "02"  # present, not traced
    assert local["system"] == f"{ID}/person" and local["value"] == "LA00012345"
    assert local["assigner"] == LA_CODE
    assert patient["name"] == [{"use": "official", "family": "Holroyd", "given": ["Margaret", "Ann"]}]
    assert patient["gender"] == "female" and patient["birthDate"] == "1938-05-14"
    assert patient["address"] == [{"postalCode": "LS6 2QT"}]
    assert patient["generalPractitioner"][0]["identifier"]["value"] == "B86042"
    ethnic = patient["extension"][0]["valueCodeableConcept"]
    assert ethnic["coding"][0] == {"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland",
                                   "code": "A", "display": "White - British"}


def test_patient_codes_and_postcodes_are_normalised(valid) -> None:
    arthur = valid[6].patient
    assert arthur["gender"] == "male"  # NHS DD code 1
    assert arthur["address"] == [{"postalCode": "LS12 3AB"}]
    derek = valid[9].patient  # no NHS number, GP code sent as NULL
    assert [i["system"] for i in derek["identifier"]] == [f"{ID}/person"]
    assert "generalPractitioner" not in derek
    assert derek["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "99"


# --------------------------------------------------------------------------- bad input


def test_malformed_rows_are_rejected_whole_with_line_and_reason(spec) -> None:
    messages, rows = read("cld_malformed.csv", spec)
    assert messages == []
    rows_by_line = by_line(rows)
    assert rows_by_line[2].errors == [] and rows_by_line[2].entries
    expected = {
        3: "Event_Start_Date: '2025-02-31' is not a date",
        4: "NHS_Number: '9990000108' fails the NHS number Modulus 11 check",
        5: "Service_Type: 'Short term support: Long stay' is not a known code",
        6: "Event_Start_Date: required value missing",
        7: "Event_Type: 'Contact' is not one of",
    }
    for line, reason in expected.items():
        row = rows_by_line[line]
        assert row.entries == [] and row.patient is None
        assert any(e.startswith(reason) for e in row.errors), (line, row.errors)
    assert "Request_Route_of_Access: required value missing for a request row" in rows_by_line[6].errors


def test_an_unrecognised_method_is_a_warning_not_a_rejection(spec) -> None:
    row = by_line(read("cld_malformed.csv", spec)[1])[8]
    assert row.errors == []
    assert any("Method_of_Assessment: 'Carrier pigeon'" in w for w in row.warnings)
    assert resource(row, "Encounter")["class"]["code"] == "HH"  # the spec's default


def test_unknown_columns_are_reported_and_ignored(spec) -> None:
    messages, rows = read("cld_unknown_column.csv", spec)
    assert messages == ["warning: columns not in spec council-cld were ignored: Social_Worker, Locality"]
    assert all(r.errors == [] and r.entries for r in rows)


def test_missing_required_columns_fail_the_file(spec) -> None:
    messages, rows = read("cld_missing_column.csv", spec)
    assert messages == ["error: required columns missing from the header: Event_Type, Event_Start_Date"]
    assert rows == []


def test_partial_file_rejects_only_the_cut_off_row(spec) -> None:
    messages, rows = read("cld_partial.csv", spec)
    assert messages == []
    assert [r.line for r in rows if not r.errors] == [2, 3, 4]
    last = rows[-1]
    assert last.line == 5 and last.entries == []
    assert last.errors == ["row has 21 values but the header has 34 (a cut-off line or an unquoted delimiter)"]


def test_duplicated_rows_load_once_and_conflicting_rows_are_rejected(spec) -> None:
    rows = by_line(read("cld_duplicate.csv", spec)[1])
    assert rows[4].errors == [] and rows[4].entries == []
    assert rows[4].warnings == ["duplicate of line 3: identical row, loaded once"]
    assert rows[5].entries and rows[5].errors == []
    assert rows[6].errors == ["the same service event (SVC-9902) is on line 5 with different values; "
                              "which one is right cannot be told"]


def test_empty_file_is_an_error(spec) -> None:
    messages, rows = read_council_file(io.BytesIO(b""), spec)
    assert messages == ["error: the file is empty: no header row"] and list(rows) == []


# --------------------------------------------------------------------------- re-delivery


def test_redelivered_file_updates_the_same_resources(spec, valid) -> None:
    _, later = read("cld_redelivered.csv", spec)
    assert all(r.errors == [] for r in later)
    first = {e["request"]["url"]: e for r in valid.values() for e in r.entries if e["request"]["method"] == "PUT"}
    again = {e["request"]["url"]: e for r in later for e in r.entries if e["request"]["method"] == "PUT"}
    assert first.keys() == again.keys()
    assert all(first[u]["fullUrl"] == again[u]["fullUrl"] for u in first)
    service = again[f"CarePlan?identifier={ID}/service|SVC-9902"]["resource"]
    assert service["status"] == "completed" and service["period"]["end"] == "2025-04-25"
    unchanged = f"ServiceRequest?identifier={ID}/request|REQ-7781"
    assert first[unchanged]["resource"] == again[unchanged]["resource"]


# --------------------------------------------------------------------------- a second council


def test_second_council_is_onboarded_with_a_spec_file_only(spec) -> None:
    alt = load_spec(ROOT / "mappings" / "council-cld-alt.json")
    messages, rows = read_council_file(FIXTURES / "council_alt.csv", alt)
    rows = list(rows)
    assert messages == [] and [r.errors for r in rows] == [[], []]
    request, episode = (e["resource"] for e in rows[0].entries)
    plan = rows[1].entries[0]["resource"]
    wk = "https://fhir.activerecovery.example/Id/council/E08000036"
    assert request["identifier"] == [{"system": f"{wk}/request", "value": "C-55120"}]  # "Contact" row kind
    assert request["authoredOn"] == "2025-03-03"  # 03/03/2025
    assert episode["identifier"][0]["value"] == "WK-000981.CASE-7781"
    assert plan["identifier"] == [{"system": f"{wk}/service", "value": "P-22014"}]  # "Package" row kind
    assert plan["status"] == "active" and "end" not in plan["period"]  # N/A is a null value there
    assert plan["supportingInfo"] == [{"reference": episode_full_url(f"{wk}/episode", "WK-000981.CASE-7781")}]
    patient = rows[0].patient
    assert patient["name"][0] == {"use": "official", "family": "Brontë-Hughes", "given": ["Zoë"]}  # Windows-1252
    assert patient["birthDate"] == "1944-09-08" and patient["gender"] == "female"
    # the national layout's spec cannot read this file: only the spec differs
    messages, _ = read_council_file(FIXTURES / "council_alt.csv", spec)
    assert len(messages) == 1 and messages[0].startswith("error: ")


def test_identifier_values_are_escaped_in_conditional_urls() -> None:
    assert search_value("REQ-7781") == "REQ-7781"
    assert search_value("A|B, C") == "A%5C%7CB%5C%2C%20C"  # FHIR escapes \| and \, then percent-encoding
    assert conditional_url("CarePlan", f"{ID}/service", "SVC 1") == f"CarePlan?identifier={ID}/service|SVC%201"


# --------------------------------------------------------------------------- the column-spec engine


def _csv(spec, *rows: str) -> str:
    return ",".join(c.name for c in spec.columns) + "\n" + "".join(rows)


def test_line_numbers_count_physical_lines(spec) -> None:
    lines = (FIXTURES / "cld_valid.csv").read_text(encoding="utf-8-sig").splitlines()
    request = lines[1]
    multi_line = request.replace("REQ-7781", "REQ-7782").replace(
        "Referred by the St James's discharge team", '"Referred by the ward,\nsecond line"')
    bad_date = request.replace("REQ-7781", "REQ-7783").replace("2025-03-12", "12.03.2025")
    text = _csv(spec, request + "\n", "\n", multi_line + "\n", ",,,,\n", bad_date + "\n")
    rows = list(read_council_file(io.StringIO(text, newline=""), spec)[1])
    assert [(r.line, bool(r.errors)) for r in rows] == [(2, False), (4, False), (7, True)]
    assert rows[1].entries[0]["resource"]["note"][0]["text"].startswith("Referred by the ward,\nsecond line")


def test_a_column_named_twice_fails_the_file(spec) -> None:
    header = ",".join(c.name for c in spec.columns) + ",Event_Type\n"
    messages, _ = read_council_file(io.StringIO(header), spec)
    assert messages == ["error: columns named twice in the header: Event_Type"]


def test_spec_mistakes_fail_when_the_spec_is_loaded(tmp_path) -> None:
    from gateway.adapters.tabular.spec import spec_from_dict
    base = {"resourceType": "ColumnSpec", "id": "t", "adapter": "council",
            "eventKey": {"row": ["ref"]}, "columns": [{"name": "Ref", "target": "ref"}]}
    assert spec_from_dict(base, {}).by_target["ref"].type == "string"
    with pytest.raises(ValueError, match="unknown type"):
        spec_from_dict({**base, "columns": [{"name": "Ref", "target": "ref", "type": "datetime"}]}, {})
    with pytest.raises(ValueError, match="is not in mappings"):
        spec_from_dict({**base, "columns": [{"name": "Ref", "target": "ref", "type": "code",
                                              "conceptMap": "https://example.org/ConceptMap/none"}]}, {})
    with pytest.raises(ValueError, match="eventKey"):
        spec_from_dict({**base, "eventKey": {}}, {})
    with pytest.raises(ValueError, match="not a council layout"):
        read_council_file(io.StringIO("Ref\n1\n"), spec_from_dict(base, {}))
