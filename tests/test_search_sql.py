"""Compiled searches run against real index rows, on SQLite and (when reachable) PostgreSQL 15."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import uuid
from typing import Callable
from zoneinfo import ZoneInfo

import orjson
import pytest

from gateway.store.indexing import INDEX_COLUMNS, date_range, extract_index
from gateway.store.schema import ddl
from gateway.store.search_sql import SearchError, compile_search, sort_expression

TZ = ZoneInfo("Europe/London")
NHS = "https://fhir.nhs.uk/Id/nhs-number"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
UKCORE = "https://fhir.hl7.org.uk/StructureDefinition/"


def ref(r: str) -> dict:
    return {"reference": r}


def cc(system: str, code: str, text: str | None = None) -> dict:
    return {"coding": [{"system": system, "code": code}], **({"text": text} if text else {})}


RESOURCES: list[dict] = [
    {"resourceType": "Patient", "id": "p1", "meta": {"profile": [UKCORE + "UKCore-Patient"],
     "tag": [{"system": "http://example.org/tags", "code": "test"}]},
     "identifier": [{"system": NHS, "value": "9434765919"},
                    {"type": {"coding": [{"system": V2, "code": "MR"}], "text": "Hospital number"},
                     "system": "https://trust.example/mrn", "value": "MRN123"}],
     "active": True, "name": [{"family": "Smith", "given": ["John", "Adam"], "prefix": ["Mr"]}],
     "telecom": [{"system": "phone", "value": "01234 567890"}, {"system": "email", "value": "john@example.com"}],
     "gender": "male", "birthDate": "1980-05-17",
     "address": [{"line": ["1 High Street"], "city": "Leeds", "postalCode": "LS1 4AP"}],
     "generalPractitioner": [ref("Practitioner/pr1")], "managingOrganization": ref("Organization/org1")},
    {"resourceType": "Patient", "id": "p2", "identifier": [{"system": NHS, "value": "9000000009"},
                                                          {"value": "LOCAL1"}],
     "name": [{"family": "Brontë", "given": ["Zoë"]}], "gender": "female", "birthDate": "1992-11",
     "deceasedDateTime": "2023-02-01", "telecom": [{"system": "phone", "value": "07700 900123"}],
     "address": [{"city": "Bradford", "postalCode": "BD1 1AA"}], "generalPractitioner": [ref("Practitioner/pr2")]},
    {"resourceType": "Patient", "id": "p3", "active": False, "name": [{"family": "Smithson", "given": ["Anne"]}],
     "birthDate": "2001-07-01", "link": [{"other": ref("Patient/p1"), "type": "seealso"}]},
    {"resourceType": "Patient", "id": "p4", "name": [{"family": "Smith"}], "gender": "male"},  # deleted
    {"resourceType": "Practitioner", "id": "pr1", "name": [{"family": "Jones", "given": ["Sarah"], "prefix": ["Dr"]}]},
    {"resourceType": "Practitioner", "id": "pr2", "name": [{"family": "Patel", "given": ["Raj"]}]},
    {"resourceType": "Organization", "id": "org1", "name": "Leeds Teaching Hospitals", "alias": ["LTHT"],
     "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RR8"}]},
    {"resourceType": "Organization", "id": "org3", "name": "Smith, Jones & Co", "identifier": [{"value": "A|B"}]},
    {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"system": ACT, "code": "AMB"},
     "type": [cc("http://snomed.info/sct", "11429006", "Consultation")], "subject": ref("Patient/p1"),
     "participant": [{"individual": ref("Practitioner/pr1")}], "serviceProvider": ref("Organization/org1"),
     "period": {"start": "2024-03-05T10:00:00Z", "end": "2024-03-05T11:00:00Z"}},
    {"resourceType": "Encounter", "id": "e2", "status": "in-progress", "class": {"system": ACT, "code": "IMP"},
     "subject": ref("Patient/p2/_history/3"), "participant": [{"individual": ref("Practitioner/pr2")}],
     "period": {"start": "2024-07-01T09:00:00"}},  # no offset: BST, i.e. 08:00Z
    {"resourceType": "Encounter", "id": "e3", "status": "cancelled", "class": {"system": ACT, "code": "AMB"},
     "subject": ref("Group/g1"), "serviceProvider": ref("https://other.example/fhir/Organization/ext1")},
    {"resourceType": "Encounter", "id": "e4", "status": "finished", "subject": ref("Patient/p4")},
    {"resourceType": "Observation", "id": "o1", "status": "final", "code": cc(LOINC, "8867-4"),
     "subject": ref("Patient/p1"), "performer": [ref("Practitioner/pr1")], "encounter": ref("Encounter/e1"),
     "effectiveDateTime": "2024-03-05T10:15:00Z", "valueQuantity": {"value": 72, "system": UCUM, "code": "/min"}},
    {"resourceType": "Observation", "id": "o2", "status": "final", "code": cc(LOINC, "29463-7"),
     "subject": ref("Patient/p2"), "encounter": ref("urn:uuid:4e1b0a4c-3c62-4b8e-9d59-8c2f8b3b0e01"),
     "effectiveDateTime": "2024-03-06", "valueQuantity": {"value": 80.5, "unit": "kg", "system": UCUM, "code": "kg"}},
    {"resourceType": "Observation", "id": "o3", "status": "preliminary", "code": cc(LOINC, "85354-9"),
     "subject": ref("Patient/p1"), "performer": [{"identifier": {"system": "https://gmc", "value": "G123"}}],
     "effectivePeriod": {"start": "2024-01-01", "end": "2024-01-31"},
     "component": [{"code": cc(LOINC, "8480-6"), "valueQuantity": {"value": 120, "system": UCUM, "code": "mm[Hg]"}},
                   {"code": cc(LOINC, "8462-4"), "valueQuantity": {"value": 80, "system": UCUM, "code": "mm[Hg]"}}]},
    {"resourceType": "Condition", "id": "c1", "subject": ref("Patient/p1"), "onsetDateTime": "2015",
     "clinicalStatus": cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active"),
     "code": cc("http://snomed.info/sct", "44054006", "Diabetes mellitus type 2")},
    {"resourceType": "Provenance", "id": "prov1", "target": [ref("Observation/o1"), ref("Patient/p1")],
     "recorded": "2024-03-05T11:00:00Z", "agent": [{"who": ref("Practitioner/pr1")}]},
    {"resourceType": "ConceptMap", "id": "cm1", "url": "http://example.org/fhir/ConceptMap/ethnicity",
     "version": "1.0", "status": "active", "sourceCanonical": "http://example.org/fhir/ValueSet/src|1.0"},
    {"resourceType": "StructureDefinition", "id": "sd1", "url": UKCORE + "UKCore-Patient", "type": "Patient"},
    {"resourceType": "StructureDefinition", "id": "sd2", "url": UKCORE + "UKCore-Encounter", "type": "Encounter"},
    {"resourceType": "Subscription", "id": "sub1", "status": "active", "criteria": "Encounter?status=finished",
     "channel": {"type": "rest-hook", "endpoint": "https://hooks.example/fhir"}},
]  # fmt: skip
LAST_UPDATED = {"p1": "2024-01-01T00:00:00Z", "p2": "2024-06-15T12:00:00Z", "p3": "2024-07-01T00:00:00Z"}
DELETED = {"p4"}


def table_rows(resources: list[dict]) -> dict[str, list[tuple]]:
    """Rows for `resource` and every index table, with columns in schema order."""
    out: dict[str, list[tuple]] = {"resource": [], **{t: [] for t in INDEX_COLUMNS}}
    for pk, res in enumerate(resources, start=1):
        lu = date_range(LAST_UPDATED.get(res["id"], "2024-01-01T00:00:00Z"), TZ)[0]
        deleted = int(res["id"] in DELETED)
        out["resource"].append((pk, res["resourceType"], res["id"], 1, lu, deleted, pk, orjson.dumps(res)))
        for table, rows in extract_index(res, TZ).items():
            out[table].extend((pk, res["resourceType"], *row) for row in rows)
    return out


def insert_sql(table: str) -> str:
    cols = ("pk", "type", "id", "version", "last_updated", "deleted", "seq", "content")
    cols = cols if table == "resource" else ("pk", "type", *INDEX_COLUMNS[table])
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"


def to_dollar(sql: str) -> str:
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


# (resource type, query pairs, expected ids)
CASES: list[tuple[str, str, str]] = [  # (type, query string, expected ids)
    # string: starts-with, accent/case-insensitive, exact, contains, OR, AND, escapes
    ("Patient", "name=smith", "p1 p3"), ("Patient", "name=SMI", "p1 p3"), ("Patient", "name:exact=Smith", "p1"),
    ("Patient", "name:exact=smith", ""), ("Patient", "name:contains=ITH", "p1 p3"),
    ("Patient", "name:contains=_", ""),  # not a LIKE wildcard
    ("Patient", "family=bronte", "p2"), ("Patient", "given=ZOE", "p2"), ("Patient", "name=john smith", "p1"),
    ("Patient", "name=mr", "p1"), ("Patient", "name=smith,bronte", "p1 p2 p3"),
    ("Patient", "name=smith&given=anne", "p3"), ("Patient", "address-postalcode=ls1 4ap", "p1"),
    ("Patient", "address-postalcode=LS14AP", "p1"), ("Patient", "address-postalcode=ls1", "p1"),
    ("Patient", "address-city=leeds", "p1"), ("Patient", "address=1 high", "p1"),
    ("Patient", "address=high", ""),  # starts-with on each part, not word search
    ("Organization", r"name=smith\, jones", "org3"), ("Organization", "name=ltht", "org1"),
    ("Subscription", "criteria=encounter?status", "sub1"),
    # token
    ("Patient", "gender=female", "p2"),
    ("Patient", "gender:not=male", "p2 p3"),  # includes p3 with no gender
    ("Patient", "gender:not=male,female", "p3"), ("Patient", f"identifier={NHS}|9434765919", "p1"),
    ("Patient", "identifier=9434765919", "p1"), ("Patient", f"identifier={NHS}|", "p1 p2"),
    ("Patient", "identifier=|LOCAL1", "p2"), ("Patient", "identifier=|9434765919", ""),
    ("Patient", f"identifier:of-type={V2}|MR|MRN123", "p1"), ("Patient", "identifier:text=hospital", "p1"),
    ("Organization", r"identifier=A\|B", "org3"), ("Patient", "phone=01234 567890", "p1"),
    ("Patient", "email=john@example.com", "p1"), ("Patient", "email=01234 567890", ""),
    ("Patient", "telecom=07700 900123,john@example.com", "p1 p2"), ("Patient", "active=true", "p1"),
    ("Patient", "active=false", "p3"), ("Patient", "deceased=true", "p2"), ("Patient", "deceased=false", "p1 p3"),
    ("Patient", "_tag=http://example.org/tags|test", "p1"), ("Patient", "_id=p1,p2", "p1 p2"),
    ("Patient", "_id:not=p1", "p2 p3"), ("Encounter", "class=AMB", "e1 e3"), ("Encounter", f"class={ACT}|IMP", "e2"),
    ("Encounter", "type:text=consult", "e1"), ("Encounter", "status=finished,cancelled", "e1 e3 e4"),
    ("Observation", f"code={LOINC}|8867-4", "o1"), ("Observation", "component-code=8480-6", "o3"),
    ("Observation", "combo-code=8480-6,8867-4", "o1 o3"), ("Condition", "code:text=diabetes", "c1"),
    ("ConceptMap", "version=1.0", "cm1"),
    # reference
    ("Encounter", "subject=Patient/p1", "e1"),
    ("Encounter", "subject=p2", "e2"),  # stored with _history: version dropped
    ("Encounter", "subject:Patient=p1", "e1"), ("Encounter", "subject:Group=g1", "e3"),
    ("Encounter", "patient=p1,p2", "e1 e2"), ("Encounter", "patient=Group/g1", ""),
    ("Encounter", "participant=Practitioner/pr1", "e1"),
    ("Encounter", "service-provider=https://other.example/fhir/Organization/ext1", "e3"),
    ("Observation", "encounter=urn:uuid:4e1b0a4c-3c62-4b8e-9d59-8c2f8b3b0e01", "o2"),
    ("Observation", "performer:identifier=https://gmc|G123", "o3"),
    ("ConceptMap", "source=http://example.org/fhir/ValueSet/src", "cm1"),
    ("ConceptMap", "source=http://example.org/fhir/ValueSet/src|1.0", "cm1"), ("Patient", "link=Patient/p1", "p3"),
    # chaining
    ("Encounter", f"subject:Patient.identifier={NHS}|9434765919", "e1"), ("Encounter", "subject.name=bronte", "e2"),
    ("Encounter", "subject.family=smith", "e1"),  # e4's patient is deleted
    ("Encounter", "patient.gender=female", "e2"), ("Encounter", "participant.family=patel,jones", "e1 e2"),
    ("Observation", "subject:Patient.general-practitioner.family=jones", "o1 o3"),
    ("Observation", "patient._id=p2", "o2"), ("Provenance", "target.code=8867-4", "prov1"),
    # reverse chaining
    ("Patient", "_has:Encounter:subject:status=finished", "p1"),
    ("Patient", "_has:Encounter:patient:status=in-progress", "p2"),
    ("Patient", "_has:Observation:subject:code=8867-4,29463-7", "p1 p2"),
    ("Patient", "_has:Observation:patient:_has:Provenance:target:agent=Practitioner/pr1", "p1"),
    ("Practitioner", "_has:Encounter:participant:class=IMP", "pr2"),
    ("Patient", "_has:Encounter:subject:status=finished&gender=female", ""),
    # dates
    ("Patient", "birthdate=1980", "p1"), ("Patient", "birthdate=1980-05", "p1"),
    ("Patient", "birthdate=eq1980-05-17", "p1"), ("Patient", "birthdate=1980-05-18", ""),
    ("Patient", "birthdate=1992", "p2"),
    ("Patient", "birthdate=1992-11-05", ""),  # a month is not within a day
    ("Patient", "birthdate=lt1990", "p1"), ("Patient", "birthdate=gt1990", "p2 p3"),
    ("Patient", "birthdate=ge1992-11", "p2 p3"), ("Patient", "birthdate=le1980-05-17", "p1"),
    ("Patient", "birthdate=sa1992", "p3"), ("Patient", "birthdate=eb1992", "p1"),
    ("Patient", "birthdate=ne1980", "p2 p3"), ("Patient", "birthdate=ap1980-05-17", "p1"),
    ("Patient", "birthdate=lt1985,gt2000", "p1 p3"), ("Patient", "birthdate=ge1980&birthdate=le1995", "p1 p2"),
    ("Encounter", "date=2024-03-05", "e1"), ("Encounter", "date=2024-03-05T10:00:00Z", ""),
    ("Encounter", "date=ge2024-07-01", "e2"), ("Encounter", "date=gt2024-06", "e2"),
    ("Encounter", "date=lt2024-04", "e1"),
    ("Encounter", "date=lt2024-07-01T08:00:00Z", "e1"),  # e2 starts 08:00Z (09:00 BST)
    ("Encounter", "date=lt2024-07-01T08:00:01Z", "e1 e2"),
    ("Encounter", "date=lt2024-07-01T08:00:01", "e1"),  # a local search value is BST too
    ("Encounter", "date=lt2024-07-01T09:00:01", "e1 e2"),
    ("Encounter", "date=lt2024-07-01T09:00:01 01:00", "e1 e2"),  # '+' decoded to a space
    ("Condition", "onset-date=2015", "c1"),
    ("Observation", "date=2024-01", "o3"), ("Observation", "date=2024-01-15", ""),
    ("Observation", "date=ge2024-03-06", "o2"), ("Provenance", "recorded=2024-03-05", "prov1"),
    ("Patient", "_lastUpdated=gt2024-06-01", "p2 p3"), ("Patient", "_lastUpdated=2024-06-15", "p2"),
    ("Patient", "_lastUpdated=lt2024-06-01,ge2024-06-30", "p1 p3"),
    # number / quantity
    ("Observation", "value-quantity=72", "o1"), ("Observation", "value-quantity=72.4", ""),
    ("Observation", "value-quantity=7.2e1", "o1"),  # [67, 77)
    ("Observation", "value-quantity=gt75", "o2"), ("Observation", "value-quantity=ne72", "o2"),
    ("Observation", f"value-quantity=lt80|{UCUM}|/min", "o1"),
    ("Observation", f"value-quantity=80.5|{UCUM}|kg", "o2"), ("Observation", "value-quantity=80.5||kg", "o2"),
    ("Observation", "value-quantity=80.5||g", ""), ("Observation", "value-quantity=ap85", "o2"),
    ("Observation", "value-quantity=le72,ge80", "o1 o2"), ("Observation", "component-value-quantity=ge120", "o3"),
    ("Observation", "combo-value-quantity=sa100", "o3"), ("Observation", "combo-value-quantity=eb75", "o1"),
    # uri
    ("StructureDefinition", f"url={UKCORE}UKCore-Patient", "sd1"),
    ("StructureDefinition", f"url:below={UKCORE}", "sd1 sd2"),
    ("StructureDefinition", f"url:above={UKCORE}UKCore-Patient/_history/2", "sd1"),
    ("StructureDefinition", "type=Encounter", "sd2"), ("Patient", f"_profile={UKCORE}UKCore-Patient", "p1"),
    ("Subscription", "url=https://hooks.example/fhir", "sub1"), ("ConceptMap", "url:below=http://example.org", "cm1"),
    # :missing
    ("Patient", "identifier:missing=true", "p3"), ("Patient", "identifier:missing=false", "p1 p2"),
    ("Patient", "general-practitioner:missing=true", "p3"), ("Patient", "birthdate:missing=false", "p1 p2 p3"),
    ("Patient", "family:missing=true", ""), ("Encounter", "date:missing=true", "e3 e4"),
    ("Observation", "value-quantity:missing=true", "o3"), ("StructureDefinition", "url:missing=false", "sd1 sd2"),
    ("Patient", "_id:missing=false", "p1 p2 p3"),
    # no parameters: every live resource of the type
    ("Patient", "", "p1 p2 p3"),
]


def pairs(query: str) -> list[tuple[str, str]]:
    """Query pairs of `a=1&b:x=2` (the test values contain no `&` or further `=`)."""
    return [tuple(p.split("=", 1)) for p in query.split("&")] if query else []  # type: ignore[misc]


def sqlite_backend() -> tuple[Callable[[str, list], list[str]], Callable[[], None]]:
    db = sqlite3.connect(":memory:")
    for stmt in ddl("sqlite"):
        db.execute(stmt)
    for table, rows in table_rows(RESOURCES).items():
        db.executemany(insert_sql(table), rows)
    return (lambda sql, args: [row[0] for row in db.execute(sql, args)]), db.close


def postgres_backend() -> tuple[Callable[[str, list], list[str]], Callable[[], None]]:
    """A connection in a fresh schema, driven from synchronous tests by its own event loop."""
    import asyncpg

    loop, schema = asyncio.new_event_loop(), f"t_{uuid.uuid4().hex[:12]}"
    # PostgreSQL is required (CI starts it): an unreachable server fails the test, never skips it
    conn = loop.run_until_complete(asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test", timeout=10))
    loop.run_until_complete(conn.execute(f"CREATE SCHEMA {schema}; SET search_path TO {schema}"))
    for stmt in ddl("postgres"):
        loop.run_until_complete(conn.execute(stmt))
    for table, rows in table_rows(RESOURCES).items():
        loop.run_until_complete(conn.executemany(to_dollar(insert_sql(table)), rows))

    def close() -> None:
        loop.run_until_complete(conn.execute(f"DROP SCHEMA {schema} CASCADE"))
        loop.run_until_complete(conn.close())
        loop.close()

    return (lambda sql, args: [r[0] for r in loop.run_until_complete(conn.fetch(to_dollar(sql), *args))]), close


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def query(request: pytest.FixtureRequest) -> Callable[[str, list], list[str]]:
    """Runs SQL with `?` placeholders on the backend, returning the first column."""
    run, close = sqlite_backend() if request.param == "sqlite" else postgres_backend()
    yield run
    close()


@pytest.mark.parametrize("rtype,qs,expected", CASES, ids=[f"{t}?{q}" for t, q, _ in CASES])
def test_search(query: Callable[[str, list], list[str]], rtype: str, qs: str, expected: str) -> None:
    f = compile_search(rtype, pairs(qs), tz=TZ)
    assert f.where.count("?") == len(f.args)
    assert set(query(f"SELECT r.id FROM resource r WHERE {f.where}", f.args)) == set(expected.split())


# --- sorting ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rtype,name,expected",
    [
        ("Patient", "family", ["p2", "p1", "p3"]),  # bronte < smith < smithson
        ("Patient", "birthdate", ["p1", "p2", "p3"]),
        ("Patient", "_id", ["p1", "p2", "p3"]),
        ("Patient", "_lastUpdated", ["p1", "p2", "p3"]),
        ("Observation", "value-quantity", ["o1", "o2", "o3"]),  # o3 has none: NULL sorts last
        ("Encounter", "subject", ["e3", "e1", "e2"]),  # Group/g1 < Patient/p1 < Patient/p2
    ],
)
def test_sort_expression(query: Callable, rtype: str, name: str, expected: list[str]) -> None:
    expr, args = sort_expression(rtype, name)
    f = compile_search(rtype, [("_id:not", "e4")] if rtype == "Encounter" else [], tz=TZ)
    nulls_last = f"CASE WHEN {expr} IS NULL THEN 1 ELSE 0 END"
    sql = f"SELECT r.id FROM resource r WHERE {f.where} ORDER BY {nulls_last}, {expr}, r.id"
    assert query(sql, [*f.args, *args, *args]) == expected


def test_sort_unknown() -> None:
    with pytest.raises(SearchError) as err:
        sort_expression("Patient", "shoe-size")
    assert err.value.param == "shoe-size"


# --- errors and leniency ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        [("shoe-size", "42")],
        [("gender:contains", "f")],
        [("birthdate:exact", "1980")],
        [("name:below", "x")],
        [("gender.name", "x")],  # chaining a token
        [("subject:Practitioner", "x")],  # Encounter.subject cannot be a Practitioner
        [("subject.shoe-size", "x")],
        [("_has:Encounter:status:status", "finished")],  # not a reference parameter
        [("_has:Spaceship:subject:status", "x")],
        [("subject.organization.partof.name", "x")],  # too deep
    ],
)
def test_unknown_or_unsupported(params: list[tuple[str, str]]) -> None:
    rtype = "Patient" if params[0][0].startswith(("_has", "shoe", "gender", "birth", "name")) else "Encounter"
    with pytest.raises(SearchError) as err:
        compile_search(rtype, params, tz=TZ)
    assert err.value.param == params[0][0]
    f = compile_search(rtype, [*params, ("_id", "x")], tz=TZ, lenient=True)
    assert f.ignored == [params[0][0]]
    assert f.where.count("?") == len(f.args) == 2


@pytest.mark.parametrize(
    "rtype,name,value,fragment",
    [
        ("Patient", "birthdate", "1980-13", "Invalid date"),
        ("Patient", "birthdate", "xx1980", "Unknown prefix"),
        ("Patient", "birthdate", "19800101", "Invalid date"),
        ("Patient", "_lastUpdated", "yesterday", "Unknown prefix"),
        ("Observation", "value-quantity", "abc", "Unknown prefix"),
        ("Observation", "value-quantity", "1.2.3", "Invalid number"),
        ("Observation", "value-quantity", "5|x", "Invalid quantity"),
        ("Patient", "identifier", "a|b|c", "Invalid token"),
        ("Patient", "gender:missing", "maybe", "true or false"),
        ("Encounter", "subject", "patient/1", "Invalid reference"),
        ("Encounter", "subject:Patient", "Group/1", "does not match"),
        ("Patient", "_has:Encounter", "x", "expected _has:Type:reference:parameter"),
        ("Patient", "_has:Observation:performer:status", "final", None),  # fine: Patient is a target
        ("Organization", "_has:Encounter:subject:status", "x", "cannot refer to"),
    ],
)
def test_bad_values_raise_even_when_lenient(rtype: str, name: str, value: str, fragment: str | None) -> None:
    if fragment is None:
        compile_search(rtype, [(name, value)], tz=TZ, lenient=True)
        return
    with pytest.raises(SearchError) as err:
        compile_search(rtype, [(name, value)], tz=TZ, lenient=True)
    assert fragment in err.value.message and err.value.param == name


def test_empty_value_is_ignored() -> None:
    f = compile_search("Patient", [("name", "")], tz=TZ)
    assert f.ignored == ["name"] and f.args == ["Patient"]


def test_where_shape() -> None:
    f = compile_search("Patient", [("name", "x")], tz=TZ)
    assert f.where.startswith("r.type = ? AND r.deleted = 0")
    assert f.args[0] == "Patient"
    # A search value containing '?' must travel as an argument, never inside the SQL text.
    f = compile_search("Subscription", [("criteria", "Encounter?status=x")], tz=TZ)
    assert f.where.count("?") == len(f.args)
