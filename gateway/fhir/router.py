"""The whole FHIR REST surface in one table.

Each row is (methods, path pattern, handler). `{type}` matches a known resource type, `{id}` and
`{vid}` a FHIR id, `$name` an operation. HTTP requests, batch entries and transaction entries
all go through `Router.dispatch`, so they behave the same by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Awaitable, Callable

from gateway.events import fhir_operations as subscription_ops
from gateway.fhir import bundles, capability, crud, history, operations, search, validate_op
from gateway.fhir.outcome import bad_request, method_not_allowed, not_found
from gateway.fhir.request import FhirRequest, FhirResponse
from gateway.fhir.structure import RESOURCE_TYPES

Handler = Callable[..., Awaitable[FhirResponse]]

ROUTES: list[tuple[tuple[str, ...], str, Handler]] = [
    (("GET",), "metadata", capability.capability_statement),
    (("POST",), "", bundles.process_bundle),
    (("GET",), "_history", history.system_history),
    (("POST",), "$process-message", operations.process_message),
    (("GET", "POST"), "ConceptMap/$translate", operations.translate),
    (("GET", "POST"), "ConceptMap/{id}/$translate", operations.translate),
    (("GET", "POST"), "Patient/{id}/$everything", operations.everything),
    (("POST",), "Patient/$match", operations.match),
    (("POST",), "Subscription/{id}/$resend", subscription_ops.resend),
    (("GET",), "Subscription/{id}/$status", subscription_ops.status),
    (("POST",), "{type}/$validate", validate_op.validate),
    (("GET", "POST"), "{type}/{id}/$validate", validate_op.validate),
    (("GET",), "{type}/_history", history.type_history),
    (("POST",), "{type}/_search", search.search_type),
    (("GET",), "{type}", search.search_type),
    (("POST",), "{type}", crud.create),
    (("PUT",), "{type}", crud.conditional_update),
    (("PATCH",), "{type}", crud.conditional_patch),
    (("DELETE",), "{type}", crud.conditional_delete),
    (("GET",), "{type}/{id}", crud.read),
    (("PUT",), "{type}/{id}", crud.update),
    (("PATCH",), "{type}/{id}", crud.patch),
    (("DELETE",), "{type}/{id}", crud.delete),
    (("GET",), "{type}/{id}/_history", history.instance_history),
    (("GET",), "{type}/{id}/_history/{vid}", crud.vread),
]

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True, slots=True)
class Route:
    methods: tuple[str, ...]
    parts: tuple[str, ...]
    handler: Handler


class Router:
    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.routes = [Route(m, tuple(p.split("/")) if p else (), h) for m, p, h in ROUTES]
        self.operations = sorted({p for _, p, _ in ROUTES if "$" in p})

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        segments = tuple(path.split("/")) if path else ()
        allowed: list[str] = []
        type_error: str | None = None
        for route in self.routes:
            if len(route.parts) != len(segments):
                continue
            bound: dict[str, str] = {}
            ok = True
            for pat, seg in zip(route.parts, segments):
                if pat == "{type}":
                    if seg not in RESOURCE_TYPES:
                        ok = False
                        if not seg.startswith(("$", "_")):
                            type_error = seg
                        break
                    bound["type"] = seg
                elif pat in ("{id}", "{vid}"):
                    if seg.startswith(("$", "_")) or not _ID.fullmatch(seg):
                        ok = False
                        break
                    bound[pat[1:-1]] = seg
                elif pat != seg:
                    ok = False
                    break
            if not ok:
                continue
            if method in route.methods:
                return route, bound
            allowed.extend(route.methods)
        if allowed:
            raise method_not_allowed(f"{method} is not allowed on /{path}; allowed: {', '.join(sorted(set(allowed)))}")
        if type_error:
            raise not_found(f"Unknown resource type '{type_error}'")
        if segments and segments[-1].startswith("$"):
            raise not_found(f"Operation {segments[-1]} is not supported on /{path}")
        raise bad_request(f"No FHIR interaction matches {method} /{path}", code="not-supported")

    async def dispatch(self, req: FhirRequest) -> FhirResponse:
        route, bound = self.match(req.method, req.path)
        security = self.ctx.services.get("security")  # scopes, labels, audit: gateway/security/guard.py
        if security is not None:
            return await security.dispatch(self.ctx, route, bound, req)
        return await route.handler(self.ctx, req, **bound)
