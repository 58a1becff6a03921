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

import uuid
from dataclasses import replace
from datetime import datetime

from gateway.adapters.hl7v2.mapping.datatypes import instant
from gateway.adapters.hl7v2.mapping.model import (
    CONDITION_REF, ENCOUNTER_REF, LAST_EVENT_URL, PATIENT_REF, REFERRAL_REF, AdtMapping, Key,
)
from gateway.adapters.hl7v2.mapping.pv1 import DISCHARGE_METHOD_EXT
from gateway.fhir.jsoncopy import clone

_NAMESPACE = uuid.UUID("6f1c1c4e-3b7a-5d0e-9a55-6163746976e5")  # fixed: fullUrls are stable across runs
CANCELS = {"A11": "A01", "A12": "A02", "A13": "A03"}  # cancel event -> the event it undoes
_LIVE_REFERRAL = ("active", "on-hold", "draft")
# Patient elements the message owns (replaced when newer, filled when older)
_PATIENT_FIELDS = ("name", "telecom", "gender", "birthDate", "address", "generalPractitioner")


# --------------------------------------------------------------------------- lookups


def lookups(m: AdtMapping) -> dict[str, tuple[str, str]]:
    """Searches the runner must run before planning: name -> (resourceType, query string)."""
    out: dict[str, tuple[str, str]] = {}
    for i, key in enumerate(m.patient_keys):
        out["patient" if i == 0 else f"patient_{i}"] = ("Patient", _query(key))
    if m.encounter_key:
        out["encounter"] = ("Encounter", _query(m.encounter_key))
    if m.referral_key and (m.referral is not None or m.action in ("discharge", "cancel-discharge", "cancel-admit")):
        out["referral"] = ("ServiceRequest", _query(m.referral_key))
    for i, condition in enumerate(m.conditions):
        out[f"condition_{i}"] = ("Condition", _query(_key(condition)))
    for i, key in enumerate(m.merge_from):
        out[f"merge_from_{i}"] = ("Patient", _query(key))
    return out


def _query(key: Key) -> str:
    system, value = key
    return f"identifier={_escape(system)}|{_escape(value)}"


def _escape(text: str) -> str:
    """FHIR search escaping for token parts (`\\`, `,`, `|`, `$`)."""
    for ch in ("\\", ",", "|", "$"):
        text = text.replace(ch, "\\" + ch)
    return text


def _key(resource: dict) -> Key:
    identifier = resource["identifier"][0]
    return identifier["system"], identifier["value"]


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
    refs = {PATIENT_REF: _planned_ref("Patient", existing, m.patient_keys[0])}
    if m.encounter_key:
        refs[ENCOUNTER_REF] = _planned_ref("Encounter", existing_enc, m.encounter_key)
    for i, condition in enumerate(m.conditions):
        refs[f"{CONDITION_REF}{i}"] = _planned_ref("Condition", found.get(f"condition_{i}"), _key(condition))
    if m.referral_key:
        refs[REFERRAL_REF] = _planned_ref("ServiceRequest", existing_ref, m.referral_key)
    m = replace(m, patient=_resolved(m.patient, refs), encounter=_resolved(m.encounter, refs),
                conditions=[_resolved(c, refs) for c in m.conditions], referral=_resolved(m.referral, refs))

    entries: list[dict] = []
    patient = _merge_patient(existing, m)
    entries.append(_entry("Patient", patient, existing, m.patient_keys[0]))
    if m.action == "merge":
        entries += _merge_links(m, found, patient, existing, refs[PATIENT_REF])

    if m.encounter is None or m.encounter_key is None:
        return entries
    newer = _is_newer(m, _last_event(existing_enc, None))
    entries.append(_entry("Encounter", _merge_encounter(existing_enc, m, newer), existing_enc, m.encounter_key))
    for i, condition in enumerate(m.conditions):
        existing_c = found.get(f"condition_{i}")
        if existing_c is not None and not newer:
            continue  # an older message does not rewrite a diagnosis a newer one recorded
        merged = {**_strip(existing_c), **condition} if existing_c else condition
        entries.append(_entry("Condition", merged, existing_c, _key(condition)))
    if newer:
        referral = _plan_referral(m, existing_ref)
        if referral is not None:
            entries.append(_entry("ServiceRequest", referral, existing_ref, m.referral_key))
    return entries


