"""CI: the whole conformance suite (conformance/suites/) against a real `gateway serve`, on both back ends.

Runs the command an integration tester would run; any failed assert fails this test, and the
runner's report (which assert, and why) is the failure message.
"""

from __future__ import annotations

import subprocess
import sys
from xml.etree import ElementTree as ET

from gateway.conformance.suite import SUITES


def test_suite_passes_against_the_gateway(base, tmp_path):
    junit = tmp_path / "conformance.xml"
    html = tmp_path / "conformance.html"
    run = subprocess.run([sys.executable, "-m", "gateway.cli", "conformance", "run", "--base", base,
                          "--junit", str(junit), "--html", str(html)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    suites = ET.parse(junit).getroot().findall("testsuite")
    names = {s.get("name") for s in suites}
    assert {"CapabilityStatement", "RestCrud", "Search", "Transaction", "Operations", "Profiles",
            "RecoveryWorkflow"} <= names
    assert all(s.get("failures") == "0" and s.get("errors") == "0" for s in suites)
    assert sum(int(s.get("tests")) for s in suites) >= 35
    assert "0 failed" in run.stdout and html.read_text().count("<h2 class='pass'>") == len(suites)


def test_suite_is_repeatable_on_the_same_server(base):
    """Every script makes its own data (ids the server assigns), so a second run passes too."""
    run = subprocess.run([sys.executable, "-m", "gateway.cli", "conformance", "run", "--base", base,
                          "--suite", "gateway"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_suite_file_is_a_valid_testscript():
    from gateway.conformance.testscript import load_scripts
    from gateway.fhir.structure.validate import validate_resource

    scripts = load_scripts(SUITES)
    assert len(scripts) >= 7
    for path, script in scripts:
        assert validate_resource(script) == [], path
    for path in SUITES.rglob("fixtures/*.json"):
        import re

        import orjson

        # ${name} variables are filled in by the runner; any id-shaped value stands in for them here
        text = re.sub(r"\$\{[A-Za-z0-9_-]+\}", "id-1", path.read_text())
        assert validate_resource(orjson.loads(text)) == [], path
