"""The hospital story through the real pipeline (POST /hl7v2), checked in the FHIR store.

Admit → transfer → discharge → cancel discharge → re-discharge; out-of-order; duplicates; merge.
Fixture messages are personalised per test (NHS number, MRN, spell, control ids) so tests sharing
one server never touch each other's patients.
"""

from __future__ import annotations

import itertools
import re
import random
from pathlib import Path

import httpx
import pytest

from hl7_helpers import ack_code, nhs_number

FIXTURES = Path(__file__).parent / "fixtures" / "hl7v2"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
_counter = itertools.count(random.randint(1, 10**6))


class Person:
    def __init__(self):
        self.k = next(_counter)
        self.nhs = nhs_number(self.k)
        self.spell = f"SPX{self.k}"

    def message(self, name: str, control_suffix: str = "", replace: dict | None = None) -> bytes:
        text = "\r".join(l for l in re.split(r"\r\n|\r|\n", (FIXTURES / name).read_text()) if l)
        text = (text.replace("9998219930", self.nhs).replace("LTH1102938", f"LTX{self.k}")
                .replace("SPRR820250777", self.spell))
        for line in text.split("\r"):
            if line.startswith("MSH"):
                cid = line.split("|")[9]
                text = text.replace(f"|{cid}|", f"|{cid}-{self.k}{control_suffix}|", 1)
        for old, new in (replace or {}).items():
            text = text.replace(old, new)
        return text.encode()


def post(root: str, message: bytes) -> str:
    r = httpx.post(f"{root}/hl7v2", content=message, headers={"Content-Type": "x-application/hl7-v2+er7"})
    assert r.status_code == 200
    return r.text


@pytest.fixture
def root(base):
    return base.removesuffix("/fhir")


def encounters(http, person) -> list[dict]:
    b = http.get("/Encounter", params={"identifier": person.spell}).json()
    return [e["resource"] for e in b.get("entry", [])]


def referrals(http, patient_id: str) -> list[dict]:
    b = http.get("/ServiceRequest", params={"subject": f"Patient/{patient_id}"}).json()
    return [e["resource"] for e in b.get("entry", [])]


def patient_of(http, person) -> dict:
    b = http.get("/Patient", params={"identifier": f"{NHS}|{person.nhs}"}).json()
    assert b["total"] == 1, b
    return b["entry"][0]["resource"]


def test_admit_transfer_discharge_cancel_redischarge(http, root):
    p = Person()
    assert ack_code(post(root, p.message("story_01_a01_admit.hl7"))) == "AA"
    [enc] = encounters(http, p)
    assert enc["status"] == "in-progress" and "end" not in enc.get("period", {})
    pat = patient_of(http, p)
    assert enc["subject"]["reference"] == f"Patient/{pat['id']}"
    assert pat["name"][0]["family"].upper() == "SUTCLIFFE"

    assert ack_code(post(root, p.message("story_02_a02_transfer.hl7"))) == "AA"
    [enc] = encounters(http, p)
    assert "ELDERLY CARE 3" in str(enc["location"][-1]).upper()

    assert ack_code(post(root, p.message("story_03_a03_discharge.hl7"))) == "AA"
    [enc] = encounters(http, p)
    assert enc["status"] == "finished" and enc["period"]["end"].startswith("2025-04-09T11:00")
    assert enc["hospitalization"]["dischargeDisposition"]

    assert ack_code(post(root, p.message("story_04_a13_cancel_discharge.hl7"))) == "AA"
    [enc] = encounters(http, p)
    assert enc["status"] == "in-progress" and "end" not in enc.get("period", {})

    assert ack_code(post(root, p.message("story_05_a03_redischarge.hl7"))) == "AA"
    [enc] = encounters(http, p)
    assert enc["status"] == "finished" and enc["period"]["end"].startswith("2025-04-11T15:30")
    # discharge to local authority residential care (65) → referral to an Active Recovery hub bed
    [sr] = referrals(http, pat["id"])
    assert sr["status"] == "active" and sr["intent"] == "order"
    assert sr["encounter"]["reference"] == f"Encounter/{enc['id']}"
    assert sr["occurrenceDateTime"].startswith("2025-04-11")
    # one patient, one encounter, after five messages
    assert http.get("/Patient", params={"identifier": f"{NHS}|{p.nhs}"}).json()["total"] == 1
    # every version carries a Provenance pointing back at its inbox entry
    provs = http.get("/Provenance", params={"target": f"Encounter/{enc['id']}"}).json()
    assert provs["total"] >= 5


