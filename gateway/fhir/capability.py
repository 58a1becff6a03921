"""CapabilityStatement built from the route table and search parameters actually in use.

Nothing here is hand-listed: if a route or parameter is added, the statement says so; if one is
removed, it stops claiming it.
"""

from __future__ import annotations

from functools import lru_cache

import orjson

from gateway import __version__
from gateway.fhir.request import FhirRequest, FhirResponse
from gateway.fhir.search_parameters import all_search_types, search_params_for
from gateway.fhir.structure import RESOURCE_TYPES

_INTERACTIONS = {
    ("GET", "{type}/{id}"): "read",
    ("GET", "{type}/{id}/_history/{vid}"): "vread",
    ("PUT", "{type}/{id}"): "update",
    ("PATCH", "{type}/{id}"): "patch",
    ("DELETE", "{type}/{id}"): "delete",
    ("GET", "{type}/{id}/_history"): "history-instance",
    ("GET", "{type}/_history"): "history-type",
    ("POST", "{type}"): "create",
    ("GET", "{type}"): "search-type",
}
_SYSTEM = {("POST", ""): ("transaction", "batch"), ("GET", "_history"): ("history-system",)}
OP_DEFINITIONS = {
    "everything": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
    "translate": "http://hl7.org/fhir/OperationDefinition/ConceptMap-translate",
    "validate": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
    "match": "http://hl7.org/fhir/OperationDefinition/Patient-match",
    "process-message": "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message",
}


@lru_cache(maxsize=4)
def build(base_url: str, profiles: tuple[tuple[str, str, str], ...] = (), security: bytes = b"") -> bytes:
    """`profiles`: (resource type, profile url, base url) of the gateway's own profiles (profiles/);
    `security`: the `rest.security` element as JSON (gateway.security.capability), empty when auth is off."""
    from gateway.fhir.router import ROUTES

    pairs = {(m, p) for methods, p, _ in ROUTES for m in methods}
    interactions = [code for key, code in _INTERACTIONS.items() if key in pairs]
    ops_by_type: dict[str, list[str]] = {}
    system_ops: list[str] = []
    for _, path, _ in ROUTES:
        if "$" not in path:
            continue
        head, op = path.split("/")[0], path.rsplit("$", 1)[1]
        if head.startswith("$"):
            system_ops.append(op)
        else:
            for t in (sorted(RESOURCE_TYPES) if head == "{type}" else [head]):
                if op not in ops_by_type.setdefault(t, []):
                    ops_by_type[t].append(op)
    searchable = set(all_search_types())
    resources = []
    for t in sorted(RESOURCE_TYPES):
        entry: dict = {
            "type": t,
            "interaction": [{"code": c} for c in interactions],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "conditionalRead": "not-supported",
        }
        if t in searchable:
            entry["searchParam"] = [
                {"name": p.name, "type": p.type, **({"definition": p.url} if getattr(p, "url", None) else {})}
                for p in search_params_for(t).values()
            ]
            refs = [p.name for p in search_params_for(t).values() if p.type == "reference"]
            if refs:
                entry["searchInclude"] = [f"{t}:{r}" for r in refs]
        own = [(url, base) for pt, url, base in profiles if pt == t]
        if own:
            bases = sorted({b for _, b in own if b.startswith("https://fhir.hl7.org.uk/")})
            if len(bases) == 1:
                entry["profile"] = bases[0]
            entry["supportedProfile"] = [url for url, _ in own]
        if t in ops_by_type:
            entry["operation"] = [{"name": o, "definition": OP_DEFINITIONS.get(o, o)} for o in ops_by_type[t]]
        resources.append(entry)
    rest: dict = {
        "mode": "server",
        "resource": resources,
        "interaction": [{"code": c} for key, codes in _SYSTEM.items() if key in pairs for c in codes],
    }
    if system_ops:
        rest["operation"] = [{"name": o, "definition": OP_DEFINITIONS.get(o, o)} for o in system_ops]
    if security:
        rest["security"] = orjson.loads(security)
    cs = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-23",
        "kind": "instance",
        "software": {"name": "Active Recovery Gateway", "version": __version__},
        "implementation": {"description": "Active Recovery shared record", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [rest],
    }
    return orjson.dumps(cs)


async def capability_statement(ctx, req: FhirRequest) -> FhirResponse:
    from gateway.security.capability import rest_security

    return FhirResponse(200, body=build(req.base_url, _own_profiles(ctx), rest_security(ctx)))


def _own_profiles(ctx) -> tuple[tuple[str, str, str], ...]:
    from gateway.conformance.policy import checker_for

    registry = checker_for(ctx).validator.registry
    return tuple((t, url, _root_base(registry, url)) for t, url in registry.served_profiles())


def _root_base(registry, url: str) -> str:
    """The first base outside the gateway's own profiles (the UK Core profile ours refine)."""
    seen = set()
    while url in registry.served and url not in seen:
        seen.add(url)
        url = (registry.structure_definition(url) or {}).get("baseDefinition", "")
    return url
