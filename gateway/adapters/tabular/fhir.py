"""What every tabular adapter hands the pipeline: `RowResult`s of conditional-PUT entries.

Identifiers are source-scoped (`https://fhir.activerecovery.example/Id/<partner>/<org code>/<kind>`
+ the source's own reference), so re-loading a file finds the same resources and another
partner's record of the same event never overwrites this one. Entry fullUrls are uuid5 of the
resource type and identifier: the same input gives byte-identical output.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from urllib.parse import quote

GATEWAY = "https://fhir.activerecovery.example"
PATIENT_REF = "urn:gateway:patient"  # the pipeline substitutes the matched Patient
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
UKCORE_PROFILE = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-"
SOURCE_TAG_SYSTEM = f"{GATEWAY}/CodeSystem/source-layout"  # meta.tag: which column spec wrote it
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, f"{GATEWAY}/adapters/tabular")


@dataclass
class RowResult:
    line: int  # 1-based line number in the file (header = 1)
    patient: dict | None  # the Patient as this source knows the person
    entries: list[dict] = field(default_factory=list)  # transaction entries, conditional PUT
    errors: list[str] = field(default_factory=list)  # non-empty: the row is rejected
    warnings: list[str] = field(default_factory=list)


def id_system(partner: str, org_code: str, kind: str) -> str:
    """`https://fhir.activerecovery.example/Id/council/E08000035/service`"""
    return f"{GATEWAY}/Id/{partner}/{org_code}/{kind}"


def full_url(resource_type: str, system: str, value: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{resource_type}|{system}|{value}')}"


def search_value(value: str) -> str:
    """An identifier value as it goes into `identifier=<system>|<value>`: FHIR search escapes
    (`\\`, `|`, `,`, `$`), then percent-encoding of anything a URL query cannot carry."""
    escaped = value.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")
    return quote(escaped, safe="-._~:/")


def conditional_url(resource_type: str, system: str, value: str) -> str:
    return f"{resource_type}?identifier={system}|{search_value(value)}"


def conditional_ref(resource_type: str, system: str, value: str) -> dict:
    """A reference to a resource another row (or an earlier file) owns."""
    return {"reference": conditional_url(resource_type, system, value)}


def put_entry(resource_type: str, system: str, value: str, resource: dict) -> dict:
    return {"fullUrl": full_url(resource_type, system, value), "resource": resource,
            "request": {"method": "PUT", "url": conditional_url(resource_type, system, value)}}


def meta(resource_type: str, spec_id: str, profile: bool = True) -> dict:
    """UK Core profile (when UK Core has one for the type) and the tag naming the source layout."""
    out: dict = {"profile": [f"{UKCORE_PROFILE}{resource_type}"]} if profile else {}
    out["tag"] = [{"system": SOURCE_TAG_SYSTEM, "code": spec_id}]
    return out


def identifier(system: str, value: str) -> dict:
    return {"system": system, "value": value}


def org_ref(system: str, code: str, display: str | None = None) -> dict:
    """A logical reference to an organisation by its code (ODS, or the council's code)."""
    ref: dict = {"identifier": {"system": system, "value": code}}
    if display:
        ref["display"] = display
    return ref


def concept(system: str, code: str, display: str | None = None, text: str | None = None) -> dict:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    out: dict = {"coding": [coding]}
    if text:
        out["text"] = text
    return out


def period(start: str | None, end: str | None) -> dict | None:
    out = {k: v for k, v in (("start", start), ("end", end)) if v}
    return out or None


def drop_empty(resource: dict) -> dict:
    """The resource without keys whose value is None, {} or [] (FHIR forbids empty elements).

    Called on every mapped resource of every row, so it is written for speed: exact type checks
    instead of isinstance, and no recursion into strings and numbers."""
    out = {}
    for k, v in resource.items():
        t = type(v)
        if t is dict:
            v = drop_empty(v)
            if v:
                out[k] = v
        elif t is list:
            kept = []
            for x in v:
                if type(x) is dict:
                    x = drop_empty(x)
                    if x:
                        kept.append(x)
                elif x is not None and x != []:
                    kept.append(x)
            if kept:
                out[k] = kept
        elif v is not None and v != "":
            out[k] = v
    return out
