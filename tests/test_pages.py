"""The shared history page and the search page, on a real `gateway serve`, in Debian's Chromium.

One person's Active Recovery journey is sent through the real inbound channels: the hospital's
ADT A01 and A03 (home, reablement flag, so a referral is raised) over `POST /hl7v2`, the council's
CLD rows (Request, Assessment, Service, Review) and community therapy's CSDS rows (referral,
visits, activities, care plan with goals, discharge) over `POST /ingest/...`. Then a headless
Chromium, driven by playwright with the machine's `/usr/bin/chromium` (no browser download),
reads the pages as a ward nurse would. Screenshots go to `test-artifacts/`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import uuid
from datetime import date, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from hl7_helpers import ack_code, nhs_number

ROOT = Path(__file__).resolve().parent.parent
FIX = Path(__file__).parent / "fixtures"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("GATEWAY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
NHS = "https://fhir.nhs.uk/Id/nhs-number"
SECURITY = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


class Journey:
    """One invented person, unique per test session: Edith Ashcroft of Bramley, LS13."""

    def __init__(self):
        self.k = uuid.uuid4().int % 10**6
        self.nhs = nhs_number(700000 + self.k)
        self.mrn = f"LTH{self.k:07d}"
        self.spell = f"SPPG{self.k:07d}"
        self.council_id = f"LA{self.k:06d}77"
        self.community_id = f"8{self.k:06d}11"
        self.family, self.given = "Ashcroft", "Edith"
        self.postcode = "LS13 2QH"

    def adt(self, event: str, when: str, pv1_tail: str, extra: list[str] = ()) -> bytes:
        structure = {"A01": "ADT_A01", "A03": "ADT_A03"}[event]
        segs = [
            f"MSH|^~\\&|PAS|RR8|ROUTE|ACTIVE-RECOVERY|{when}||ADT^{event}^{structure}|PG{self.k}{event}|P|2.4|||AL|NE|GBR|UNICODE UTF-8",
            f"EVN||{when}|||ADM0042^CLERK^PAT|{when}",
            f"PID|1||{self.mrn}^^^RR8^MR~{self.nhs}^^^NHS^NH||{self.family.upper()}^{self.given.upper()}^MAY^^MRS^^L||19380611|F"
            f"|||14 TOWN STREET^^BRAMLEY^WEST YORKSHIRE^{self.postcode}^GBR^H||0113 496 0417^PRN^PH|||||||||A||||||||||NSTS01",
            "PD1|||BRAMLEY MEDICAL PRACTICE^^B86670|G8123456^WALSH^CLAIRE^^^DR",
            f"PV1|1|I|ELDERLY CARE 3^BAY 2^BED 5^RR813|21|||C2893004^OKONJO^EMEKA^^^DR|||430||||19|||C2893004^OKONJO^EMEKA^^^DR"
            f"||{self.spell}^^^RR8^VN{pv1_tail}",
            *extra,
        ]
        return ("\r".join(segs) + "\r").encode()

    def admit(self) -> bytes:
        return self.adt("A01", "20260105094000", "|" * 25 + "20260105092000")

    def discharge(self) -> bytes:
        # PV1-36 method 1 (clinical advice), PV1-37 destination 19 (home), ZU1-14 REAB: home reablement
        return self.adt("A03", "20260112145000", "|" * 17 + "1|19|||||||20260105092000|20260112143000", [
            "DG1|1||S72.00^Fracture of neck of femur, closed^I10||20260105|F",
            "ZU1|20260105|1||||||||||||REAB||||||||Y||20260111",
        ])

    def council_csv(self) -> bytes:
        header = (FIX / "council" / "cld_valid.csv").read_text(encoding="utf-8-sig").splitlines()[0].split(",")
        person = {"LA_Code": "E08000035", "Reporting_Period_Start_Date": "2026-01-01", "Reporting_Period_End_Date": "2026-03-31",
                  "LA_Person_Unique_Identifier": self.council_id, "NHS_Number": self.nhs, "Family_Name": self.family,
                  "Given_Name": f"{self.given} May", "Date_of_Birth": "1938-06-11", "Gender": "Female",
                  "Ethnicity": "White: English, Welsh, Scottish, Northern Irish or British", "Postcode": self.postcode,
                  "GP_Practice_Code": "B86670", "Client_Type": "Service User",
                  "Primary_Support_Reason": "Physical support: Personal care support"}
        ep = f"EP-PG-{self.k}"
        rows = [
            {**person, "Event_Type": "Request", "Event_Reference": f"REQ-PG{self.k}", "Episode_Reference": ep,
             "Event_Start_Date": "2026-01-12", "Event_End_Date": "2026-01-12", "Event_Outcome": "Progress to reablement/ST-Max",
             "Request_Route_of_Access": "Discharge from Hospital",
             "Event_Description": "Referred by the St James's discharge team: needs help with washing and dressing"},
            {**person, "Event_Type": "Assessment", "Event_Reference": f"ASM-PG{self.k}", "Episode_Reference": ep,
             "Event_Start_Date": "2026-01-13", "Event_End_Date": "2026-01-13", "Event_Outcome": "Progress to reablement/ST-Max",
             "Assessment_Type": "Short term assessment", "Eligible_Needs_Identified": "Yes", "Method_of_Assessment": "Face to face"},
            {**person, "Event_Type": "Service", "Event_Reference": f"SVC-PG{self.k}", "Episode_Reference": ep,
             "Event_Start_Date": "2026-01-13", "Event_End_Date": "2026-02-10", "Event_Outcome": "NFA: Support ended as planned",
             "Service_Type": "Short term support: ST-Max", "Service_Component": "Reablement",
             "Delivery_Mechanism": "CASSR Commissioned Support", "Provider_CQC_Location_ID": "1-101234567",
             "Planned_units_per_week": "10.5"},
            {**person, "Event_Type": "Review", "Event_Reference": f"REV-PG{self.k}", "Episode_Reference": ep,
             "Event_Start_Date": "2026-01-27", "Event_End_Date": "2026-01-27",
             "Event_Outcome": "Continuation of support or services", "Review_Reason": "Planned",
             "Review_Outcomes_Achieved": "Partially achieved", "Method_of_Review": "Telephone"},
        ]
        return _csv(header, rows)

    def community_csv(self) -> bytes:
        header = (FIX / "community" / "csds_valid.csv").read_text(encoding="utf-8-sig").splitlines()[0].split(",")
        person = {"OrgID_Provider": "RY6", "LocalPatientID": self.community_id, "NHSNumber": self.nhs, "NHSNumberStatus": "01",
                  "PersonFamilyName": self.family.upper(), "PersonGivenName": self.given, "PersonBirthDate": "1938-06-11",
                  "Gender": "2", "EthnicCategory": "A", "Postcode": self.postcode.replace(" ", ""), "OrgID_GP": "B86670"}
        sr = f"SRPG{self.k}"
        contact = {**person, "Record_Type": "CYP201", "ServiceRequestID": sr, "AttendanceStatus": "5"}
        activity = {**person, "Record_Type": "CYP202", "ServiceRequestID": sr, "CareProfLocalID": "OT-4411"}
        rows = [
            {**person, "Record_Type": "CYP101", "ServiceRequestID": sr, "ReferralRequest_ReceivedDate": "2026-01-12",
             "ReferralRequest_ReceivedTime": "16:20", "SourceOfReferral": "H2", "PriorityType": "2",
             "TeamID_Local": "ART-W", "Discharge_Date": "2026-02-09"},
            {**contact, "CareContactID": f"CCPG{self.k}1", "Contact_Date": "2026-01-14", "Contact_Time": "10:00",
             "CareContact_Duration": "45", "ConsMechanism": "01", "ActLocTypeCode": "A01", "TeamID_Local": "ART-W"},
            {**activity, "CareContactID": f"CCPG{self.k}1", "Contact_Date": "2026-01-14", "CareActivityID": f"CAPG{self.k}1",
             "CommCareActType": "02", "CareActivity_Duration": "20", "CodedObservation": "273302005", "ObsValue": "55",
             "UCUMUnit": "{score}"},
            {**activity, "CareContactID": f"CCPG{self.k}1", "Contact_Date": "2026-01-14", "CareActivityID": f"CAPG{self.k}2",
             "CommCareActType": "03", "CareActivity_Duration": "25", "CodedProcedure": "84478008"},
            {**person, "Record_Type": "CYP004", "ServiceRequestID": sr, "PlanID": f"CPPG{self.k}",
             "CarePlanCreationDate": "2026-01-14", "CarePlanImplementationDate": "2026-01-15", "CarePlanAgreedDate": "2026-01-14",
             "CarePlanEndDate": "2026-02-09",
             "Goal_1_Description": "Walk to the end of the street and back with a stick", "Goal_1_TargetDate": "2026-02-06",
             "Goal_1_Status": "Achieved",
             "Goal_2_Description": "Make a hot drink and carry it to the lounge safely", "Goal_2_TargetDate": "2026-01-30",
             "Goal_2_Status": "Achieved"},
            {**contact, "CareContactID": f"CCPG{self.k}2", "Contact_Date": "2026-01-21", "Contact_Time": "11:00",
             "CareContact_Duration": "15", "ConsMechanism": "02"},
            {**contact, "CareContactID": f"CCPG{self.k}3", "Contact_Date": "2026-02-04", "Contact_Time": "10:30",
             "CareContact_Duration": "40", "ConsMechanism": "01", "ActLocTypeCode": "A01"},
        ]
        return _csv(header, rows)


def _csv(header: list[str], rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, lineterminator="\r\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def site(gateway_server) -> str:
    return gateway_server.base.removesuffix("/fhir")


@pytest.fixture(scope="session")
def journey(site) -> dict:
    """The person's journey sent through the real endpoints, once per back end."""
    j = Journey()
    for message in (j.admit(), j.discharge()):
        r = httpx.post(f"{site}/hl7v2", content=message, headers={"Content-Type": "x-application/hl7-v2+er7"})
        assert ack_code(r.text) == "AA", r.text
    for kind, body in (("council", j.council_csv()), ("community", j.community_csv())):
        r = httpx.post(f"{site}/ingest/{kind}", content=body, headers={"Content-Type": "text/csv"},
                       params={"source": f"pages-{kind}.csv"}, timeout=60)
        assert r.status_code == 200, r.text
        summary = r.json()["issue"][0]["diagnostics"]
        assert " 0 rejected" in summary, r.json()
    found = httpx.get(f"{site}/fhir/Patient", params={"identifier": f"{NHS}|{j.nhs}"}).json()
    assert found["total"] == 1, found
    return {"j": j, "id": found["entry"][0]["resource"]["id"]}


