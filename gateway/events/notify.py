"""What a subscriber receives: the request for a handshake or a notification, before signing.

Classic R4 rest-hook (FHIR R4 §2.46.7.1): with no `channel.payload` an empty POST to the endpoint;
with a payload the changed resource is PUT to `[endpoint]/[type]/[id]`. The topic-based backport
POSTs a `history` Bundle whose first entry is the SubscriptionStatus (R4: a Parameters resource
with the backport's status profile) carrying the event number, then the focus resource (full),
only its reference (id-only) or nothing (empty). Every request also names itself in headers, so
a receiver can deduplicate by `X-Gateway-Event` even when a notification is sent twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import orjson

from gateway.events.subscriptions import STATUS_PROFILE, SubscriptionSpec, wants_xml
from gateway.formats import render
from gateway.store.base import instant_iso
from gateway.store.sql import now_us


@dataclass
class Outbound:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def gateway_base(settings) -> str:
    return settings.base_url.rstrip("/") if settings.base_url else f"http://{settings.host}:{settings.port}/fhir"


def _headers(spec: SubscriptionSpec) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in spec.headers:
        out[name] = f"{out[name]}, {value}" if name in out else value
    out["X-Gateway-Subscription"] = f"Subscription/{spec.id}"
    return out


def _encode(spec: SubscriptionSpec, resource_bytes: bytes) -> tuple[bytes, str]:
    return render(resource_bytes, "xml" if wants_xml(spec) else "json")


def status_parameters(spec: SubscriptionSpec, base: str, ntype: str, events_total: int,
                      events: list[tuple[int, int, str | None]] = ()) -> dict:
    """The backport SubscriptionStatus for R4; events are (event number, committed µs, focus reference)."""
    params: list[dict] = [
        {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{spec.id}"}},
        {"name": "status", "valueCode": spec.status},
        {"name": "type", "valueCode": ntype},
        {"name": "events-since-subscription-start", "valueString": str(events_total)},
    ]
    if spec.topic is not None:
        params.insert(1, {"name": "topic", "valueCanonical": spec.topic.url})
    for number, committed, focus in events:
        part = [{"name": "event-number", "valueString": str(number)},
                {"name": "timestamp", "valueInstant": instant_iso(committed)}]
        if focus:
            part.append({"name": "focus", "valueReference": {"reference": focus}})
        params.append({"name": "notification-event", "part": part})
    return {"resourceType": "Parameters", "meta": {"profile": [STATUS_PROFILE]}, "parameter": params}


def _bundle(spec: SubscriptionSpec, base: str, status: dict, focus_entry: dict | None) -> bytes:
    entries = [{
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": status,
        "request": {"method": "GET", "url": f"{base}/Subscription/{spec.id}/$status"},
        "response": {"status": "200"},
    }]
    if focus_entry:
        entries.append(focus_entry)
    bundle = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": instant_iso(now_us())},
              "type": "history", "timestamp": instant_iso(now_us()), "entry": entries}
    return orjson.dumps(bundle)


def handshake(spec: SubscriptionSpec, base: str) -> Outbound:
    headers = _headers(spec)
    headers["X-Gateway-Handshake"] = "true"
    if spec.kind == "classic":
        return Outbound("POST", spec.endpoint, headers)
    body, media = _encode(spec, _bundle(spec, base, status_parameters(spec, base, "handshake", 0), None))
    headers["Content-Type"] = media
    return Outbound("POST", spec.endpoint, headers, body)


def event(spec: SubscriptionSpec, base: str, d, content: bytes | None, events_total: int) -> Outbound:
    """The notification of delivery `d`; `content` is the resource version it is about."""
    headers = _headers(spec)
    focus = f"{d.resource_type}/{d.resource_id}"
    headers["X-Gateway-Event"] = f"Subscription/{spec.id}#{d.event_number}"
    headers["X-Gateway-Focus"] = f"{focus}/_history/{d.version}"
    if spec.kind == "classic":
        if spec.content == "full-resource" and content is not None:
            body, media = _encode(spec, content)
            headers["Content-Type"] = media
            return Outbound("PUT", f"{spec.endpoint.rstrip('/')}/{focus}", headers, body)
        return Outbound("POST", spec.endpoint, headers)
    focus_url = f"{base}/{focus}"
    status = status_parameters(spec, base, "event-notification", events_total,
                               [(d.event_number, d.created_at, None if spec.content == "empty" else focus_url)])
    entry = None
    if spec.content != "empty":
        created = d.version == 1
        entry = {"fullUrl": focus_url}
        if spec.content == "full-resource" and content is not None:
            entry["resource"] = orjson.loads(content)
        entry["request"] = {"method": "POST" if created else "PUT", "url": d.resource_type if created else focus}
        entry["response"] = {"status": "201" if created else "200"}
    body, media = _encode(spec, _bundle(spec, base, status, entry))
    headers["Content-Type"] = media
    return Outbound("POST", spec.endpoint, headers, body)
