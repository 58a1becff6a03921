"""Planner building blocks: search criteria, transaction entries with stable fullUrls, reference
placeholders resolved, and the comparisons that let a runner skip writes that change nothing."""

from __future__ import annotations

import uuid

from gateway.adapters.hl7v2.mapping.model import Key
from gateway.fhir.bundles import rewrite_references
from gateway.fhir.jsoncopy import clone

_NAMESPACE = uuid.UUID("6f1c1c4e-3b7a-5d0e-9a55-6163746976e5")  # fixed: fullUrls are stable across runs


def criteria_for(key: Key) -> str:
    system, value = key
    return f"identifier={_escape(system)}|{_escape(value)}"


def _escape(text: str) -> str:
    """FHIR search escaping for token parts (`\\`, `,`, `|`, `$`)."""
    for ch in ("\\", ",", "|", "$"):
        text = text.replace(ch, "\\" + ch)
    return text


def identifier_key(resource: dict) -> Key:
    identifier = resource["identifier"][0]
    return identifier["system"], identifier["value"]


def unchanged(entry: dict, current: dict | None) -> bool:
    """True when writing `entry` would not change `current` (meta.versionId/lastUpdated aside),
    so the runner may skip it."""
    return current is not None and comparable(current) == comparable(entry["resource"])


def _full_url(resource_type: str, key: Key) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{resource_type}|{key[0]}|{key[1]}')}"


def planned_reference(resource_type: str, existing: dict | None, key: Key) -> str:
    return f"{resource_type}/{existing['id']}" if existing is not None else _full_url(resource_type, key)


def make_entry(resource_type: str, resource: dict, existing: dict | None, key: Key) -> dict:
    full_url = _full_url(resource_type, key)
    if existing is None:
        return {"fullUrl": full_url, "resource": resource,
                "request": {"method": "POST", "url": resource_type, "ifNoneExist": criteria_for(key)}}
    resource["id"] = existing["id"]
    request = {"method": "PUT", "url": f"{resource_type}/{existing['id']}"}
    version = (existing.get("meta") or {}).get("versionId")
    if version:
        request["ifMatch"] = f'W/"{version}"'
    return {"fullUrl": full_url, "resource": resource, "request": request}


def resolved_copy(resource: dict | None, refs: dict[str, str]) -> dict | None:
    """A deep copy of a mapped resource with placeholder references (urn:gateway:...) resolved
    (on its JSON bytes, which also makes the copy, rather than by a walk in Python)."""
    if resource is None:
        return None
    out = rewrite_references(resource, refs)
    return clone(resource) if out is resource else out


def comparable(resource: dict | None) -> dict:
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


def ensure_profile(resource: dict, message_resource: dict) -> None:
    profiles = (message_resource.get("meta") or {}).get("profile", [])
    meta = resource.setdefault("meta", {})
    current = meta.setdefault("profile", [])
    for p in profiles:
        if p not in current:
            current.append(p)