@pytest.fixture(scope="module")
def browser():
    # Module scope: playwright's sync API keeps an event loop in this thread while it is open, so
    # it must be closed before other modules' fixtures call asyncio.run (PostgreSQL schema drop).
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 768}, java_script_enabled=True)
    pg = context.new_page()
    yield pg
    context.close()


def shot(page, gateway_server, name: str, full: bool = True) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}-{gateway_server.backend}.png"
    page.screenshot(path=str(path), full_page=full)
    assert path.stat().st_size > 10_000
    return path


def timeline_rows(page) -> list[dict]:
    return page.eval_on_selector_all("table.timeline tbody tr", """rows => rows.map(r => ({
        when: r.querySelector('time').getAttribute('datetime'),
        sources: Array.from(r.querySelectorAll('.badge')).map(b => b.textContent.trim()),
        kind: r.querySelector('.kind').textContent.trim(),
        title: r.querySelector('strong').textContent.trim(),
        href: r.querySelector('td:last-child a').getAttribute('href'),
        text: r.innerText,
    }))""")


def _day(value: str) -> date:
    if len(value) == 10:
        return date.fromisoformat(value)
    return datetime.fromisoformat(value).date()


# --------------------------------------------------------------------------- the history page


def test_history_page_shows_one_person_with_identifiers_from_all_three_sources(page, site, journey, gateway_server):
    j = journey["j"]
    page.goto(f"{site}/patients/{journey['id']}")
    assert page.locator("h1").count() == 1
    assert page.inner_text("h1") == "ASHCROFT, Edith May"
    ids = page.eval_on_selector_all("table.identifiers tbody tr", """rows => rows.map(r => ({
        label: r.querySelector('th').innerText, value: r.querySelector('td').innerText,
        source: r.querySelectorAll('td')[1].innerText.trim(), system: r.querySelectorAll('td')[2].innerText}))""")
    by_label = {i["label"]: i for i in ids}
    assert by_label["NHS number"]["value"].startswith(f"{j.nhs[:3]} {j.nhs[3:6]} {j.nhs[6:]}")
    assert by_label["Hospital number (MRN)"]["value"].startswith(j.mrn)
    assert by_label["Hospital number (MRN)"]["source"] == "Hospital"
    assert by_label["Council person ID"]["value"].startswith(j.council_id)
    assert by_label["Council person ID"]["source"] == "Council"
    assert "/Id/council/E08000035/person" in by_label["Council person ID"]["system"]
    assert by_label["Community patient ID"]["value"].startswith(j.community_id)
    assert by_label["Community patient ID"]["source"] == "Community"
    assert "/Id/community/RY6/patient" in by_label["Community patient ID"]["system"]
    summary = page.inner_text("dl.summary")
    assert "Hospital" in summary and "Council" in summary and "Community" in summary
    # Provenance: which message or file row wrote the person's details
    prov = page.inner_text("table.provenance")
    assert "HL7 v2 ADT^A01" in prov and "council file pages-council.csv" in prov and "community file pages-community.csv" in prov
    shot(page, gateway_server, "history-top", full=False)
    shot(page, gateway_server, "history-full")


