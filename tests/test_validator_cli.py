"""`gateway validate FILE...`: offline checks of partner samples (JSON and XML), exit code 1 on errors."""

from __future__ import annotations

import json
import subprocess
import sys

from gateway.fhir.xml import resource_to_xml

SD = "https://fhir.activerecovery.example/StructureDefinition/"
GOOD = {"resourceType": "Patient", "meta": {"profile": [f"{SD}ActiveRecovery-Patient"]},
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}], "gender": "male"}
BAD = {**GOOD, "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765918"}]}


def gateway_validate(*args):
    return subprocess.run([sys.executable, "-m", "gateway.cli", "validate", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_valid_json_and_xml(tmp_path):
    (tmp_path / "good.json").write_text(json.dumps(GOOD))
    (tmp_path / "good.xml").write_bytes(resource_to_xml(GOOD))
    run = gateway_validate(tmp_path / "good.json", tmp_path / "good.xml")
    assert run.returncode == 0, run.stdout
    assert "2 valid, 0 with errors" in run.stdout


def test_errors_give_exit_code_1_with_the_issue(tmp_path):
    (tmp_path / "good.json").write_text(json.dumps(GOOD))
    (tmp_path / "bad.xml").write_bytes(resource_to_xml(BAD))
    (tmp_path / "broken.json").write_text("{not json")
    run = gateway_validate(tmp_path / "good.json", tmp_path / "bad.xml", tmp_path / "broken.json")
    assert run.returncode == 1
    assert "bad.xml: Patient INVALID" in run.stdout and "ar-nhs-1" in run.stdout
    assert "Patient.identifier[0].value" in run.stdout
    assert "broken.json: ERROR cannot be read" in run.stdout
    assert "1 valid, 2 with errors" in run.stdout


def test_profile_option_and_bundle_entries(tmp_path):
    plain = {k: v for k, v in BAD.items() if k != "meta"}
    (tmp_path / "plain.json").write_text(json.dumps(plain))
    assert gateway_validate(tmp_path / "plain.json").returncode == 0, "structure only: valid"
    run = gateway_validate("--profile", f"{SD}ActiveRecovery-Patient", tmp_path / "plain.json")
    assert run.returncode == 1 and "ar-nhs-1" in run.stdout
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": GOOD}, {"resource": BAD}]}
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    run = gateway_validate(tmp_path / "bundle.json")
    assert run.returncode == 1 and "Bundle.entry[1].resource.identifier[0].value" in run.stdout