def unchanged(entry: dict, current: dict | None) -> bool:
    """True when writing `entry` would not change `current` (meta.versionId/lastUpdated aside),
    so the runner may skip it."""
    return current is not None and _strip(current) == _strip(entry["resource"])


def _patient_lookup_names(m: AdtMapping) -> list[str]:
    return ["patient" if i == 0 else f"patient_{i}" for i in range(len(m.patient_keys))]


# --------------------------------------------------------------------------- entries and references


def _full_url(resource_type: str, key: Key) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{resource_type}|{key[0]}|{key[1]}')}"


def _planned_ref(resource_type: str, existing: dict | None, key: Key) -> str:
    return f"{resource_type}/{existing['id']}" if existing is not None else _full_url(resource_type, key)


def _entry(resource_type: str, resource: dict, existing: dict | None, key: Key) -> dict:
    full_url = _full_url(resource_type, key)
    if existing is None:
        return {"fullUrl": full_url, "resource": resource,
                "request": {"method": "POST", "url": resource_type, "ifNoneExist": _query(key)}}
    resource["id"] = existing["id"]
    request = {"method": "PUT", "url": f"{resource_type}/{existing['id']}"}
    version = (existing.get("meta") or {}).get("versionId")
    if version:
        request["ifMatch"] = f'W/"{version}"'
    return {"fullUrl": full_url, "resource": resource, "request": request}


def _resolved(resource: dict | None, refs: dict[str, str]) -> dict | None:
    """A deep copy of a mapped resource with placeholder references (urn:gateway:...) resolved."""
    if resource is None:
        return None
    out = clone(resource)
    _resolve(out, refs)
    return out


def _resolve(node, refs: dict[str, str]) -> None:
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and ref in refs:
            node["reference"] = refs[ref]
        for value in node.values():
            _resolve(value, refs)
    elif isinstance(node, list):
        for value in node:
            _resolve(value, refs)


