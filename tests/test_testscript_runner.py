"""The TestScript runner against a real gateway: scripts that pass, and scripts that must fail and say why."""

from __future__ import annotations

import json
import subprocess
import sys
from xml.etree import ElementTree as ET

import pytest

from gateway.conformance.testscript import TestScriptRunner
from gateway.conformance.testscript import report

OPS = "http://terminology.hl7.org/CodeSystem/testscript-operation-codes"
SD = "https://fhir.activerecovery.example/StructureDefinition/"


def op(code, **kw):
    return {"operation": {"type": {"system": OPS, "code": code}, "encodeRequestUrl": True, **kw}}


def check(**kw):
    return {"assert": {"warningOnly": False, **kw}}


def script(tests, *, fixtures=None, contained=None, variables=None, setup=None, teardown=None, profiles=None):
    s = {"resourceType": "TestScript", "url": "http://example.org/TestScript/t", "name": "T", "status": "draft",
         "test": [{"name": name, "action": actions} for name, actions in tests]}
    if contained:
        s["contained"] = contained
    if fixtures:
        s["fixture"] = fixtures
    if variables:
        s["variable"] = variables
    if setup:
        s["setup"] = {"action": setup}
    if teardown:
        s["teardown"] = {"action": teardown}
    if profiles:
        s["profile"] = profiles
    return s


def patient(tag, **extra):
    return {"resourceType": "Patient", "id": "pat", "identifier": [{"system": "urn:test", "value": tag}],
            "name": [{"family": "Runner"}], "gender": "female", **extra}


def fixture(fid, ref, auto=False):
    return {"id": fid, "autocreate": auto, "autodelete": auto, "resource": {"reference": ref}}


@pytest.fixture
def runner(base):
    return TestScriptRunner(base)


def failures(result):
    return [(t.name, a.label, a.message) for t in [result.setup, *result.tests] if t for a in t.failures]


def test_a_passing_script(runner, tag):
    s = script([("create and read", [
        op("create", sourceId="p", responseId="created"),
        check(response="created"), check(headerField="Location", operator="notEmpty"),
        op("read", targetId="p", responseId="read"),
        check(response="okay"), check(resource="Patient"), check(contentType="json"),
        check(expression="name.family", value="Runner"),
        check(expression="identifier.value = '${tag}'"),
        check(minimumId="p"),
        check(compareToSourceId="p", compareToSourceExpression="identifier.value"),
        op("search", resource="Patient", params="?identifier=urn:test|${tag}"),
        check(expression="total", value="1"), check(responseCode="200,201", operator="in"),
        op("vread", targetId="p"), check(response="okay"),
        op("history", targetId="p"), check(expression="entry.count()", value="1"),
    ])], contained=[patient(tag)], fixtures=[fixture("p", "#pat")],
        variables=[{"name": "tag", "defaultValue": tag}],
        teardown=[op("delete", targetId="p")])
    result = runner.run(s)
    assert result.passed, failures(result)
    assert result.counts() == (1, 0)


def test_wrong_status_fails_and_says_why(runner, tag):
    s = script([("read missing", [
        op("read", resource="Patient", params="/no-such-patient-" + tag),
        check(response="okay", label="expects 200"),
        check(expression="true", label="never reached"),
    ])])
    result = runner.run(s)
    assert not result.passed
    [(test, label, message)] = failures(result)
    assert label == "expects 200"
    assert "expected HTTP 200 (okay)" in message and "got 404" in message
    assert "is not known" in message, "the server's OperationOutcome diagnostics are quoted"
    assert [a.label for a in result.tests[0].actions][-1] == "expects 200", "the test stops at its first failure"


def test_failing_fhirpath_fails_and_says_why(runner, tag):
    s = script([("fhirpath", [
        op("create", sourceId="p"), check(response="created"),
        check(expression="name.family", value="Someone Else", label="family name"),
    ]), ("boolean", [
        op("read", targetId="p"), check(expression="gender = 'male' and birthDate.exists()", label="male with birth date"),
    ]), ("bad syntax", [
        op("read", targetId="p"), check(expression="name.family = ", label="broken expression"),
    ])], contained=[patient(tag)], fixtures=[fixture("p", "#pat")])
    result = runner.run(s)
    got = {label: message for _, label, message in failures(result)}
    assert "expected 'Someone Else', found Runner" in got["family name"]
    assert "gender = 'male' and birthDate.exists()" in got["male with birth date"]
    assert "expected true, found [false]" in got["male with birth date"]
    assert "Unexpected" in got["broken expression"]
    assert result.counts() == (0, 3)


def test_warning_only_does_not_fail(runner, tag):
    s = script([("warn", [op("capabilities"), check(expression="fhirVersion", value="5.0.0", warningOnly=True),
                          check(response="okay")])])
    result = runner.run(s)
    assert result.passed
    assert [a.warning_only and not a.passed for a in result.tests[0].actions if a.kind == "assert"] == [True, False]


def test_failed_setup_skips_the_tests_and_teardown_still_runs(runner, tag):
    s = script([("never runs", [op("capabilities"), check(response="okay")])],
               setup=[op("read", resource="Patient", params="/missing-" + tag), check(response="okay")],
               teardown=[op("capabilities")], contained=[patient(tag)], fixtures=[fixture("p", "#pat")])
    result = runner.run(s)
    assert not result.passed
    assert result.tests[0].skipped and result.counts() == (0, 2)
    assert result.teardown.actions and result.teardown.actions[0].passed


