"""`$validate` over real HTTP (both back ends), and the per-profile write policy of a real server."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from conftest import GatewayProcess, drop_pg_schema, pg_schema_url

SD = "https://fhir.activerecovery.example/StructureDefinition/"
V3 = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PATHWAY = "https://fhir.activerecovery.example/CodeSystem/active-recovery-pathway"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def stay(tag: str, **changes) -> dict:
    enc = {
        "resourceType": "Encounter",
        "identifier": [{"system": "https://fhir.leedsth.nhs.uk/Id/hospital-provider-spell", "value": f"SP-{tag}",
                        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "VN"}]}}],
        "status": "finished", "class": {"system": V3, "code": "IMP"}, "subject": {"reference": "Patient/p1"},
        "period": {"start": "2025-03-01T10:15:00+00:00", "end": "2025-03-14T15:00:00+00:00"},
        "hospitalization": {"dischargeDisposition": {"coding": [{
            "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-DischargeDestinationEngland", "code": "19"}]}},
        "serviceProvider": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RR8"}},
    }
    enc.update(changes)
    return enc


def referral(tag: str, **changes) -> dict:
    sr = {"resourceType": "ServiceRequest", "identifier": [{"system": "urn:test", "value": tag}],
          "status": "active", "intent": "order", "authoredOn": "2025-03-14",
          "category": [{"coding": [{"system": PATHWAY, "code": "home-reablement"}]}],
          "code": {"coding": [{"system": "http://snomed.info/sct", "code": "306238000"}]},
          "subject": {"reference": "Patient/p1"}}
    sr.update(changes)
    return sr


def severities(outcome: dict, severity: str = "error") -> list[dict]:
    return [i for i in outcome["issue"] if i["severity"] == severity]


# --------------------------------------------------------------------------- $validate


def test_validate_type_level_valid_and_invalid(http, tag):
    r = http.post(f"Encounter/$validate?profile={SD}ActiveRecovery-Encounter-HospitalStay", json=stay(tag),
                  headers=FHIR_JSON)
    assert r.status_code == 200 and r.json()["resourceType"] == "OperationOutcome"
    assert severities(r.json()) == []
    assert r.json()["issue"][0]["diagnostics"] == "No issues detected during validation"

    bad = stay(tag, **{"class": {"system": V3, "code": "AMB"}})
    del bad["period"]["end"]
    r = http.post(f"Encounter/$validate?profile={SD}ActiveRecovery-Encounter-HospitalStay", json=bad,
                  headers=FHIR_JSON)
    assert r.status_code == 200, "an invalid resource is still a 200 OperationOutcome"
    errors = severities(r.json())
    assert {e["expression"][0] for e in errors} == {"Encounter.class", "Encounter"}
    assert any(e["code"] == "invariant" and e["diagnostics"].startswith("ar-hosp-1") for e in errors)


def test_validate_parameters_body_and_modes(http, tag):
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": referral(tag, category=[{"text": "reablement"}])},
        {"name": "mode", "valueCode": "create"},
        {"name": "profile", "valueUri": f"{SD}ActiveRecovery-ServiceRequest"}]}
    r = http.post("ServiceRequest/$validate", json=body, headers=FHIR_JSON)
    assert r.status_code == 200
    assert any("category:pathway" in e["diagnostics"] for e in severities(r.json()))

    r = http.post("ServiceRequest/$validate?mode=update", json=referral(tag), headers=FHIR_JSON)
    assert r.status_code == 200 and any(e["code"] == "required" for e in severities(r.json()))
    r = http.post("ServiceRequest/$validate?mode=bogus", json=referral(tag), headers=FHIR_JSON)
    assert r.status_code == 400


def test_validate_declared_profile_and_unknown_profile(http, tag):
    declared = referral(tag, meta={"profile": [f"{SD}ActiveRecovery-ServiceRequest"]}, intent="wish")
    r = http.post("ServiceRequest/$validate", json=declared, headers=FHIR_JSON)
    assert any(e["expression"] == ["ServiceRequest.intent"] for e in severities(r.json()))

    r = http.post("ServiceRequest/$validate?profile=http://example.org/no-such-profile", json=referral(tag),
                  headers=FHIR_JSON)
    assert r.status_code == 200
    assert any(e["code"] == "not-supported" and "no-such-profile" in e["diagnostics"] for e in severities(r.json()))


def test_validate_uses_a_profile_stored_on_the_server(http, tag):
    url = f"http://example.org/StructureDefinition/needs-note-{tag}"
    sd = {"resourceType": "StructureDefinition", "url": url, "name": "NeedsNote", "status": "draft",
          "kind": "resource", "abstract": False, "type": "ServiceRequest",
          "baseDefinition": f"{SD}ActiveRecovery-ServiceRequest", "derivation": "constraint",
          "differential": {"element": [{"id": "ServiceRequest.note", "path": "ServiceRequest.note", "min": 1}]}}
    assert http.post("StructureDefinition", json=sd, headers=FHIR_JSON).status_code == 201
    r = http.post(f"ServiceRequest/$validate?profile={url}", json=referral(tag), headers=FHIR_JSON)
    errors = severities(r.json())
    assert [e["expression"] for e in errors] == [["ServiceRequest.note"]], errors


def test_validate_instance_level(http, tag):
    created = http.post("Encounter", json=stay(tag), headers=FHIR_JSON).json()
    r = http.get(f"Encounter/{created['id']}/$validate", params={"profile": f"{SD}ActiveRecovery-Encounter-HomeVisit"})
    assert r.status_code == 200
    assert any(e["expression"] == ["Encounter.class"] for e in severities(r.json()))
    r = http.post(f"Encounter/{created['id']}/$validate?mode=delete")
    assert r.status_code == 200 and r.json()["issue"][0]["severity"] == "information"
    assert http.get("Encounter/no-such-id/$validate").status_code == 404
    r = http.post(f"Encounter/{created['id']}/$validate?mode=update", json={**stay(tag), "id": "other"},
                  headers=FHIR_JSON)
    assert any(e["expression"] == ["Encounter.id"] for e in severities(r.json()))


def test_validate_rejects_mismatched_type(http, tag):
    r = http.post("Patient/$validate", json=stay(tag), headers=FHIR_JSON)
    assert r.status_code == 400


def test_capability_statement_lists_profiles_and_validate(http):
    cs = http.get("metadata").json()
    by_type = {r["type"]: r for r in cs["rest"][0]["resource"]}
    assert f"{SD}ActiveRecovery-Patient" in by_type["Patient"]["supportedProfile"]
    assert by_type["Patient"]["profile"] == "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
    assert {f"{SD}ActiveRecovery-Encounter-HospitalStay", f"{SD}ActiveRecovery-Encounter-HubStay",
            f"{SD}ActiveRecovery-Encounter-HomeVisit"} <= set(by_type["Encounter"]["supportedProfile"])
    assert {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"} in \
        by_type["Observation"]["operation"]


def test_default_policy_warns_and_stores(http, tag):
    """Without configuration a declared profile is checked and a failure only logged (warn)."""
    bad = referral(tag, meta={"profile": [f"{SD}ActiveRecovery-ServiceRequest"]}, intent="wish")
    assert http.post("ServiceRequest", json=bad, headers=FHIR_JSON).status_code == 201


# --------------------------------------------------------------------------- policy on a configured server


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def strict_server(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"policy-{request.param}")
    policy = tmp / "policy.json"
    policy.write_text(json.dumps({
        "default": "warn",
        "profiles": {f"{SD}ActiveRecovery-ServiceRequest": "reject", f"{SD}ActiveRecovery-CarePlan": "reject",
                     f"{SD}ActiveRecovery-Patient": "off"},
        "apply": {"CarePlan": [f"{SD}ActiveRecovery-CarePlan"]}}))
    url = f"sqlite:///{tmp / 'gw.db'}" if request.param == "sqlite" else pg_schema_url("gwpolicy")
    server = GatewayProcess(url, tmp, extra_env={"GATEWAY_PROFILE_POLICY": str(policy)}).start()
    yield server
    server.stop()
    if request.param == "postgres":
        asyncio.run(drop_pg_schema(url))


def test_reject_policy_refuses_with_422_and_the_issues(strict_server, tag):
    with httpx.Client(base_url=strict_server.base, timeout=30) as c:
        bad = referral(tag, meta={"profile": [f"{SD}ActiveRecovery-ServiceRequest"]},
                       category=[{"coding": [{"system": PATHWAY, "code": "care-home"}]}])
        r = c.post("ServiceRequest", json=bad, headers=FHIR_JSON)
        assert r.status_code == 422
        issue = r.json()["issue"][0]
        assert issue["code"] == "code-invalid" and issue["expression"] == ["ServiceRequest.category[0]"]
        assert c.get("ServiceRequest", params={"identifier": f"urn:test|{tag}"}).json()["total"] == 0
        good = referral(tag, meta={"profile": [f"{SD}ActiveRecovery-ServiceRequest"]})
        assert c.post("ServiceRequest", json=good, headers=FHIR_JSON).status_code == 201
        # in a transaction the 422 fails the whole Bundle
        tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": good, "request": {"method": "POST", "url": "ServiceRequest"}},
            {"resource": bad, "request": {"method": "POST", "url": "ServiceRequest"}}]}
        assert c.post("", json=tx, headers=FHIR_JSON).status_code == 422


def test_configured_profile_applies_without_meta_profile(strict_server, tag):
    plan = {"resourceType": "CarePlan", "status": "active", "intent": "order", "subject": {"reference": "Patient/p1"},
            "identifier": [{"system": "urn:test", "value": tag}]}
    with httpx.Client(base_url=strict_server.base, timeout=30) as c:
        r = c.post("CarePlan", json=plan, headers=FHIR_JSON)
        assert r.status_code == 422
        assert {"CarePlan.intent", "CarePlan.category", "CarePlan.period"} <= {
            i["expression"][0] for i in r.json()["issue"] if i["severity"] == "error"}


def test_warn_and_off_store_the_resource(strict_server, tag):
    bad_stay = stay(tag, meta={"profile": [f"{SD}ActiveRecovery-Encounter-HospitalStay"]},
                    **{"class": {"system": V3, "code": "AMB"}})
    bad_patient = {"resourceType": "Patient", "meta": {"profile": [f"{SD}ActiveRecovery-Patient"]},
                   "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765918"}]}
    uk_core = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
    also_uk_core = {**bad_patient, "meta": {"profile": [f"{SD}ActiveRecovery-Patient", uk_core]}}
    with httpx.Client(base_url=strict_server.base, timeout=30) as c:
        assert c.post("Encounter", json=bad_stay, headers=FHIR_JSON).status_code == 201
        assert c.post("Patient", json=bad_patient, headers=FHIR_JSON).status_code == 201
        log = strict_server.log.read_text()
        assert "does not conform to its profiles (stored; policy warn)" in log and "Encounter.class" in log
        assert "ar-nhs-1" not in log, "ActiveRecovery-Patient is off: not checked at all"
        # declaring UK Core Patient as well (default policy warn) checks the NHS number: logged, stored
        assert c.post("Patient", json=also_uk_core, headers=FHIR_JSON).status_code == 201
    assert "ar-nhs-1" in strict_server.log.read_text()


def test_bad_policy_setting_is_an_error_not_ignored(tmp_path):
    """A mistyped policy must not silently turn checks off: every request fails, saying why."""
    server = GatewayProcess(f"sqlite:///{tmp_path / 'gw.db'}", tmp_path, extra_env={"GATEWAY_PROFILE_POLICY": "strict"})
    try:
        with pytest.raises(RuntimeError, match="GATEWAY_PROFILE_POLICY: 'strict' is not off|warn|reject"):
            server.start(timeout=8)
    finally:
        server.stop()