def test_timeline_is_in_date_order_with_source_badges(page, site, journey):
    page.goto(f"{site}/patients/{journey['id']}")
    rows = timeline_rows(page)
    days = [_day(r["when"]) for r in rows]
    assert days == sorted(days), [(r["when"], r["title"]) for r in rows]
    assert all(r["sources"] for r in rows), "every entry names its source"
    titles = [r["title"] for r in rows]

    def at(prefix: str) -> int:
        hits = [i for i, t in enumerate(titles) if t.startswith(prefix)]
        assert hits, f"no {prefix!r} in {titles}"
        return hits[0]

    story = [
        "Admitted to hospital",
        "Discharged from hospital",
        "Referred to Active Recovery: home reablement",
        "Referral to community services",
        "Council request for support",
        "Council short term assessment",
        "Reablement (Short term support: ST-Max)",
        "Therapy visit",
        "Barthel index",
        "Walk to the end of the street",
        "Therapy team contact (telephone)",
        "Council review",
        "Discharged from Active Recovery community therapy episode",
        "Reablement (Short term support: ST-Max) ended",
    ]
    positions = [at(s) for s in story]
    assert positions == sorted(positions), list(zip(story, positions))
    source_of = {r["title"]: r["sources"] for r in rows}
    assert source_of["Admitted to hospital"] == ["Hospital"]
    assert source_of["Discharged from hospital"] == ["Hospital"]
    assert source_of["Referred to Active Recovery: home reablement"] == ["Hospital"]
    assert source_of["Council short term assessment"] == ["Council"]
    assert source_of["Walk to the end of the street and back with a stick"] == ["Community"]
    kinds = {r["kind"] for r in rows}
    assert {"Hospital stay", "Discharge", "Referral", "Assessment", "Plan", "Service", "Visit", "Contact", "Goal",
            "Review", "Outcome"} <= kinds
    discharge = rows[at("Discharged from hospital")]["text"]
    assert "Usual place of residence (19)" in discharge and "Length of stay: 7 days" in discharge
    outcome = rows[at("Reablement (Short term support: ST-Max) ended")]["text"]
    assert "NFA: Support ended as planned" in outcome
    # the timeline has every clinical resource of $everything (nothing silently dropped)
    everything = httpx.get(f"{site}/fhir/Patient/{journey['id']}/$everything").json()
    listed = {r["href"] for r in rows}
    for e in everything["entry"]:
        res = e["resource"]
        if res["resourceType"] in ("Encounter", "ServiceRequest", "CarePlan", "Goal", "Observation", "Procedure", "Condition"):
            assert f"/fhir/{res['resourceType']}/{res['id']}" in listed, res["resourceType"]