def test_cancel_discharge_revokes_referral(http, root):
    p = Person()
    post(root, p.message("story_01_a01_admit.hl7"))
    post(root, p.message("story_05_a03_redischarge.hl7"))
    pat = patient_of(http, p)
    assert [s["status"] for s in referrals(http, pat["id"])] == ["active"]
    later = p.message("story_04_a13_cancel_discharge.hl7", "L",
                      {"20250409120500": "20250412090000"})
    assert ack_code(post(root, later)) == "AA"
    assert [s["status"] for s in referrals(http, pat["id"])] == ["revoked"]
    [enc] = encounters(http, p)
    assert enc["status"] == "in-progress"


def test_discharge_before_admit_yields_one_finished_encounter(http, root):
    p = Person()
    assert ack_code(post(root, p.message("story_03_a03_discharge.hl7"))) == "AA"
    assert ack_code(post(root, p.message("story_01_a01_admit.hl7"))) == "AA"
    [enc] = encounters(http, p)
    assert enc["status"] == "finished"
    assert enc["period"]["start"].startswith("2025-04-01") and enc["period"]["end"].startswith("2025-04-09")


def test_same_message_twice_changes_nothing(http, root):
    p = Person()
    msg = p.message("story_05_a03_redischarge.hl7")
    first = post(root, msg)
    enc1 = encounters(http, p)[0]
    hist1 = http.get("/_history", params={"_count": "1"}).json()["total"]
    second = post(root, msg)
    assert first == second
    assert http.get("/_history", params={"_count": "1"}).json()["total"] == hist1
    assert encounters(http, p)[0]["meta"] == enc1["meta"]


def test_merge_links_records_and_moves_references(http, root):
    survivor, retired = Person(), Person()
    post(root, survivor.message("story_01_a01_admit.hl7"))
    post(root, retired.message("story_01_a01_admit.hl7"))
    old = patient_of(http, retired)
    [old_enc] = encounters(http, retired)
    merge = (FIXTURES / "adt_a40_v24.hl7").read_text()
    merge = (merge.replace("9991590838", survivor.nhs).replace("LTH5520018^^^RR8^MR~", f"LTX{survivor.k}^^^RR8^MR~")
             .replace("MRG|T5520018^^^RR8^MR", f"MRG|LTX{retired.k}^^^RR8^MR")
             .replace("RR824A40000033", f"MERGE{survivor.k}"))
    assert ack_code(post(root, merge.encode())) == "AA"
    new = patient_of(http, survivor)
    old_now = http.get(f"/Patient/{old['id']}").json()
    assert old_now["active"] is False
    assert {"other": {"reference": f"Patient/{new['id']}"}, "type": "replaced-by"} in [
        {"other": {"reference": l["other"]["reference"]}, "type": l["type"]} for l in old_now["link"]]
    assert any(l["type"] == "replaces" and l["other"]["reference"] == f"Patient/{old['id']}" for l in new["link"])
    moved = http.get(f"/Encounter/{old_enc['id']}").json()
    assert moved["subject"]["reference"] == f"Patient/{new['id']}"
    everything = http.get(f"/Patient/{new['id']}/$everything").json()
    assert old_enc["id"] in {e["resource"]["id"] for e in everything["entry"]}


def test_bad_nhs_number_gets_ae_naming_pid3(http, root):
    p = Person()
    bad = p.message("story_01_a01_admit.hl7", replace={p.nhs: p.nhs[:-1] + str((int(p.nhs[-1]) + 1) % 10)})
    ack = post(root, bad)
    assert ack_code(ack) == "AE"
    err = [s for s in ack.split("\r") if s.startswith("ERR")][0]
    assert "PID^1^3" in err and "102" in err
    assert encounters(http, p) == []


def test_unknown_event_and_missing_pid(http, root):
    p = Person()
    msg = p.message("story_01_a01_admit.hl7").decode()
    unknown = msg.replace("ADT^A01^ADT_A01", "ADT^A99^ADT_A01")
    ack = post(root, unknown.encode())
    assert ack_code(ack) == "AE" and "201" in ack
    no_pid = "\r".join(s for s in msg.split("\r") if not s.startswith("PID")).replace("-" + str(p.k), f"-{p.k}np")
    ack = post(root, no_pid.encode())
    assert ack_code(ack) == "AE" and "PID" in ack
