"""`$validate` at type and instance level (FHIR R4 Resource-validate).

Answers 200 with an OperationOutcome whether or not the resource is valid, as the operation
defines; 4xx only when the request itself cannot be understood. The checks are the ones a write
gets (structure, declared and configured profiles, extensions) plus the `profile` asked for.
"""

from __future__ import annotations

import orjson

from gateway.fhir.outcome import Issue, bad_request, gone, not_found, operation_outcome
from gateway.fhir.request import FhirRequest, FhirResponse

MODES = ("create", "update", "delete")


def _inputs(req: FhirRequest) -> tuple[dict | None, str | None, list[str]]:
    """(resource, mode, profiles) from a Parameters body, a bare resource body, or the query string."""
    mode = req.param("mode")
    profiles = [v for k, v in req.params if k == "profile" and v]
    body = req.body
    resource = None
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for p in body.get("parameter") or ():
            name = p.get("name")
            if name == "resource":
                resource = p.get("resource")
            elif name == "mode":
                mode = p.get("valueCode") or p.get("valueString") or mode
            elif name == "profile":
                value = p.get("valueUri") or p.get("valueCanonical") or p.get("valueString")
                if value:
                    profiles.append(value)
    elif isinstance(body, dict):
        resource = body
    if mode is not None and mode not in MODES:
        raise bad_request(f"mode must be one of {', '.join(MODES)}, not {mode!r}", "mode", "value")
    return resource, mode, profiles


async def validate(ctx, req: FhirRequest, type: str, id: str | None = None) -> FhirResponse:
    from gateway.conformance.policy import checker_for

    resource, mode, profiles = _inputs(req)
    issues: list[Issue] = []
    if id is not None and (resource is None or mode == "delete"):
        async with ctx.store.session() as s:
            row = await s.read(type, id)
        if row is None:
            raise not_found(f"{type}/{id} is not known")
        if row.deleted:
            raise gone(f"{type}/{id} was deleted")
        if mode == "delete":
            # No referential rules stop a delete here (references are kept as written).
            return _answer([Issue("information", "informational", f"{type}/{id} can be deleted")])
        resource = orjson.loads(row.content)
    if resource is None:
        raise bad_request("$validate needs a resource: the request body, or a Parameters 'resource' part",
                          "resource", "required")
    if not isinstance(resource, dict) or resource.get("resourceType") != type:
        found = resource.get("resourceType") if isinstance(resource, dict) else None
        raise bad_request(f"$validate on {type} was given a {found or 'non-resource'}", "resource", "invalid")
    if mode == "update" and id is not None and resource.get("id") not in (None, id):
        issues.append(Issue("error", "invalid", f"The resource id {resource.get('id')!r} is not {id!r} (mode update)",
                            f"{type}.id"))
    if mode == "update" and resource.get("id") is None:
        issues.append(Issue("error", "required", "An update needs the resource's id", f"{type}.id"))
    if mode == "create" and resource.get("id") is not None:
        issues.append(Issue("information", "informational", "The id of a created resource is ignored; the server "
                            "assigns one", f"{type}.id"))

    checker = checker_for(ctx)
    registry = checker.validator.registry
    for url in profiles:
        key = url.split("|", 1)[0]
        if not registry.knows(key):
            sd = await _stored_profile(ctx, key)
            if sd is not None:
                registry.add(sd)
    configured = list(checker.policy.apply.get(type, ()))
    found = checker.validator.validate(resource, [*profiles, *configured], unknown_severity="warning")
    for url in profiles:
        if not registry.knows(url.split("|", 1)[0]):
            found = [i for i in found if not (i.code == "not-supported" and url.split("|", 1)[0] in i.diagnostics)]
            issues.append(Issue("error", "not-supported", f"Profile {url} is not known to this server", "profile"))
    issues += [Issue(i.severity, i.code, i.diagnostics, i.expression) for i in found]
    if not any(i.severity in ("error", "fatal", "warning") for i in issues):
        issues.append(Issue("information", "informational", "No issues detected during validation"))
    return _answer(issues)


async def _stored_profile(ctx, url: str) -> dict | None:
    """A StructureDefinition a client stored on this server (its own profiles), by canonical url."""
    from gateway.fhir.search import find_matches

    async with ctx.store.session() as s:
        rows = await find_matches(ctx, s, "StructureDefinition", f"url={url}", limit=1)
    return orjson.loads(rows[0].content) if rows else None


def _answer(issues: list[Issue]) -> FhirResponse:
    order = {"fatal": 0, "error": 1, "warning": 2, "information": 3}
    issues = sorted(issues, key=lambda i: order.get(i.severity, 4))
    return FhirResponse(200, resource=operation_outcome(issues))
