"""A Subscription resource read into what the dispatcher and the deliverer need.

Two kinds, told apart by `criteria`:
- classic R4: `criteria` is a search (`ServiceRequest?status=active&performer=Organization/x`);
  a change notifies when the changed resource matches it;
- backport (topic-based): `criteria` is a topic canonical (`topics.py`), narrowed by
  `_criteria` extensions `backport-filter-criteria` (searches on the topic's resource type).

Criteria are compiled here with the REST API's own compiler, so a criteria the API would reject
(an unknown parameter, a bad date) puts the subscription in `error` instead of being half-obeyed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

from gateway.events.topics import TOPICS, Topic
from gateway.fhir.search import split_params
from gateway.fhir.search_parameters import all_search_types
from gateway.store.search_sql import CompiledFilter, SearchError, compile_search

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
FILTER_CRITERIA = f"{BACKPORT}/backport-filter-criteria"
PAYLOAD_CONTENT = f"{BACKPORT}/backport-payload-content"
BACKPORT_PROFILE = f"{BACKPORT}/backport-subscription"
STATUS_PROFILE = f"{BACKPORT}/backport-subscription-status-r4"
SIGNING_SECRET = "https://fhir.activerecovery.example/StructureDefinition/subscription-signing-secret"
PAYLOAD_MODES = ("empty", "id-only", "full-resource")
# Statuses that keep delivery lanes open (an `off` subscription owes nothing; `error` may be resent)
LIVE = ("requested", "active", "error")
# Headers a subscriber may not set through channel.header: they would break the request or forge ours.
_RESERVED = {"host", "content-length", "content-type", "transfer-encoding", "connection"}


@dataclass
class SubscriptionSpec:
    id: str
    version: int
    status: str
    resource: dict
    kind: str = "classic"  # classic | topic
    resource_type: str = ""
    filters: list[tuple[str, str]] = field(default_factory=list)
    topic: Topic | None = None
    channel_type: str = ""
    endpoint: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    mime: str | None = None  # channel.payload
    content: str = "empty"  # empty | id-only | full-resource
    secret: str | None = None
    end_us: int | None = None
    problem: str | None = None  # why it cannot be activated (set -> status error)
    compiled: CompiledFilter | None = None

    def ended(self, now_us: int) -> bool:
        return self.end_us is not None and now_us >= self.end_us


def _ext(element: dict | None, url: str) -> list:
    out = []
    for e in (element or {}).get("extension", []) or []:
        if isinstance(e, dict) and e.get("url") == url:
            out.append(next((v for k, v in e.items() if k.startswith("value")), None))
    return out


def _search(criteria: str, tz: ZoneInfo, expected_type: str | None = None) -> tuple[str, list[tuple[str, str]]]:
    rtype, _, query = criteria.strip().partition("?")
    rtype = rtype.strip("/").rsplit("/", 1)[-1]
    if rtype not in all_search_types():
        raise SearchError(f"criteria {criteria!r} does not start with a searchable resource type", "criteria")
    if expected_type and rtype != expected_type:
        raise SearchError(f"filter criteria {criteria!r} must search {expected_type}", "criteria")
    filters, _ = split_params(parse_qsl(query, keep_blank_values=True))
    return rtype, filters


def parse(resource: dict, version: int, tz: ZoneInfo) -> SubscriptionSpec:
    """Never raises: what cannot be served is reported in `problem`."""
    spec = SubscriptionSpec(id=resource.get("id", ""), version=version, status=resource.get("status", ""),
                            resource=resource)
    channel = resource.get("channel") or {}
    spec.channel_type = channel.get("type", "")
    spec.endpoint = channel.get("endpoint", "") or ""
    spec.mime = channel.get("payload")
    for raw in channel.get("header", []) or []:
        name, sep, value = str(raw).partition(":")
        if any(c in str(raw) for c in "\r\n\x00"):
            spec.problem = "channel.header values may not contain line breaks"
        elif sep and name.strip() and name.strip().lower() not in _RESERVED:
            spec.headers.append((name.strip(), value.strip()))
    secrets = _ext(resource, SIGNING_SECRET) + _ext(channel, SIGNING_SECRET)
    spec.secret = next((s for s in secrets if isinstance(s, str) and s), None)
    if resource.get("end"):
        try:
            spec.end_us = int(datetime.fromisoformat(resource["end"].replace("Z", "+00:00")).timestamp() * 1e6)
        except ValueError:
            spec.problem = f"end {resource['end']!r} is not a FHIR instant"
    criteria = resource.get("criteria") or ""
    try:
        if criteria.startswith(("http://", "https://")):
            spec.kind = "topic"
            spec.topic = TOPICS.get(criteria)
            if spec.topic is None:
                raise SearchError(f"topic {criteria!r} is not offered by this server (see /subscriptions/topics)",
                                  "criteria")
            spec.resource_type = spec.topic.resource_type
            spec.filters = list(spec.topic.current)
            for extra in _ext(resource.get("_criteria"), FILTER_CRITERIA):
                spec.filters += _search(str(extra), tz, spec.resource_type)[1]
            modes = _ext(channel.get("_payload"), PAYLOAD_CONTENT)
            spec.content = modes[0] if modes else ("full-resource" if spec.mime else "empty")
        else:
            spec.resource_type, spec.filters = _search(criteria, tz)
            spec.content = "full-resource" if spec.mime else "empty"
        spec.compiled = compile_search(spec.resource_type, spec.filters, tz=tz, lenient=False)
    except SearchError as exc:
        spec.problem = spec.problem or f"criteria cannot be used: {exc}"
    if spec.content not in PAYLOAD_MODES:
        spec.problem = spec.problem or f"payload content {spec.content!r} is not one of {', '.join(PAYLOAD_MODES)}"
    if spec.mime and spec.mime.split(";")[0].strip() not in ("application/fhir+json", "application/json",
                                                              "application/fhir+xml", "application/xml"):
        spec.problem = spec.problem or f"payload {spec.mime!r} is not application/fhir+json or application/fhir+xml"
    if spec.channel_type != "rest-hook":
        spec.problem = spec.problem or f"channel type {spec.channel_type!r} is not supported (only rest-hook)"
    parts = urlsplit(spec.endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        spec.problem = spec.problem or f"channel.endpoint {spec.endpoint!r} is not an http(s) URL"
    return spec


def wants_xml(spec: SubscriptionSpec) -> bool:
    return bool(spec.mime) and "xml" in spec.mime