def test_timeline_links_go_to_fhir_resources_that_load(page, site, journey):
    page.goto(f"{site}/patients/{journey['id']}")
    hrefs = page.eval_on_selector_all("main a[href^='/fhir/']", "as => as.map(a => a.getAttribute('href'))")
    assert len(hrefs) >= 20
    with httpx.Client(base_url=site, headers={"Accept": "application/fhir+json"}) as http:
        for href in sorted(set(hrefs)):
            r = http.get(href)
            assert r.status_code == 200, href
            rtype, rid = href.removeprefix("/fhir/").split("/")
            body = r.json()
            assert (body["resourceType"], body["id"]) == (rtype, rid)
            if rtype != "Patient":
                refs = re.findall(r'"reference":"([^"]+)"', r.text)
                assert any(ref.endswith(journey["id"]) for ref in refs) or rtype in ("Goal", "Observation", "Procedure"), href
    # and clicking one in the browser shows it: a browser's Accept gets readable JSON in the page
    page.click("table.timeline tbody tr:first-child td:last-child a")
    page.wait_for_load_state()
    shown = json.loads(page.inner_text("body"))
    assert shown["resourceType"] == "Encounter" and page.url.endswith(f"/fhir/Encounter/{shown['id']}")


# --------------------------------------------------------------------------- search