def test_variables_from_headers_and_expressions(runner, tag):
    s = script([("variables", [
        op("create", sourceId="p", responseId="created"), check(response="created"),
        op("read", url="${location}"), check(response="okay"),
        check(expression="id", value="${pid}"),
        op("read", resource="Patient", params="/${pid}", requestHeader=[{"field": "If-None-Match", "value": "${etag}"}]),
        check(response="notModified"),
    ])], contained=[patient(tag)], fixtures=[fixture("p", "#pat")],
        variables=[{"name": "location", "headerField": "Location", "sourceId": "created"},
                   {"name": "etag", "headerField": "ETag", "sourceId": "created"},
                   {"name": "pid", "expression": "Patient.id", "sourceId": "created"}])
    result = runner.run(s)
    assert result.passed, failures(result)


def test_fixture_files_autocreate_and_xml(runner, tag, tmp_path):
    from gateway.fhir.xml import resource_to_xml

    (tmp_path / "fixtures").mkdir()
    (tmp_path / "fixtures" / "p.xml").write_bytes(resource_to_xml(patient(tag)))
    s = script([("autocreated", [
        op("read", targetId="p", accept="xml"), check(response="okay"), check(contentType="xml"),
        check(expression="identifier.value", value=tag)])],
        fixtures=[fixture("p", "fixtures/p.xml", auto=True)])
    path = tmp_path / "script.json"
    path.write_text(json.dumps(s))
    result = runner.run(s, path)
    assert result.passed, failures(result)
    assert any("autodelete" in a.label for a in result.teardown.actions)

    missing = script([("x", [])], fixtures=[fixture("q", "fixtures/nope.json")])
    result = runner.run(missing, path)
    assert not result.passed and "nope.json not found" in result.error


def test_compare_minimum_and_profile_asserts_fail_with_reasons(runner, tag):
    other = patient(tag, id="other", name=[{"family": "Different"}])
    bare = {"resourceType": "Patient", "id": "bare", "name": [{"family": "NoIdentifier"}]}
    s = script([("compare", [
        op("create", sourceId="p"), op("read", targetId="p"),
        check(compareToSourceId="other", compareToSourceExpression="name.family", label="same family")]),
        ("minimum", [op("read", targetId="p"), check(minimumId="other", label="has other's content")]),
        ("profile", [op("read", targetId="p"), check(validateProfileId="ar-patient", label="AR patient ok"),
                     op("create", sourceId="bare"), check(validateProfileId="ar-patient", label="AR patient")]),
        ("unsupported", [op("read", targetId="p"), check(path="fhir:Patient/fhir:name", label="xpath")])],
        contained=[patient(tag), other, bare],
        fixtures=[fixture("p", "#pat"), fixture("other", "#other"), fixture("bare", "#bare")],
        profiles=[{"id": "ar-patient", "reference": f"{SD}ActiveRecovery-Patient"}])
    result = runner.run(s)
    got = {label: message for _, label, message in failures(result)}
    assert "has ['Runner'], other has ['Different']" in got["same family"]
    assert "Patient.name[0] = " in got["has other's content"] and "Different" in got["has other's content"]
    assert "AR patient ok" not in got, "only a warning (no NHS number): conforms"
    assert "does not conform to" in got["AR patient"] and "Patient.identifier: minimum required = 1" in got["AR patient"]
    assert "not supported" in got["xpath"]


def test_reports_junit_and_html(runner, tag, tmp_path):
    good = script([("ok", [op("capabilities"), check(response="okay")])])
    bad = script([("bad", [op("capabilities"), check(response="gone", label="wants 410")])])
    results = [runner.run(good), runner.run(bad)]
    report.junit(results, tmp_path / "j.xml")
    report.html_report(results, tmp_path / "r.html")
    root = ET.parse(tmp_path / "j.xml").getroot()
    suites = root.findall("testsuite")
    assert [s.get("failures") for s in suites] == ["0", "1"]
    failure = suites[1].find("testcase/failure")
    assert "wants 410" in failure.get("message") and "got 200" in failure.get("message")
    page = (tmp_path / "r.html").read_text()
    assert "1 passed, 1 failed" in page and "wants 410" in page
    assert report.text(results).splitlines()[-1] == "1 passed, 1 failed"


def test_cli_exit_codes(base, tag, tmp_path):
    bad = script([("bad", [op("capabilities"), check(expression="fhirVersion", value="3.0.2", label="STU3?")])])
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    run = subprocess.run([sys.executable, "-m", "gateway.cli", "conformance", "run", "--base", base,
                          "--suite", str(tmp_path / "bad.json"), "--junit", str(tmp_path / "j.xml")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "STU3?" in run.stdout and "expected '3.0.2', found 4.0.1" in run.stdout
    assert (tmp_path / "j.xml").exists()
    missing = subprocess.run([sys.executable, "-m", "gateway.cli", "conformance", "run", "--base", base,
                              "--suite", "no-such-suite"], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "no suite 'no-such-suite'" in missing.stdout
