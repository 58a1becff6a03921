"""Order-proof ADT: the last applied event each resource carries, and whether a message is newer.

Each Encounter (and each sender's view of a Patient) carries the last applied ADT event in the
extension LAST_EVENT_URL (event code + EVN-2 recorded time). A message recorded earlier than that
only fills gaps; at equal times a cancel beats what it cancels (A13 > A03, A11 > A01, A12 > A02).
"""

from __future__ import annotations

from datetime import datetime

from gateway.adapters.hl7v2.mapping.datatypes import instant
from gateway.adapters.hl7v2.mapping.model import (
    LAST_EVENT_URL,
    AdtMapping,
)

CANCELS = {"A11": "A01", "A12": "A02", "A13": "A03"}  # cancel event -> the event it undoes


# --------------------------------------------------------------------------- ordering


def last_event(resource: dict | None, source: str | None) -> tuple[str, datetime | None] | None:
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


def is_newer(m: AdtMapping, stored: tuple[str, datetime | None] | None) -> bool:
    if stored is None:
        return True
    stored_event, stored_time = stored
    mine = instant(m.recorded_time)
    if mine is None or stored_time is None:
        return True  # nothing to order by: the message as sent wins
    if mine != stored_time:
        return mine > stored_time
    return CANCELS.get(stored_event) != m.event  # a cancel beats what it cancels at a tie


def set_last_event(resource: dict, m: AdtMapping, source: str | None) -> None:
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


def already_applied(m: AdtMapping, resource: dict | None) -> bool:
    stored = last_event(resource, None)
    return stored is not None and stored[0] == m.event and stored[1] == instant(m.recorded_time)