def test_search_finds_the_person_by_nhs_number_name_and_postcode(page, site, journey, gateway_server):
    j = journey["j"]
    page.goto(f"{site}/patients")
    page.fill("#q", f"{j.nhs[:3]} {j.nhs[3:6]} {j.nhs[6:]}")
    page.click("button[type=submit]")
    links = page.eval_on_selector_all("table.results tbody th a", "as => as.map(a => a.getAttribute('href'))")
    assert links == [f"/patients/{journey['id']}"]  # one person, not one per source
    assert "NHS number" in page.inner_text("[role=status]")
    shot(page, gateway_server, "search-nhs-number", full=False)
    for q in ("Edith Ashcroft", "ashcroft edith", "LS13 2QH", "ls132qh", j.mrn, j.council_id):
        page.goto(f"{site}/patients?q={quote(q)}")
        links = page.eval_on_selector_all("table.results tbody th a", "as => as.map(a => a.getAttribute('href'))")
        assert f"/patients/{journey['id']}" in links, q
    page.click(f"a[href='/patients/{journey['id']}']")
    assert page.inner_text("h1") == "ASHCROFT, Edith May"


def test_search_with_nothing_found_and_the_review_list(page, site, journey):
    page.goto(f"{site}/patients?q=Zzyzxq")
    assert "0 people found" in page.inner_text("[role=status]")
    page.goto(f"{site}/patients")
    assert page.locator("h2", has_text="Records to review").count() == 1


# --------------------------------------------------------------------------- accessibility


def _a11y_basics(page) -> None:
    assert page.locator("h1").count() == 1
    for landmark in ("header", "nav", "main", "footer"):
        assert page.locator(landmark).count() >= 1, landmark
    assert page.get_attribute("html", "lang") == "en-GB"
    assert page.title()
    # every image or icon has a text alternative (the pages use none, but any added later must)
    missing = page.eval_on_selector_all("img, svg, [role=img]", """els => els.filter(e =>
        !(e.getAttribute('alt') !== null || e.getAttribute('aria-label') || e.getAttribute('aria-hidden') === 'true')).length""")
    assert missing == 0
    # every form control has a label
    unlabelled = page.eval_on_selector_all("input:not([type=hidden]), select, textarea", """els => els.filter(e =>
        !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby')).length""")
    assert unlabelled == 0
    # headings do not skip a level
    levels = page.eval_on_selector_all("h1, h2, h3, h4", "hs => hs.map(h => +h.tagName[1])")
    assert all(b - a <= 1 for a, b in zip(levels, levels[1:])), levels
    # data tables have header cells
    bad_tables = page.eval_on_selector_all("table", "ts => ts.filter(t => !t.querySelector('th[scope]')).length")
    assert bad_tables == 0
    assert page.eval_on_selector_all("script", "s => s.length") == 0  # works with no script at all


def _axe(page) -> list[dict]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)  # axe-core bundled in the PyPI package: no download
    return results.response["violations"]


def test_accessibility_of_history_page(page, site, journey):
    page.goto(f"{site}/patients/{journey['id']}")
    _a11y_basics(page)
    serious = _axe(page)
    assert serious == [], [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in serious]


def test_accessibility_of_search_and_not_found_pages(page, site, journey):
    for url in (f"{site}/patients?q=Ashcroft", f"{site}/patients", f"{site}/patients/no-such-person"):
        page.goto(url)
        _a11y_basics(page)
        serious = _axe(page)
        assert serious == [], (url, [(v["id"], v["help"]) for v in serious])


