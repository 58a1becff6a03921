"""The Encounter and referral an ADT message leaves: status, period, locations and discharge by
event, cancels undoing what they cancel, and the "referral to Active Recovery" a discharge raises."""

from __future__ import annotations

from gateway.adapters.hl7v2.mapping.model import (
    AdtMapping,
)
from gateway.adapters.hl7v2.mapping.pv1 import DISCHARGE_METHOD_EXT
from gateway.adapters.hl7v2.plan_entries import comparable, ensure_profile
from gateway.adapters.hl7v2.plan_order import already_applied, set_last_event
from gateway.adapters.hl7v2.plan_patient import merge_extension, merge_identifiers
from gateway.fhir.jsoncopy import clone

_LIVE_REFERRAL = ("active", "on-hold", "draft")


# --------------------------------------------------------------------------- Encounter


def _ward(location: dict | None) -> tuple | None:
    if not location:
        return None
    ident = location.get("location", {}).get("identifier", {})
    return ident.get("system"), ident.get("value")


def merge_encounter(existing: dict | None, m: AdtMapping, newer: bool) -> dict:
    message = clone(m.encounter)
    msg_locations = message.pop("location", [])
    msg_loc = msg_locations[0] if msg_locations else None
    if existing is None:
        enc = message
        enc["location"] = [msg_loc] if msg_loc else []
        _apply_event(enc, m, msg_loc, message, fresh=True)
        set_last_event(enc, m, None)
        _tidy(enc)
        return enc

    enc = comparable(existing)
    ensure_profile(enc, message)
    enc["identifier"] = merge_identifiers(enc.get("identifier", []), message.get("identifier", []), newer)
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
        merge_extension(hosp, ext, newer)
    if not hosp.get("extension"):
        hosp.pop("extension", None)
    for ext in message.get("extension", []):
        if ext["url"] != DISCHARGE_METHOD_EXT:
            merge_extension(enc, ext, newer)
    _merge_diagnosis(enc, message.get("diagnosis", []))
    locations = enc.setdefault("location", [])

    if newer:
        _apply_event(enc, m, msg_loc, message, fresh=False, already=already_applied(m, existing))
        set_last_event(enc, m, None)
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
        merge_extension(enc, parts["method"], authoritative or overwrite)
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


def plan_referral(m: AdtMapping, existing: dict | None) -> dict | None:
    """The ServiceRequest to write, or None for no write."""
    status = (existing or {}).get("status")
    if m.action == "discharge":
        if m.referral is not None:
            referral = {**comparable(existing), **clone(m.referral)} if existing else clone(m.referral)
            # A re-sent A03 must not reset work the service has started or finished.
            referral["status"] = status if status in ("active", "on-hold", "completed") else "active"
            return referral
        if m.referral_decided and existing is not None and status in _LIVE_REFERRAL:
            return {**comparable(existing), "status": "revoked"}  # corrected A03 no longer qualifies
        return None
    if existing is None:
        return None
    if m.action == "cancel-discharge" and status in _LIVE_REFERRAL:
        return {**comparable(existing), "status": "revoked"}
    if m.action == "cancel-admit" and status in (*_LIVE_REFERRAL, "revoked"):
        return {**comparable(existing), "status": "entered-in-error"}
    return None
