"""Planner: what one ADT message changes in the store, as FHIR transaction entries. Pure.

The runner calls `lookups(m)`, runs each search (current resource with `id` and
`meta.versionId`, or None), calls `plan_writes(m, found)` and executes the entries as one FHIR R4
transaction (urn:uuid references are rewritten by the transaction processor).

Rules the plan keeps:
- Identity: a Patient is found by NHS number first, then local identifiers; an update merges
  identifiers (never drops another source's) and takes demographics from the message.
- Order-proof: each Encounter (and each sender's view of a Patient) carries the last applied
  ADT event in the extension LAST_EVENT_URL (event code + EVN-2 recorded time). A message
  recorded earlier than that only fills gaps; it never moves status, periods or locations back.
  At equal times a cancel beats what it cancels (A13 > A03, A11 > A01, A12 > A02).
- Idempotent and deterministic: planning the same message against the result of planning it
  gives identical resources; no clocks, no random ids (fullUrls are uuid5 of the identifier).
- Referral: an applied A03 whose trigger rule matches creates or re-activates the spell's
  ServiceRequest; an applied A13 revokes it, an A11 marks it entered-in-error, and an A03 that
  no longer matches revokes it. A completed or on-hold referral is not reset by a re-sent A03.
"""

from __future__ import annotations

from dataclasses import replace

from gateway.adapters.hl7v2.mapping.model import (
    CONDITION_REF,
    ENCOUNTER_REF,
    PATIENT_REF,
    REFERRAL_REF,
    AdtMapping,
)
from gateway.adapters.hl7v2.plan_encounter import merge_encounter, plan_referral
from gateway.adapters.hl7v2.plan_entries import (
    comparable, criteria_for, identifier_key, make_entry, planned_reference, resolved_copy, unchanged,
)
from gateway.adapters.hl7v2.plan_order import is_newer, last_event
from gateway.adapters.hl7v2.plan_patient import merge_links, merge_patient

__all__ = ["lookups", "plan_writes", "unchanged"]


# --------------------------------------------------------------------------- lookups


def lookups(m: AdtMapping) -> dict[str, tuple[str, str]]:
    """Searches the runner must run before planning: name -> (resourceType, query string)."""
    out: dict[str, tuple[str, str]] = {}
    for i, key in enumerate(m.patient_keys):
        out["patient" if i == 0 else f"patient_{i}"] = ("Patient", criteria_for(key))
    if m.encounter_key:
        out["encounter"] = ("Encounter", criteria_for(m.encounter_key))
    if m.referral_key and (m.referral is not None or m.action in ("discharge", "cancel-discharge", "cancel-admit")):
        out["referral"] = ("ServiceRequest", criteria_for(m.referral_key))
    for i, condition in enumerate(m.conditions):
        out[f"condition_{i}"] = ("Condition", criteria_for(identifier_key(condition)))
    for i, key in enumerate(m.merge_from):
        out[f"merge_from_{i}"] = ("Patient", criteria_for(key))
    return out


# --------------------------------------------------------------------------- plan


def plan_writes(m: AdtMapping, found: dict[str, dict | None]) -> list[dict]:
    """Transaction Bundle entries for `m`, given the lookups' results. [] when `m` has errors."""
    if m.errors or m.patient is None or not m.patient_keys:
        return []
    # Patient: NHS number hit first, then local identifiers, in lookup order
    existing = next((found.get(name) for name in _patient_lookup_names(m) if found.get(name)), None)
    existing_enc = found.get("encounter") if m.encounter_key else None
    existing_ref = found.get("referral")

    # Every reference target is known before merging (found id, or the uuid5 fullUrl of a
    # create), so merges compare resolved references and re-planning is stable.
    refs = {PATIENT_REF: planned_reference("Patient", existing, m.patient_keys[0])}
    if m.encounter_key:
        refs[ENCOUNTER_REF] = planned_reference("Encounter", existing_enc, m.encounter_key)
    for i, condition in enumerate(m.conditions):
        refs[f"{CONDITION_REF}{i}"] = planned_reference("Condition", found.get(f"condition_{i}"), identifier_key(condition))
    if m.referral_key:
        refs[REFERRAL_REF] = planned_reference("ServiceRequest", existing_ref, m.referral_key)
    m = replace(m, patient=resolved_copy(m.patient, refs), encounter=resolved_copy(m.encounter, refs),
                conditions=[resolved_copy(c, refs) for c in m.conditions], referral=resolved_copy(m.referral, refs))

    entries: list[dict] = []
    patient = merge_patient(existing, m)
    entries.append(make_entry("Patient", patient, existing, m.patient_keys[0]))
    if m.action == "merge":
        entries += merge_links(m, found, patient, existing, refs[PATIENT_REF])

    if m.encounter is None or m.encounter_key is None:
        return entries
    newer = is_newer(m, last_event(existing_enc, None))
    entries.append(make_entry("Encounter", merge_encounter(existing_enc, m, newer), existing_enc, m.encounter_key))
    for i, condition in enumerate(m.conditions):
        existing_c = found.get(f"condition_{i}")
        if existing_c is not None and not newer:
            continue  # an older message does not rewrite a diagnosis a newer one recorded
        merged = {**comparable(existing_c), **condition} if existing_c else condition
        entries.append(make_entry("Condition", merged, existing_c, identifier_key(condition)))
    if newer:
        referral = plan_referral(m, existing_ref)
        if referral is not None:
            entries.append(make_entry("ServiceRequest", referral, existing_ref, m.referral_key))
    return entries


def _patient_lookup_names(m: AdtMapping) -> list[str]:
    return ["patient" if i == 0 else f"patient_{i}" for i in range(len(m.patient_keys))]


# --------------------------------------------------------------------------- entries and references


