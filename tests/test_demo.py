"""`gateway demo`: a synthetic city loaded through the real adapters, checked from the outside.

The command runs as an operator would run it (a subprocess, its own SQLite data dir); the result
is read back over HTTP from a real `gateway serve` on that data dir.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import httpx
import pytest

from conftest import GatewayProcess

ROOT = Path(__file__).resolve().parent.parent
NHS = "https://fhir.nhs.uk/Id/nhs-number"
REVIEW = "https://fhir.activerecovery.example/CodeSystem/identity-review|possible-duplicate"
TYPES = ("Patient", "Encounter", "ServiceRequest", "EpisodeOfCare", "CarePlan", "Goal", "Observation", "Procedure",
         "Condition", "Provenance")


def demo(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run([sys.executable, "-m", "gateway.cli", "demo", "--no-serve", "--people", "40",
                           "--data-dir", str(data_dir), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def snapshot(server: GatewayProcess) -> dict:
    with httpx.Client(base_url=server.base, timeout=60) as http:
        out = {t: http.get(f"/{t}", params={"_summary": "count"}).json()["total"] for t in TYPES}
        out["versions"] = http.get("/_history", params={"_count": "1"}).json()["total"]
        out["inbox"] = len(httpx.get(server.base.removesuffix("/fhir") + "/inbox", params={"_count": "500"}).json()["entries"])
    return out


def files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def nhs_valid(number: str) -> bool:
    total = sum(int(d) * w for d, w in zip(number[:9], range(10, 1, -1)))
    check = 11 - total % 11
    return (0 if check == 11 else check) == int(number[9]) and check != 10


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    data = tmp_path_factory.mktemp("demo")
    first = demo(data)
    assert first.returncode == 0, first.stdout + first.stderr
    return data, first


def test_demo_loads_everything_through_the_adapters(loaded):
    data, run = loaded
    out = run.stdout
    assert re.search(r"hospital: (\d+) messages, ACK AA \1\b", out), out
    assert re.search(r"council: .* (\d+) rows read, \1 loaded .* 0 rejected", out), out
    assert re.search(r"community: .* (\d+) rows read, \1 loaded .* 0 rejected", out), out
    assert "WARNING" not in run.stderr
    folder = data / "demo-input"
    assert len(list((folder / "hl7v2").glob("*.hl7"))) >= 80
    assert len(list((folder / "council").glob("*.csv"))) == 1 and len(list((folder / "community").glob("*.csv"))) == 1


def test_demo_people_look_like_the_city(loaded):
    data, _ = loaded
    folder = data / "demo-input"
    ages, postcodes, numbers, destinations = [], set(), set(), set()
    for path in (folder / "hl7v2").glob("*.hl7"):
        segs = {s.split("|")[0]: s.split("|") for s in path.read_bytes().decode().split("\r") if s}
        pid, pv1 = segs["PID"], segs["PV1"]
        nhs = next(x.split("^")[0] for x in pid[3].split("~") if x.endswith("^NH"))
        numbers.add(nhs)
        born = date(int(pid[7][:4]), int(pid[7][4:6]), int(pid[7][6:8]))
        admitted = date(int(pv1[44][:4]), int(pv1[44][4:6]), int(pv1[44][6:8]))
        ages.append(admitted.year - born.year - ((admitted.month, admitted.day) < (born.month, born.day)))
        postcodes.add(pid[11].split("^")[4])
        if len(pv1) > 37 and pv1[37]:
            destinations.add(pv1[37])
    assert len(numbers) == 40
    assert all(n[0] in "46" and len(n) == 10 and nhs_valid(n) for n in numbers)
    assert min(ages) >= 65 and max(ages) <= 98
    assert all(re.fullmatch(r"LS([1-9]|1\d|2[0-9]) \d[A-Z]{2}", p) for p in postcodes), postcodes
    assert {"19"} < destinations  # home and at least one other destination (care home / council bed)
    council = list(csv.DictReader((folder / "council").glob("*.csv").__next__().open(encoding="utf-8-sig")))
    assert {r["Event_Type"] for r in council} == {"Request", "Assessment", "Service", "Review"}
    assert any(not r["NHS_Number"] for r in council), "some council records arrive without an NHS number"
    community = list(csv.DictReader((folder / "community").glob("*.csv").__next__().open(encoding="utf-8-sig")))
    assert {r["Record_Type"] for r in community} == {"CYP101", "CYP201", "CYP202", "CYP004"}


def test_printed_patient_crosses_all_three_sources_and_rerun_changes_nothing(loaded):
    data, first = loaded
    urls = re.findall(r"http://127\.0\.0\.1:8080/patients/([A-Za-z0-9\-.]+)", first.stdout)
    assert len(urls) == 1, first.stdout
    pid = urls[0]
    before_files = files(data / "demo-input")
    server = GatewayProcess(f"sqlite:///{data / 'gateway.db'}", data).start()
    try:
        everything = httpx.get(f"{server.base}/Patient/{pid}/$everything", timeout=60).json()
        resources = [e["resource"] for e in everything["entry"]]
        systems = {i.get("system", "") for r in resources for i in r.get("identifier", [])}
        provenance = [p["entity"][0]["what"]["display"] for p in resources if p["resourceType"] == "Provenance"]
        assert any(s.startswith("https://fhir.leedsth.nhs.uk/Id/") for s in systems)  # hospital MRN / spell
        assert any("/Id/discharge-referral" in s for s in systems)  # the referral the discharge raised
        assert any("/Id/council/" in s for s in systems) and any("/Id/community/" in s for s in systems)
        assert any(d.startswith("HL7 v2 ADT^A03") for d in provenance)
        assert any(d.startswith("council file") for d in provenance) and any(d.startswith("community file") for d in provenance)
        patient = resources[0]
        assert any(i["system"] == NHS for i in patient["identifier"])
        page = httpx.get(f"{server.base.removesuffix('/fhir')}/patients/{pid}")
        assert page.status_code == 200 and all(b in page.text for b in ("badge-hospital", "badge-council", "badge-community"))
        # the deliberate council records without an NHS number are kept apart and listed for review
        review = httpx.get(f"{server.base}/Patient", params={"_tag": REVIEW}).json()
        assert review["total"] >= 2
        assert all(any(l["type"] == "seealso" for l in e["resource"].get("link", [])) for e in review["entry"])
        before = snapshot(server)
    finally:
        server.stop()
    again = demo(data)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 resources created, 0 updated" in again.stdout
    assert f"/patients/{pid}" in again.stdout
    assert files(data / "demo-input") == before_files  # same seed, byte-identical files
    server = GatewayProcess(f"sqlite:///{data / 'gateway.db'}", data).start()
    try:
        assert snapshot(server) == before
    finally:
        server.stop()


def test_another_seed_makes_other_people(tmp_path):
    run = demo(tmp_path, "--people", "5", "--seed", "99")
    assert run.returncode == 0, run.stdout + run.stderr
    other = demo(tmp_path / "b", "--people", "5", "--seed", "7")
    assert other.returncode in (0, 1)
    a = files(tmp_path / "demo-input")
    b = files(tmp_path / "b" / "demo-input")
    assert set(a.values()) != set(b.values())
