"""The FHIRPath evaluator on its own: what the profile invariants and TestScript asserts rely on."""

from __future__ import annotations

import pytest

from gateway.conformance.fhirpath import Env, FhirPathError, FhirPathSyntaxError, evaluate, values

ENCOUNTER = {
    "resourceType": "Encounter",
    "id": "stay1",
    "contained": [{"resourceType": "Location", "id": "ward", "name": "Ward 27"}],
    "identifier": [{"system": "https://fhir.leedsth.nhs.uk/Id/hospital-provider-spell", "value": "SP1"},
                   {"system": "urn:x", "value": "other"}],
    "status": "finished",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
    "period": {"start": "2025-03-01T10:15:00+00:00", "end": "2025-03-14T15:00:00+00:00"},
    "location": [{"location": {"reference": "#ward"}}],
    "extension": [{"url": "https://fhir.activerecovery.example/StructureDefinition/expected-discharge-date",
                   "valueDateTime": "2025-03-14"},
                  {"url": "http://example.org/weight", "valueQuantity": {"value": 58.4, "unit": "kg"}}],
}


def ev(expr, resource=ENCOUNTER, **kw):
    return values(evaluate(resource, expr, **kw))


@pytest.mark.parametrize("expr, expected", [
    ("Encounter.status", ["finished"]),
    ("status", ["finished"]),
    ("identifier.value", ["SP1", "other"]),
    ("identifier.where(system = 'urn:x').value", ["other"]),
    ("identifier.where(value.startsWith('SP')).exists()", [True]),
    ("identifier.count()", [2]),
    ("identifier.first().value", ["SP1"]),
    ("identifier.last().value", ["other"]),
    ("identifier[1].value", ["other"]),
    ("identifier.skip(1).value", ["other"]),
    ("identifier.tail().count() = 1", [True]),
    ("participant.empty()", [True]),
    ("participant.exists()", [False]),
    ("extension.value.ofType(Quantity).value", [58.4]),
    ("extension.value.ofType(dateTime)", ["2025-03-14"]),
    ("extension[1].value is Quantity", [True]),
    ("(extension[1].value as Quantity).unit", ["kg"]),
    ("extension('http://example.org/weight').value.value > 50", [True]),
    ("period.start < period.end", [True]),
    ("period.end > @2025-03-14T14:00:00Z", [True]),
    ("period.start >= @2025-02-28", [True]),  # date vs dateTime: compared at the day
    ("period.start >= @2025-03-01", []),  # equal at the shorter precision: unknown (FHIRPath §6.2)
    ("status = 'finished' implies period.end.exists()", [True]),
    ("status = 'planned' implies period.end.empty()", [True]),
    ("(status = 'finished') and (class.code = 'IMP')", [True]),
    ("status = 'planned' or class.code = 'IMP'", [True]),
    ("status = 'planned' xor class.code = 'IMP'", [True]),
    ("(status = 'planned').not()", [True]),
    ("status != 'planned'", [True]),
    ("status ~ 'FINISHED'", [True]),
    ("class.code in ('IMP' | 'HH')", [True]),
    ("('IMP' | 'HH') contains class.code", [True]),
    ("iif(status = 'finished', 'closed', 'open')", ["closed"]),
    ("iif(status = 'planned', 'closed')", []),
    ("identifier.select(value).distinct().count()", [2]),
    ("identifier.all(system.exists())", [True]),
    ("identifier.first().value.matches('^SP[0-9]+$')", [True]),
    ("identifier.first().value.length()", [3]),
    ("identifier.first().value.substring(1, 1)", ["P"]),
    ("identifier.first().value.lower() + '-' + id", ["sp1-stay1"]),
    ("'a' & {} & 'b'", ["ab"]),
    ("1 + 2 * 3 - 4 / 2", [5.0]),
    ("7 div 2 = 3 and 7 mod 2 = 1", [True]),
    ("-(2) < 0", [True]),
    ("location.location.resolve().name", ["Ward 27"]),
    ("subject.resolve()", []),  # not resolvable here: skipped, not an error
    ("%resource.id", ["stay1"]),
    ("identifier.where($this.value = %resource.identifier.first().value).count()", [1]),
    ("{}.empty()", [True]),
    ("identifier.value.join(',')", ["SP1,other"]),
    ("'0042'.toInteger() + 1", [43]),
    ("children().count() > 5", [True]),
    ("descendants().ofType(Quantity).unit", ["kg"]),
])
def test_expressions(expr, expected):
    assert ev(expr) == expected


def test_nhs_number_modulus_11_in_fhirpath():
    """The ar-nhs-1 invariant: a pure FHIRPath Modulus 11 check (portable to other validators)."""
    import orjson

    from gateway.conformance.registry import BUNDLED_PROFILES

    digest = orjson.loads((BUNDLED_PROFILES / "ukcore" / "ukcore-digest.json").read_bytes())
    patient = next(e["resource"] for e in digest["entry"] if e["resource"]["id"] == "UKCore-Patient")
    expr = next(c["expression"] for el in patient["differential"]["element"] for c in el.get("constraint", ())
                if c["key"] == "ar-nhs-1")
    for good in ("9434765919", "9912003888", "9449305552", "9413946000", "4010232137"):
        assert ev(expr, good, type_name="string") == [True], good
    for bad in ("9434765918", "943476591", "94347659190", "94347659l9", "1000000010"):  # 1000000010: check is 10
        assert ev(expr, bad, type_name="string") == [False], bad


def test_memberof_uses_the_caller_terminology():
    env = Env(member_of=lambda item, url: item[0] == "IMP" and url.endswith("classes"))
    assert ev("class.code.memberOf('http://x/classes')", env=env) == [True]
    assert ev("class.code.memberOf('http://x/other')", env=Env(member_of=lambda i, u: False)) == [False]


def test_errors_are_reported_not_guessed():
    with pytest.raises(FhirPathSyntaxError):
        ev("status = ")
    with pytest.raises(FhirPathSyntaxError):
        ev("status ==")
    with pytest.raises(FhirPathError):
        ev("status.noSuchFunction()")
    with pytest.raises(FhirPathError):
        ev("identifier.value and true")  # a collection where a Boolean is needed
    with pytest.raises(FhirPathError):
        ev("identifier.value.matches('^SP')")  # a string function on two strings
    with pytest.raises(FhirPathError):
        ev("%undefined")


def test_variables_and_this():
    env = Env(variables={"wanted": [("SP1", "System.String")]})
    assert ev("identifier.where(value = %wanted).system", env=env) == [
        "https://fhir.leedsth.nhs.uk/Id/hospital-provider-spell"]
    assert ev("identifier.value.where($this.length() > 3)") == ["other"]


def test_compiled_expressions_are_cached():
    from gateway.conformance.fhirpath import compile_expression

    assert compile_expression("status.exists()") is compile_expression("status.exists()")
