"""NHS ADW notices through POST /fhir/$process-message, checked in the shared record."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from hl7_helpers import nhs_number

FIXTURES = Path(__file__).parent / "fixtures" / "adw"
NHS = "https://fhir.nhs.uk/Id/nhs-number"


class Case:
    """The three fixture notices of one case, with fresh ids, NHS number and message ids."""

    def __init__(self):
        self.nhs = nhs_number(uuid.uuid4().int % 10**6)
        self.uuids: dict[str, str] = {}

    def notice(self, name: str) -> bytes:
        text = (FIXTURES / name).read_text().replace("9434765919", self.nhs)
        return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                      lambda m: self.uuids.setdefault(m.group(0), str(uuid.uuid4())), text).encode()


def post(http, body: bytes, ctype: str = "application/fhir+xml"):
    return http.post("/$process-message", content=body, headers={"Content-Type": ctype})


def referral_of(http, patient_id: str) -> dict:
    b = http.get("/ServiceRequest", params={"subject": f"Patient/{patient_id}"}).json()
    assert b["total"] == 1, b
    return b["entry"][0]["resource"]


def test_assessment_discharge_withdrawal(http):
    case = Case()
    r = post(http, case.notice("assessment_notice.xml"))
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["type"] == "message"
    header = reply["entry"][0]["resource"]
    assert header["resourceType"] == "MessageHeader" and header["response"]["code"] == "ok"
    patients = http.get("/Patient", params={"identifier": f"{NHS}|{case.nhs}"}).json()
    assert patients["total"] == 1
    pid = patients["entry"][0]["resource"]["id"]
    sr = referral_of(http, pid)
    assert sr["status"] == "active" and sr["intent"] == "order"
    enc = http.get("/Encounter", params={"subject": f"Patient/{pid}"}).json()["entry"][0]["resource"]
    assert enc["status"] == "in-progress"

    again = post(http, case.notice("assessment_notice.xml"))
    assert again.json() == reply  # the same notice twice: same answer, nothing new
    assert referral_of(http, pid)["meta"]["versionId"] == sr["meta"]["versionId"]

    r = post(http, case.notice("discharge_notice.xml"))
    assert r.json()["entry"][0]["resource"]["response"]["code"] == "ok"
    enc = http.get(f"/Encounter/{enc['id']}").json()
    planned = [e for e in enc.get("extension", []) if e["url"].endswith("expected-discharge-date")]
    assert planned and planned[0]["valueDateTime"].startswith("2025-03-17")
    assert referral_of(http, pid)["occurrenceDateTime"].startswith("2025-03-17")

    r = post(http, case.notice("withdrawal_notice.xml"))
    assert r.json()["entry"][0]["resource"]["response"]["code"] == "ok"
    assert referral_of(http, pid)["status"] == "revoked"
    enc = http.get(f"/Encounter/{enc['id']}").json()
    assert not [e for e in enc.get("extension", []) if e["url"].endswith("expected-discharge-date")]


def test_json_form_is_accepted(http):
    case = Case()
    r = post(http, case.notice("assessment_notice.json"), "application/fhir+json")
    assert r.status_code == 200 and r.json()["entry"][0]["resource"]["response"]["code"] == "ok"
    assert http.get("/Patient", params={"identifier": f"{NHS}|{case.nhs}"}).json()["total"] == 1


def test_bad_nhs_number_is_rejected_in_the_response(http):
    r = post(http, Case().notice("bad_nhs_number.xml"))
    assert r.status_code == 200
    header = r.json()["entry"][0]["resource"]
    assert header["response"]["code"] == "fatal-error"
    outcome = [e["resource"] for e in r.json()["entry"] if e["resource"]["resourceType"] == "OperationOutcome"][0]
    assert "NHS" in str(outcome)


@pytest.mark.parametrize("name", ["doctype_entity.xml", "not_message_bundle.xml"])
def test_unreadable_notices_are_400(http, name):
    r = post(http, (FIXTURES / name).read_bytes())
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    assert "root:" not in r.text
