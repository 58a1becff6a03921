"""PV1 -> UK Core Encounter (the hospital provider spell).

Sources: HL72UK A.3 §3.5.3, the v2-to-FHIR IG PV1[Encounter] map, UK Core Encounter.
- PV1-19 (visit number) is the spell id that ties A01..A13 together -> Encounter.identifier,
  in a system scoped to the sending trust (CX-4, else MSH-4).
- PV1-2 patient class -> Encounter.class (v3 ActCode); PV1-3 ward -> Encounter.location.
- PV1-7/8/9/17 attending/referring/consulting/admitting -> participant ATND/REF/CON/ADM.
- PV1-4 NHS admission method -> hospitalization extension admissionMethod; PV1-14 source of
  admission -> hospitalization.admitSource.
- PV1-36/37: discharge method vs destination depends on the feed (see `discharge_codes`).
- PV1-44/45 admit/discharge -> period.start/end (fallback EVN-6).
"""

from __future__ import annotations

from .datatypes import organization_ref, practitioner_ref
from .errors import REQUIRED_FIELD_MISSING, SEGMENT_SEQUENCE, TABLE_VALUE_NOT_FOUND
from .model import PATIENT_REF, REFERRAL_ID, Context

PROFILE = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Encounter"
DISCHARGE_METHOD_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-DischargeMethod"
ADMISSION_METHOD_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-AdmissionMethod"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
LOCATION_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
PARTICIPANTS = ((7, "ATND", "attender"), (8, "REF", "referrer"), (9, "CON", "consultant"), (17, "ADM", "admitter"))


def apply(ctx: Context, status: str | None, required: bool) -> None:
    """Build the Encounter. `status` is what the event implies for a new spell (None: derive);
    `required`: the event is about a visit, so PV1 and PV1-19 must be there."""
    pv1 = ctx.segment("PV1")
    if pv1 is None:
        if required:
            ctx.error("PV1", None, SEGMENT_SEQUENCE, "PV1 segment is missing")
        return
    visit = pv1.get(19).strip()
    if not visit:
        if required:
            ctx.error("PV1", 19, REQUIRED_FIELD_MISSING, "PV1-19 (visit number / spell id) is empty")
        return
    system = ctx.system(ctx.feed.visit_system, pv1.get(19, 0, 4).strip(), "VN")
    ctx.out.encounter_key = (system, visit)
    ctx.out.referral_key = (REFERRAL_ID, f"{ctx.ods}.{visit}")

    patient_class = pv1.get(2).strip().upper()
    encounter_class = ctx.code("hl7v2-patient-class", patient_class)
    if not patient_class:
        ctx.error("PV1", 2, REQUIRED_FIELD_MISSING, "PV1-2 (patient class) is empty")
    elif encounter_class is None:
        ctx.error("PV1", 2, TABLE_VALUE_NOT_FOUND, f"PV1-2 patient class {patient_class!r} is not known")

    start = ctx.time(pv1, 44)
    end = ctx.time(pv1, 45)
    if status is None:
        status = "finished" if end else "planned" if patient_class == "P" else "in-progress"
    if status == "finished":
        end = end or ctx.out.event_time
    if status in ("in-progress", "planned") and ctx.out.action in ("admit", "register", "pre-admit"):
        start = start or ctx.out.event_time
    ctx.out.discharge_time = end

    enc: dict = {
        "resourceType": "Encounter",
        "meta": {"profile": [PROFILE]},
        "identifier": [{"system": system, "value": visit,
                        "type": {"coding": [{"system": V2_0203, "code": "VN"}], "text": "hospital provider spell"}}],
        "status": status,
    }
    if encounter_class:
        enc["class"] = encounter_class
    enc["subject"] = {"reference": PATIENT_REF}
    participants = _participants(ctx, pv1)
    if participants:
        enc["participant"] = participants
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    if period:
        enc["period"] = period
    location = _location(ctx, pv1, 3, "planned" if status == "planned" else "active")
    if location:
        # Only an admission says when the patient arrived on the PV1-3 ward (A02's start is the
        # transfer time, set by the planner); later events name the ward, not its start.
        if start and ctx.out.action in ("admit", "register"):
            location["period"] = {"start": start}
        enc["location"] = [location]
    hospitalization = _hospitalization(ctx, pv1)
    extensions = _discharge_method(ctx, pv1)
    if extensions:
        enc["extension"] = extensions
    if hospitalization:
        enc["hospitalization"] = hospitalization
    if ctx.ods:
        enc["serviceProvider"] = organization_ref(ctx.ods, ctx.feed.name)
    ctx.out.encounter = enc


