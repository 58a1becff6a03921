"""PID -> UK Core Patient, and the identifiers the patient is matched on.

Sources: HL72UK A.3 §3.5.2 (PID-3 carries every identifier, each with CX-4 assigning authority
and CX-5 type; the NHS number is `n^^^NHS^NH`), the v2-to-FHIR IG PID[Patient] map, UK Core
Patient (slice identifier:nhsNumber with the NHSNumberVerificationStatus extension).
An NHS number is recognised by CX-5 = NH (plus a Modulus-11-valid value), never by CX-4 alone:
PDS-traced numbers may carry X24 or other authorities.
"""

from __future__ import annotations

from gateway.pipeline.identity import normalise_nhs_number

from .datatypes import (
    address,
    contact_point,
    date_only,
    human_name,
    nhs_number_valid,
    organization_ref,
)
from .errors import DATA_TYPE_ERROR, REQUIRED_FIELD_MISSING, SEGMENT_SEQUENCE
from .model import Context

PROFILE = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
VERIFICATION_STATUS_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
ETHNIC_CATEGORY_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
# v2-0203 identifier types worth a coded Identifier.type; others keep the sender's code as text
_TYPED = frozenset({"MR", "PI", "NH", "VN", "AN", "PN", "PT", "PRN"})
_NOT_NHS_AUTHORITIES = frozenset({"CHI", "HC", "HSC"})  # Scottish CHI, NI H&C: type NH, not NHS numbers


def apply(ctx: Context) -> None:
    pid = ctx.segment("PID")
    if pid is None:
        ctx.error("PID", None, SEGMENT_SEQUENCE, "PID segment is missing")
        return
    patient: dict = {"resourceType": "Patient", "meta": {"profile": [PROFILE]}}
    identifiers = _identifiers(ctx, pid)
    if identifiers:
        patient["identifier"] = identifiers
    ctx.out.patient_keys = [(i["system"], i["value"]) for i in identifiers]

    ethnic = ctx.code("hl7v2-ethnic-category", pid.get(22))
    if ethnic:
        patient["extension"] = [{"url": ETHNIC_CATEGORY_EXT, "valueCodeableConcept": {"coding": [ethnic]}}]

    names = [n for r in range(pid.repetitions(5)) if (n := human_name(pid, 5, r, ctx.codes))]
    if names:
        patient["name"] = names
    telecom = [t for r in range(pid.repetitions(13)) if (t := contact_point(pid, 13, r, "home", ctx.codes))]
    telecom += [t for r in range(pid.repetitions(14)) if (t := contact_point(pid, 14, r, "work", ctx.codes))]
    if telecom:
        patient["telecom"] = telecom
    gender = ctx.code("hl7v2-administrative-sex", pid.get(8))
    if gender:
        patient["gender"] = gender["code"]
    if pid.get(7):
        try:
            patient["birthDate"] = date_only(pid.get(7))
        except ValueError:
            ctx.error("PID", 7, DATA_TYPE_ERROR, f"PID-7 {pid.get(7)!r} is not a valid date")
    died = ctx.time(pid, 29)
    if died:
        patient["deceasedDateTime"] = died
    elif pid.get(30).upper() in ("Y", "N"):
        patient["deceasedBoolean"] = pid.get(30).upper() == "Y"
    addresses = [a for r in range(pid.repetitions(11)) if (a := address(pid, 11, r, ctx.codes))]
    if addresses:
        patient["address"] = addresses
    ctx.out.patient = patient


def _identifiers(ctx: Context, pid) -> list[dict]:
    if not pid.get(3):
        ctx.error("PID", 3, REQUIRED_FIELD_MISSING, "PID-3 (patient identifier list) is empty")
        return []
    return identifiers(ctx, pid, 3)


def identifiers(ctx: Context, seg, field_no: int, sequence: int = 1) -> list[dict]:
    """A repeating CX field -> Identifiers: the NHS number first (at most one), then local ones.

    A number typed NH that fails Modulus 11 is reported (102) and left out, never stored as a
    local identifier: a mistyped NHS number must not become a matching key.
    """
    nhs: dict | None = None
    local: list[dict] = []
    for rep in range(seg.repetitions(field_no)):
        value = seg.get(field_no, rep, 1).strip()
        authority = seg.get(field_no, rep, 4).strip()
        type_code = seg.get(field_no, rep, 5).strip().upper()
        if not value:
            continue
        is_nhs = (type_code.startswith("NH") and authority.upper() not in _NOT_NHS_AUTHORITIES) or (
            not type_code and authority.upper() == "NHS"
        )
        if is_nhs:
            number = normalise_nhs_number(value) or value  # digits only, as `943 476 5919` is written
            where = f"{seg.name}-{field_no}"
            if not nhs_number_valid(number):
                ctx.error(seg.name, field_no, DATA_TYPE_ERROR,
                          f"{where}: NHS number {value!r} fails the Modulus 11 check", sequence)
                continue
            if number[0] in "89" and not ctx.feed.allow_test_nhs_numbers and ctx.msg.processing_id == "P":
                ctx.error(seg.name, field_no, DATA_TYPE_ERROR,
                          f"{where}: NHS number {value!r} is in a test range (never issued)", sequence)
                continue
            if nhs is None:
                nhs = _nhs_identifier(ctx, seg, number, type_code) if seg.name == "PID" else {
                    "system": NHS_NUMBER, "value": number}
            continue
        identifier = _local_identifier(ctx, value, authority, type_code)
        if (identifier["system"], identifier["value"]) not in {(i["system"], i["value"]) for i in local}:
            local.append(identifier)
    return ([nhs] if nhs else []) + local


def _nhs_identifier(ctx: Context, pid, number: str, type_code: str) -> dict:
    identifier: dict = {"system": NHS_NUMBER, "value": number}
    status = verification_status(ctx, pid, type_code)
    if status:
        identifier["extension"] = [{"url": VERIFICATION_STATUS_EXT, "valueCodeableConcept": {"coding": [status]}}]
    return identifier


def verification_status(ctx: Context, pid, type_code: str = ""):
    """NHS Number Status Indicator: PID-32 (`NSTS01`), else ZU1-27 (`01`), else a CX-5 suffix (`NH01`)."""
    candidates = [pid.get(32, r) for r in range(pid.repetitions(32))]
    zu1 = ctx.segment("ZU1")
    if zu1 is not None:
        candidates.append(zu1.get(27))
    candidates.append(type_code[2:])
    for raw in candidates:
        digits = "".join(ch for ch in raw if ch.isdigit())
        if digits and len(digits) <= 2:
            coding = ctx.code("hl7v2-nhs-number-verification-status", digits.zfill(2))
            if coding:
                return coding
    return None


def _local_identifier(ctx: Context, value: str, authority: str, type_code: str) -> dict:
    feed = ctx.feed
    override = feed.identifier_systems.get(f"{authority}^{type_code}") or feed.identifier_systems.get(f"^{type_code}")
    if override:
        system = ctx.system(override, authority, type_code)
    elif type_code in feed.mrn_types:
        system = ctx.system(feed.mrn_system, authority, type_code)
    else:
        system = ctx.system(feed.other_identifier_system, authority, type_code)
    identifier: dict = {"system": system, "value": value}
    if type_code in _TYPED:
        identifier["type"] = {"coding": [{"system": V2_0203, "code": type_code}]}
    elif type_code:
        identifier["type"] = {"text": type_code}
    # CX-4 is a namespace (it may be "QE" or "PAS", not an ODS code), so it shapes the system;
    # the assigner is the sending trust.
    if ctx.ods:
        identifier["assigner"] = organization_ref(ctx.ods)
    return identifier