def test_keyboard_reaches_every_link_with_a_visible_focus(page, site, journey, gateway_server):
    page.goto(f"{site}/patients/{journey['id']}")
    first_timeline_link = page.eval_on_selector("table.timeline tbody tr td:last-child a", "a => a.getAttribute('href')")
    seen = []
    for _ in range(60):
        page.keyboard.press("Tab")
        seen.append(page.evaluate("""() => { const e = document.activeElement; const s = getComputedStyle(e);
            return {tag: e.tagName, href: e.getAttribute('href'), text: e.innerText.trim(),
                    bg: s.backgroundColor, shadow: s.boxShadow, outline: s.outlineStyle}; }"""))
        if seen[-1]["href"] == first_timeline_link:
            break
    assert seen[0]["text"] == "Skip to main content"
    assert any(s["href"] == "/patients" for s in seen)
    assert seen[-1]["href"] == first_timeline_link, [s["href"] for s in seen]
    # focus is visible: the focused link gets the yellow focus background and an underline bar
    assert seen[-1]["bg"] == "rgb(255, 235, 59)" and seen[-1]["shadow"] != "none"
    shot(page, gateway_server, "history-keyboard-focus", full=False)
    # the skip link takes keyboard users straight to the content
    page.goto(f"{site}/patients/{journey['id']}")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_readable_at_ward_laptop_size_without_horizontal_scroll(page, site, journey):
    page.goto(f"{site}/patients/{journey['id']}")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1366
    size = page.evaluate("parseFloat(getComputedStyle(document.querySelector('table.timeline td')).fontSize)")
    assert size >= 14


# --------------------------------------------------------------------------- plain HTTP


def test_security_headers_on_every_page(site, journey):
    for path in ("/patients", "/patients?q=ashcroft", f"/patients/{journey['id']}", "/patients/unknown-id",
                 "/static/web.css"):
        r = httpx.get(site + path)
        for name, value in SECURITY.items():
            assert r.headers.get(name) == value, (path, name)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
    r = httpx.get(f"{site}/patients/{journey['id']}")
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-store"


def test_root_redirects_to_search(site):
    r = httpx.get(site + "/", follow_redirects=False)
    assert r.status_code in (302, 303, 307) and r.headers["location"].endswith("/patients")


def test_unknown_patient_is_a_404_page(site, page, gateway_server):
    for pid in ("does-not-exist", "0b7c0a9e-0000-4000-8000-000000000000", "bad id with spaces", "x" * 65):
        r = httpx.get(f"{site}/patients/{pid}")
        assert r.status_code == 404, pid
        assert "text/html" in r.headers["content-type"]
        assert "Person not found" in r.text
    page.goto(f"{site}/patients/does-not-exist")
    assert page.inner_text("h1") == "Person not found"
    shot(page, gateway_server, "not-found", full=False)


def test_hostile_names_are_escaped(site, page, gateway_server):
    hostile = {"resourceType": "Patient", "name": [{"family": "O'Neil & <b>Sons</b>",
                                                    "given": ['<script>alert("x")</script>', "<img src=x onerror=alert(1)>"]}],
               "birthDate": "1940-01-01", "address": [{"postalCode": "LS1 4AP", "line": ['"><svg onload=alert(2)>']}],
               "identifier": [{"system": "https://fhir.activerecovery.example/Id/council/E08000035/person",
                               "value": f"<i>{uuid.uuid4().hex[:8]}</i>"}]}
    r = httpx.post(f"{site}/fhir/Patient", json=hostile, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    html = httpx.get(f"{site}/patients/{pid}").text
    assert "<script>alert" not in html and "<img src=x" not in html and "<svg onload" not in html and "<b>Sons" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "O&#39;NEIL &amp; &lt;B&gt;SONS&lt;/B&gt;" in html  # family names are shown in capitals
    page.goto(f"{site}/patients/{pid}")
    assert page.eval_on_selector_all("script, img, svg, b", "e => e.length") == 0
    assert '<script>alert("x")</script>' in page.inner_text("h1")
    results = httpx.get(f"{site}/patients", params={"q": "O'Neil"}).text
    assert "<b>" not in results.lower() and "&lt;B&gt;SONS&lt;/B&gt;" in results
    echoed = httpx.get(f"{site}/patients", params={"q": '"><script>alert(3)</script>'}).text
    assert "<script>alert(3)" not in echoed
