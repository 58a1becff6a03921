"""DG1 -> UK Core Condition (encounter diagnosis), linked from Encounter.diagnosis.

Sources: the v2-to-FHIR IG DG1[Condition] map (DG1-3 code, DG1-5 date, DG1-20 identifier,
DG1-21 action D -> entered-in-error), HL72UK (diagnoses are ICD-10 in the NHS). Diagnoses
belong to a spell: without a PV1-19 there is nothing to hang them on, so they are skipped.
Each Condition needs a stable identifier for upserts; DG1-20 when sent, else spell + code.
"""

from __future__ import annotations

from .errors import REQUIRED_FIELD_MISSING
from .model import CONDITION_REF, ENCOUNTER_REF, GATEWAY, PATIENT_REF, Context

PROFILE = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Condition"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
SNOMED = "http://snomed.info/sct"
CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
DIAGNOSIS_ID = f"{GATEWAY}/Id/hl7v2-diagnosis"
# DG1-3.3 coding system names (HL7 table 0396 and the spellings NHS PAS use)
_SYSTEMS = {"": ICD10, "I10": ICD10, "ICD10": ICD10, "ICD-10": ICD10, "I10UK": ICD10, "I10-UK": ICD10,
            "ICD10UK": ICD10, "SCT": SNOMED, "SNM": SNOMED, "SNOMED": SNOMED, "SNOMEDCT": SNOMED}
# DG1-6 diagnosis type (table 0052) -> verification status
_VERIFICATION = {"F": "confirmed", "W": "provisional", "A": "provisional"}


def apply(ctx: Context) -> None:
    enc = ctx.out.encounter
    key = ctx.out.encounter_key
    if enc is None or key is None:
        return
    seen: set[str] = set()
    diagnosis: list[dict] = []
    for sequence, dg1 in enumerate(ctx.msg.segments_named("DG1"), 1):
        code = dg1.get(3, 0, 1).strip()
        if not code:
            ctx.error("DG1", 3, REQUIRED_FIELD_MISSING, "DG1-3 (diagnosis code) is empty", sequence)
            continue
        name = dg1.get(3, 0, 3).strip().upper()
        system = _SYSTEMS.get(name)
        if system == ICD10:
            code = icd10(code)
        coding = {"system": system or f"{GATEWAY}/CodeSystem/hl7v2-{name.lower() or 'local'}", "code": code}
        display = dg1.get(3, 0, 2).strip() or dg1.get(4).strip()
        if display:
            coding["display"] = display
        ident_value = dg1.get(20, 0, 1).strip()
        if ident_value:
            namespace = dg1.get(20, 0, 2).strip() or ctx.ods
            identifier = {"system": f"{DIAGNOSIS_ID}/{namespace}", "value": ident_value}
        else:
            identifier = {"system": DIAGNOSIS_ID, "value": f"{ctx.ods}.{key[1]}.{code}"}
        if identifier["value"] in seen:
            continue
        seen.add(identifier["value"])

        condition: dict = {
            "resourceType": "Condition",
            "meta": {"profile": [PROFILE]},
            "identifier": [identifier],
            "category": [{"coding": [{"system": CATEGORY, "code": "encounter-diagnosis",
                                      "display": "Encounter Diagnosis"}]}],
            "code": {"coding": [coding]},
            "subject": {"reference": PATIENT_REF},
            "encounter": {"reference": ENCOUNTER_REF},
        }
        if display:
            condition["code"]["text"] = display
        status = "entered-in-error" if dg1.get(21).strip().upper() == "D" else _VERIFICATION.get(dg1.get(6).strip().upper())
        if status:
            condition["verificationStatus"] = {"coding": [{"system": VERIFICATION, "code": status}]}
        recorded = ctx.time(dg1, 5, sequence)
        if recorded:
            condition["recordedDate"] = recorded
        index = len(ctx.out.conditions)
        ctx.out.conditions.append(condition)

        entry: dict = {"condition": {"reference": f"{CONDITION_REF}{index}"}}
        use = ctx.code("hl7v2-diagnosis-type", dg1.get(6).strip().upper())
        if use:
            entry["use"] = {"coding": [use]}
        priority = dg1.get(15).strip()
        if priority.isdigit() and int(priority) > 0:
            entry["rank"] = int(priority)
        diagnosis.append(entry)
    if diagnosis:
        enc["diagnosis"] = diagnosis


def icd10(code: str) -> str:
    """NHS PAS often send ICD-10 without the dot ("I639"); the FHIR ICD-10 system uses "I63.9"."""
    code = code.strip().upper()
    if len(code) > 3 and "." not in code and code[0].isalpha() and code[1:3].isdigit():
        return f"{code[:3]}.{code[3:]}"
    return code