def _strip(resource: dict | None) -> dict:
    """A stored resource as a PUT body: server-managed meta removed."""
    if not resource:
        return {}
    out = clone(resource)
    meta = {k: v for k, v in (out.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        out["meta"] = meta
    else:
        out.pop("meta", None)
    return out


def _ensure_profile(resource: dict, message_resource: dict) -> None:
    profiles = (message_resource.get("meta") or {}).get("profile", [])
    meta = resource.setdefault("meta", {})
    current = meta.setdefault("profile", [])
    for p in profiles:
        if p not in current:
            current.append(p)


# --------------------------------------------------------------------------- ordering


def _last_event(resource: dict | None, source: str | None) -> tuple[str, datetime | None] | None:
    """(event, recorded time) of the LAST_EVENT_URL extension (for `source`, on a Patient)."""
    ext = _find_last_event_ext(resource, source)
    if ext is None:
        return None
    parts = {e.get("url"): e for e in ext.get("extension", [])}
    event = parts.get("event", {}).get("valueCode", "")
    return event, instant(parts.get("recorded", {}).get("valueDateTime"))


def _find_last_event_ext(resource: dict | None, source: str | None) -> dict | None:
    for ext in (resource or {}).get("extension", []):
        if ext.get("url") != LAST_EVENT_URL:
            continue
        if source is None:
            return ext
        ext_source = next((e.get("valueIdentifier", {}).get("value") for e in ext.get("extension", [])
                           if e.get("url") == "source"), None)
        if ext_source == source:
            return ext
    return None


def _is_newer(m: AdtMapping, stored: tuple[str, datetime | None] | None) -> bool:
    if stored is None:
        return True
    stored_event, stored_time = stored
    mine = instant(m.recorded_time)
    if mine is None or stored_time is None:
        return True  # nothing to order by: the message as sent wins
    if mine != stored_time:
        return mine > stored_time
    return CANCELS.get(stored_event) != m.event  # a cancel beats what it cancels at a tie


def _set_last_event(resource: dict, m: AdtMapping, source: str | None) -> None:
    parts: list[dict] = [{"url": "event", "valueCode": m.event}]
    if m.recorded_time:
        parts.append({"url": "recorded", "valueDateTime": m.recorded_time})
    if source is not None:
        parts.append({"url": "source", "valueIdentifier": {
            "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": source}})
    new = {"url": LAST_EVENT_URL, "extension": parts}
    extensions = resource.setdefault("extension", [])
    old = _find_last_event_ext(resource, source)
    if old is not None:
        extensions[extensions.index(old)] = new
    else:
        extensions.append(new)


def _already_applied(m: AdtMapping, resource: dict | None) -> bool:
    stored = _last_event(resource, None)
    return stored is not None and stored[0] == m.event and stored[1] == instant(m.recorded_time)


# --------------------------------------------------------------------------- Patient


def _merge_patient(existing: dict | None, m: AdtMapping) -> dict:
    message = clone(m.patient)
    source = m.source.get("ods") or None
    if existing is None:
        _set_last_event(message, m, source)
        return message
    patient = _strip(existing)
    newer = _is_newer(m, _last_event(existing, source))
    _ensure_profile(patient, message)
    patient["identifier"] = _merge_identifiers(patient.get("identifier", []), message.get("identifier", []), newer)
    for name in _PATIENT_FIELDS:
        if name in message and (newer or name not in patient):
            patient[name] = message[name]
    if newer or not ("deceasedDateTime" in patient or "deceasedBoolean" in patient):
        for name in ("deceasedDateTime", "deceasedBoolean"):
            if name in message:
                patient.pop("deceasedBoolean" if name == "deceasedDateTime" else "deceasedDateTime", None)
                patient[name] = message[name]
    for ext in message.get("extension", []):
        _merge_extension(patient, ext, newer)
    if newer:
        _set_last_event(patient, m, source)
    return patient


def _merge_identifiers(current: list[dict], incoming: list[dict], newer: bool) -> list[dict]:
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


def _merge_extension(resource: dict, ext: dict, newer: bool) -> None:
    extensions = resource.setdefault("extension", [])
    index = next((i for i, e in enumerate(extensions) if e.get("url") == ext["url"]), None)
    if index is None:
        extensions.append(ext)
    elif newer:
        extensions[index] = ext


def _merge_links(m: AdtMapping, found: dict, survivor: dict, survivor_existing: dict | None,
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
        body = _strip(retired)
        body["active"] = False
        _add_link(body, survivor_ref, "replaced-by")
        _add_link(survivor, f"Patient/{retired['id']}", "replaces")
        entries.append(_entry("Patient", body, retired, key))
    return entries


def _add_link(patient: dict, other: str, link_type: str) -> None:
    links = patient.setdefault("link", [])
    if not any(l.get("other", {}).get("reference") == other and l.get("type") == link_type for l in links):
        links.append({"other": {"reference": other}, "type": link_type})


# --------------------------------------------------------------------------- Encounter


def _ward(location: dict | None) -> tuple | None:
    if not location:
        return None
    ident = location.get("location", {}).get("identifier", {})
    return ident.get("system"), ident.get("value")


def _merge_encounter(existing: dict | None, m: AdtMapping, newer: bool) -> dict:
    message = clone(m.encounter)
    msg_locations = message.pop("location", [])
    msg_loc = msg_locations[0] if msg_locations else None
    if existing is None:
        enc = message
        enc["location"] = [msg_loc] if msg_loc else []
        _apply_event(enc, m, msg_loc, message, fresh=True)
        _set_last_event(enc, m, None)
        _tidy(enc)
        return enc

    enc = _strip(existing)
    _ensure_profile(enc, message)
    enc["identifier"] = _merge_identifiers(enc.get("identifier", []), message.get("identifier", []), newer)
    for name in ("class", "subject", "participant", "serviceProvider"):
        if name in message and (newer or name not in enc):
            enc[name] = message[name]
    if "start" in message.get("period", {}) and (newer or "start" not in enc.get("period", {})):
        enc.setdefault("period", {})["start"] = message["period"]["start"]
    hosp = enc.setdefault("hospitalization", {})
    msg_hosp = message.get("hospitalization", {})
    if "admitSource" in msg_hosp and (newer or "admitSource" not in hosp):
        hosp["admitSource"] = msg_hosp["admitSource"]
    for ext in msg_hosp.get("extension", []):
        _merge_extension(hosp, ext, newer)
    if not hosp.get("extension"):
        hosp.pop("extension", None)
    for ext in message.get("extension", []):
        if ext["url"] != DISCHARGE_METHOD_EXT:
            _merge_extension(enc, ext, newer)
    _merge_diagnosis(enc, message.get("diagnosis", []))
    locations = enc.setdefault("location", [])

    if newer:
        _apply_event(enc, m, msg_loc, message, fresh=False, already=_already_applied(m, existing))
        _set_last_event(enc, m, None)
    else:
        # Older than what is stored: fill gaps only, never move status, locations or discharge back
        if not locations and msg_loc:
            loc = clone(msg_loc)
            if enc.get("status") == "finished":
                loc["status"] = "completed"
            locations.append(loc)
        if enc.get("status") == "finished":
            _set_discharge(enc, m, message, authoritative=False)
    _tidy(enc)
    return enc


def _apply_event(enc: dict, m: AdtMapping, msg_loc: dict | None, message: dict, fresh: bool,
                 already: bool = False) -> None:
    """What the newest event does to status, locations and discharge details."""
    locations = enc.setdefault("location", [])
    action = m.action
    last = locations[-1] if locations else None
    status = enc.get("status")

    if action in ("admit", "register"):
        # Only an A13 reopens a finished spell: a stray late admit must not.
        if status != "finished" or fresh:
            enc["status"] = "in-progress"
        if not locations and msg_loc:
            locations.append(msg_loc)
        elif last is not None and last.get("status") == "planned":
            locations[-1] = msg_loc or {**last, "status": "active"}  # the planned bed is now taken
    elif action == "pre-admit":
        if status in (None, "planned") or fresh:
            enc["status"] = "planned"
        if not locations and msg_loc:
            locations.append(msg_loc)
    elif action == "transfer":
        if status in (None, "planned"):
            enc["status"] = "in-progress"
        if msg_loc and not fresh and not already:
            if last is not None and _ward(last) == _ward(msg_loc):
                last["location"] = msg_loc["location"]  # same ward: a bed move refreshes the display
            else:
                if last is not None:
                    last["status"] = "completed"
                    if m.transfer_time:
                        last.setdefault("period", {})["end"] = m.transfer_time
                new = clone(msg_loc)
                new["status"] = "active"
                if m.transfer_time:
                    new["period"] = {"start": m.transfer_time}
                locations.append(new)
        elif msg_loc and fresh and m.transfer_time:
            msg_loc["period"] = {"start": m.transfer_time}
    elif action == "discharge":
        enc["status"] = "finished"
        if msg_loc and (last is None or _ward(last) != _ward(msg_loc)) and not fresh:
            if last is not None:
                last["status"] = "completed"  # left it for a ward we never heard of; when is unknown
            locations.append(clone(msg_loc))
        if locations:
            locations[-1]["status"] = "completed"
            if m.discharge_time:
                locations[-1].setdefault("period", {})["end"] = m.discharge_time
        _set_discharge(enc, m, message, authoritative=True)
    elif action == "cancel-discharge":
        enc["status"] = "in-progress"
        _clear_discharge(enc)
        if locations:
            locations[-1]["status"] = "active"
            locations[-1].get("period", {}).pop("end", None)
    elif action == "cancel-transfer":
        if status in (None, "planned"):
            enc["status"] = "in-progress"
        if not fresh and len(locations) >= 2:
            back_to = _ward(msg_loc)
            if (back_to is not None and _ward(last) != back_to) or (back_to is None and not already):
                locations.pop()
                locations[-1]["status"] = "active"
                locations[-1].get("period", {}).pop("end", None)
    elif action == "cancel-admit":
        enc["status"] = "entered-in-error"
    elif action == "update":
        if status is None or fresh:
            enc["status"] = message.get("status", "in-progress")
        if msg_loc and not fresh:
            if last is None:
                locations.append(msg_loc)
            elif last.get("status") == "active":
                last["location"] = msg_loc["location"]  # A08 corrects where the patient is now
        if enc.get("status") == "finished":
            _set_discharge(enc, m, message, authoritative=False, overwrite=True)
    if fresh and enc.get("status") != "finished":
        _clear_discharge(enc)  # e.g. an A13 arriving first still carries the old discharge fields
    elif fresh and locations:
        locations[-1]["status"] = "completed"
        end = enc.get("period", {}).get("end")
        if end:
            locations[-1].setdefault("period", {})["end"] = end


def _discharge_parts(message: dict) -> dict:
    hosp = message.get("hospitalization", {})
    method = next((e for e in message.get("extension", []) if e["url"] == DISCHARGE_METHOD_EXT), None)
    return {"end": message.get("period", {}).get("end"), "dischargeDisposition": hosp.get("dischargeDisposition"),
            "destination": hosp.get("destination"), "method": method}


def _set_discharge(enc: dict, m: AdtMapping, message: dict, authoritative: bool, overwrite: bool = False) -> None:
    """Discharge facts from the message. `authoritative` (an A03): absent facts are removed;
    otherwise present facts overwrite (`overwrite`) or only fill gaps."""
    parts = _discharge_parts(message)
    parts["end"] = parts["end"] or (m.discharge_time if m.action == "discharge" else None)
    hosp = enc.setdefault("hospitalization", {})
    period = enc.setdefault("period", {})
    slots = ((period, "end", parts["end"]), (hosp, "dischargeDisposition", parts["dischargeDisposition"]),
             (hosp, "destination", parts["destination"]))
    for target, name, value in slots:
        if value is not None and (authoritative or overwrite or name not in target):
            target[name] = value
        elif value is None and authoritative:
            target.pop(name, None)
    if parts["method"] is not None:
        _merge_extension(enc, parts["method"], authoritative or overwrite)
    elif authoritative:
        enc["extension"] = [e for e in enc.get("extension", []) if e.get("url") != DISCHARGE_METHOD_EXT]


def _clear_discharge(enc: dict) -> None:
    enc.get("period", {}).pop("end", None)
    hosp = enc.get("hospitalization", {})
    hosp.pop("dischargeDisposition", None)
    hosp.pop("destination", None)
    if "extension" in enc:
        enc["extension"] = [e for e in enc["extension"] if e.get("url") != DISCHARGE_METHOD_EXT]


def _merge_diagnosis(enc: dict, incoming: list[dict]) -> None:
    current = enc.setdefault("diagnosis", [])
    for entry in incoming:
        ref = entry["condition"]["reference"]
        index = next((i for i, d in enumerate(current) if d.get("condition", {}).get("reference") == ref), None)
        if index is None:
            current.append(clone(entry))


def _tidy(resource: dict) -> None:
    """Drop containers left empty by merging, so an unchanged spell re-plans identically."""
    for location in resource.get("location", []):
        if "period" in location and not location["period"]:
            del location["period"]
    for name in ("location", "diagnosis", "extension", "participant"):
        if name in resource and not resource[name]:
            del resource[name]
    for name in ("period", "hospitalization"):
        if name in resource and not resource[name]:
            del resource[name]


# --------------------------------------------------------------------------- referral


def _plan_referral(m: AdtMapping, existing: dict | None) -> dict | None:
    """The ServiceRequest to write, or None for no write."""
    status = (existing or {}).get("status")
    if m.action == "discharge":
        if m.referral is not None:
            referral = {**_strip(existing), **clone(m.referral)} if existing else clone(m.referral)
            # A re-sent A03 must not reset work the service has started or finished.
            referral["status"] = status if status in ("active", "on-hold", "completed") else "active"
            return referral
        if m.referral_decided and existing is not None and status in _LIVE_REFERRAL:
            return {**_strip(existing), "status": "revoked"}  # corrected A03 no longer qualifies
        return None
    if existing is None:
        return None
    if m.action == "cancel-discharge" and status in _LIVE_REFERRAL:
        return {**_strip(existing), "status": "revoked"}
    if m.action == "cancel-admit" and status in (*_LIVE_REFERRAL, "revoked"):
        return {**_strip(existing), "status": "entered-in-error"}
    return None
