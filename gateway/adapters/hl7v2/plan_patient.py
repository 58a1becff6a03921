"""The Patient an ADT message leaves: identifiers merged (never another source's dropped),
demographics from the message when it is newer, links for merges (A40)."""

from __future__ import annotations

from gateway.adapters.hl7v2.mapping.model import (
    AdtMapping,
)
from gateway.adapters.hl7v2.plan_entries import comparable, ensure_profile, make_entry
from gateway.adapters.hl7v2.plan_order import is_newer, last_event, set_last_event
from gateway.fhir.jsoncopy import clone

# Patient elements the message owns (replaced when newer, filled when older)
_PATIENT_FIELDS = ("name", "telecom", "gender", "birthDate", "address", "generalPractitioner")


# --------------------------------------------------------------------------- Patient


def merge_patient(existing: dict | None, m: AdtMapping) -> dict:
    message = clone(m.patient)
    source = m.source.get("ods") or None
    if existing is None:
        set_last_event(message, m, source)
        return message
    patient = comparable(existing)
    newer = is_newer(m, last_event(existing, source))
    ensure_profile(patient, message)
    patient["identifier"] = merge_identifiers(patient.get("identifier", []), message.get("identifier", []), newer)
    for name in _PATIENT_FIELDS:
        if name in message and (newer or name not in patient):
            patient[name] = message[name]
    if newer or not ("deceasedDateTime" in patient or "deceasedBoolean" in patient):
        for name in ("deceasedDateTime", "deceasedBoolean"):
            if name in message:
                patient.pop("deceasedBoolean" if name == "deceasedDateTime" else "deceasedDateTime", None)
                patient[name] = message[name]
    for ext in message.get("extension", []):
        merge_extension(patient, ext, newer)
    if newer:
        set_last_event(patient, m, source)
    return patient


def merge_identifiers(current: list[dict], incoming: list[dict], newer: bool) -> list[dict]:
    out = clone(current)
    for ident in incoming:
        same = next((i for i, c in enumerate(out) if c.get("system") == ident["system"]
                     and c.get("value") == ident["value"]), None)
        if same is not None:
            if newer:
                out[same] = {**out[same], **ident}
            continue
        if ident["system"] == "https://fhir.nhs.uk/Id/nhs-number":
            other = next((i for i, c in enumerate(out) if c.get("system") == ident["system"]), None)
            if other is not None:  # UK Core allows one NHS number: a newer message corrects it
                if newer:
                    out[other] = ident
                continue
        out.append(ident)
    return out


def merge_extension(resource: dict, ext: dict, newer: bool) -> None:
    extensions = resource.setdefault("extension", [])
    index = next((i for i, e in enumerate(extensions) if e.get("url") == ext["url"]), None)
    if index is None:
        extensions.append(ext)
    elif newer:
        extensions[index] = ext


def merge_links(m: AdtMapping, found: dict, survivor: dict, survivor_existing: dict | None,
                 survivor_ref: str) -> list[dict]:
    """A40: retired records become inactive and point at the survivor, which points back."""
    entries = []
    seen: set[str] = set()
    for i, key in enumerate(m.merge_from):
        retired = found.get(f"merge_from_{i}")
        if retired is None or retired["id"] in seen:
            continue
        if survivor_existing is not None and retired["id"] == survivor_existing["id"]:
            continue  # already the same record
        seen.add(retired["id"])
        body = comparable(retired)
        body["active"] = False
        _add_link(body, survivor_ref, "replaced-by")
        _add_link(survivor, f"Patient/{retired['id']}", "replaces")
        entries.append(make_entry("Patient", body, retired, key))
    return entries


def _add_link(patient: dict, other: str, link_type: str) -> None:
    links = patient.setdefault("link", [])
    if not any(l.get("other", {}).get("reference") == other and l.get("type") == link_type for l in links):
        links.append({"other": {"reference": other}, "type": link_type})