def _participants(ctx: Context, pv1) -> list[dict]:
    out = []
    local = ctx.system(ctx.feed.staff_system)
    for field_no, code, display in PARTICIPANTS:
        for rep in range(pv1.repetitions(field_no)):
            ref = practitioner_ref(pv1, field_no, rep, local)
            if ref:
                out.append({"type": [{"coding": [{"system": PARTICIPATION, "code": code, "display": display}]}],
                            "individual": ref})
    return out


def location_ref(ctx: Context, seg, field_no: int) -> dict | None:
    """PL (ward^room^bed^facility) -> Reference(Location) by the ward code in the trust's namespace."""
    ward = seg.get(field_no, 0, 1).strip()
    if not ward:
        return None
    details = [f"{label} {v}" for label, c in (("room", 2), ("bed", 3)) if (v := seg.get(field_no, 0, c).strip())]
    facility = seg.get(field_no, 0, 4).strip()
    display = ward + (f" ({', '.join(details)})" if details else "") + (f", {facility}" if facility else "")
    return {"type": "Location", "identifier": {"system": ctx.system(ctx.feed.location_system), "value": ward},
            "display": display}


def _location(ctx: Context, pv1, field_no: int, status: str) -> dict | None:
    ref = location_ref(ctx, pv1, field_no)
    if ref is None:
        return None
    return {"location": ref, "status": status,
            "physicalType": {"coding": [{"system": LOCATION_TYPE, "code": "wa", "display": "Ward"}]}}


def discharge_codes(ctx: Context, pv1) -> tuple[str, str, str]:
    """(method code, destination code, destination location text) from PV1-36/37, per feed.

    NHS England ADT convention: PV1-36 = Discharge Method (1-9), PV1-37 = Destination.
    HL72UK A.3: PV1-36 = Discharge Destination; PV1-37 "discharged to location" is then a
    place, not a code. "auto" decides by shape: one digit = method, two = destination.
    """
    raw36 = pv1.get(36).strip()
    raw37 = pv1.get(37).strip()
    mode = ctx.feed.pv1_36
    method = destination = place = ""
    if mode == "method":
        method, destination = raw36, raw37
    elif mode == "destination":
        destination = raw36
        if raw37:
            if not destination and _is_destination_code(raw37):
                destination = raw37
            else:
                place = raw37
    else:
        if len(raw36) == 1 and raw36.isdigit():
            method = raw36
        elif raw36:
            destination = raw36
        if raw37:
            if not destination and _is_destination_code(raw37):
                destination = raw37
            elif raw37 != destination:
                place = raw37
    return method, destination, place


def _is_destination_code(value: str) -> bool:
    return len(value) == 2 and value.isalnum()


def _discharge_method(ctx: Context, pv1) -> list[dict]:
    method, _, _ = discharge_codes(ctx, pv1)
    concept = ctx.concept("hl7v2-discharge-method", method)
    return [{"url": DISCHARGE_METHOD_EXT, "valueCodeableConcept": concept}] if concept else []


def _hospitalization(ctx: Context, pv1) -> dict:
    out: dict = {}
    admission_method = ctx.concept("hl7v2-admission-method", pv1.get(4).strip())
    if admission_method:
        out["extension"] = [{"url": ADMISSION_METHOD_EXT, "valueCodeableConcept": admission_method}]
    admit_source = ctx.concept("hl7v2-admission-source", pv1.get(14).strip())
    if admit_source:
        out["admitSource"] = admit_source
    _, destination, place = discharge_codes(ctx, pv1)
    if place:
        out["destination"] = {"display": place}
    disposition = ctx.concept("hl7v2-discharge-destination", destination)
    if disposition:
        out["dischargeDisposition"] = disposition
    return out
