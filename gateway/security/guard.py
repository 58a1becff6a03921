"""Enforcement at the one place every FHIR interaction passes: `Router.dispatch`.

HTTP requests, Bundle entries and the HTML pages' in-process reads all dispatch through the route
table, so checking here covers them alike:

* before the handler: the SMART permission the route needs on its type (403 without it), the
  inbound channel for `$process-message`, `_has` only over readable types, no write to (or
  conditional match of) a resource the caller may not see, no security label the caller lacks;
* inside the handler: search, includes, totals and `$everything` read through
  `gateway.security.visibility`, so hidden resources are never selected at all;
* after it: a direct read (or vread) of a hidden resource is a 404; history and `$match`
  Bundles lose the entries the caller may not see;
* then one AuditEvent per request (a Bundle's entries become its `entity` list).
"""

from __future__ import annotations

import logging

import orjson

from gateway.fhir.outcome import FhirError, Issue, not_found
from gateway.fhir.request import FhirRequest, FhirResponse
from gateway.security.audit import build_event, entity
from gateway.security.context import Caller, acting_as, current
from gateway.security.principal import SUBSCRIPTION_OWNER, Principal, may_read, resource_labels

log = logging.getLogger("gateway.security")

# pattern -> {method: (SMART letters, any one of which suffices; audit subtype)}
_TYPE_ROUTES: dict[str, dict[str, tuple[str, str]]] = {
    "{type}": {"GET": ("s", "search-type"), "POST": ("c", "create"), "PUT": ("u", "update"),
               "PATCH": ("u", "patch"), "DELETE": ("d", "delete")},
    "{type}/_search": {"POST": ("s", "search-type")},
    "{type}/{id}": {"GET": ("r", "read"), "PUT": ("u", "update"), "PATCH": ("u", "patch"), "DELETE": ("d", "delete")},
    "{type}/{id}/_history": {"GET": ("r", "history-instance")},
    "{type}/{id}/_history/{vid}": {"GET": ("r", "vread")},
    "{type}/_history": {"GET": ("s", "history-type")},
    "{type}/$validate": {"POST": ("cu", "operation")},
    "{type}/{id}/$validate": {"GET": ("r", "operation"), "POST": ("r", "operation")},
}
# Operations on a named type: (type, letters, subtype)
_FIXED_ROUTES: dict[str, tuple[str, str, str]] = {
    "ConceptMap/$translate": ("ConceptMap", "r", "operation"),
    "ConceptMap/{id}/$translate": ("ConceptMap", "r", "operation"),
    "Patient/{id}/$everything": ("Patient", "r", "operation"),
    "Patient/$match": ("Patient", "s", "operation"),
    "Subscription/{id}/$resend": ("Subscription", "u", "operation"),
    "Subscription/{id}/$status": ("Subscription", "r", "operation"),
    "_history": ("*", "s", "history-system"),
}
_POST_FILTERED = {"_history", "{type}/_history", "{type}/{id}/_history", "Patient/$match"}
_READS = {"{type}/{id}", "{type}/{id}/_history/{vid}"}
# Routes naming one existing resource that the handler reads or changes without the visibility filter
_TARGETED = {"{type}/{id}/$validate", "Subscription/{id}/$resend", "Subscription/{id}/$status"}


def forbidden(message: str) -> FhirError:
    return FhirError(403, Issue("error", "forbidden", message))


def _requirement(pattern: str, method: str, bound: dict) -> tuple[str, str, str] | None:
    if pattern in _TYPE_ROUTES:
        letters, subtype = _TYPE_ROUTES[pattern].get(method, ("cruds", "operation"))
        return bound.get("type", "*"), letters, subtype
    return _FIXED_ROUTES.get(pattern)


class Guard:
    def __init__(self, service) -> None:
        self.service = service
        self._unknown_warned: set[str] = set()

    async def dispatch(self, ctx, route, bound: dict, req: FhirRequest) -> FhirResponse:
        caller = current()
        if req.principal is not None and (caller is None or caller.principal is not req.principal):
            caller = Caller(req.principal, caller.address if caller else "")
        if caller is None:  # the gateway itself
            return await route.handler(ctx, req, **bound)
        principal = caller.principal
        audit = self.service.audit_enabled
        if principal.unrestricted and not audit:
            return await route.handler(ctx, req, **bound)
        pattern = "/".join(route.parts)
        need = _requirement(pattern, req.method, bound)
        subtype = need[2] if need else "operation"  # what was attempted, even when it is refused
        status, detail, resp = 500, "", None
        if pattern == "" and not req.in_bundle:
            caller = Caller(principal, caller.address, entries=[])
        try:
            with acting_as(caller):
                subtype, run_as_system = await self._check(ctx, pattern, bound, req, principal)
                if run_as_system:
                    with acting_as(None):
                        resp = await route.handler(ctx, req, **bound)
                else:
                    resp = await route.handler(ctx, req, **bound)
                if not principal.unrestricted:
                    resp = self._after(pattern, bound, resp, principal)
            status = resp.status
            return resp
        except FhirError as exc:
            status, detail = exc.status, "; ".join(i.diagnostics for i in exc.issues)
            raise
        finally:
            if audit and pattern != "metadata":
                self._audit(caller, pattern, subtype, bound, req, status, detail, resp)

    # -- before ----------------------------------------------------------------------------------
    async def _check(self, ctx, pattern: str, bound: dict, req: FhirRequest, principal: Principal):
        if pattern == "metadata":
            return "capabilities", False
        if pattern == "":
            body = req.body if isinstance(req.body, dict) else {}
            return ("transaction" if body.get("type") == "transaction" else "batch"), False
        if pattern == "$process-message":
            if "adw" not in principal.channels:
                raise forbidden(f"Client {principal.client_id} may not send ADW notices (channel 'adw')")
            return "operation", True  # the ADW pipeline writes as the gateway, like the HL7 v2 one
        need = _requirement(pattern, req.method, bound)
        if need is None:
            if pattern not in self._unknown_warned:
                self._unknown_warned.add(pattern)
                log.warning("route %s has no access rule: operators only", pattern)
            if not principal.operator:
                raise forbidden(f"/{req.path} is for operators only")
            return "operation", False
        rtype, letters, subtype = need
        if not any(principal.allows(rtype, c) for c in letters):
            what = "every type" if rtype == "*" else rtype
            raise forbidden(f"Client {principal.client_id} has no scope allowing {subtype} on {what} "
                            f"(needs one of '{letters}'; granted: {principal.scope_text or 'none'})")
        if principal.unrestricted:
            return subtype, False
        if subtype == "search-type" or pattern == "Patient/$match":
            self._check_has(req, principal)
        if req.method in ("POST", "PUT") and isinstance(req.body, dict):
            self._check_labels(req.body, principal)
            if req.body.get("resourceType") == "Subscription":
                criteria = str(req.body.get("criteria") or "")
                ctype = criteria.split("?", 1)[0] if "?" in criteria and "://" not in criteria else None
                if ctype and not principal.can_see_type(ctype):
                    raise forbidden(f"Client {principal.client_id} may not subscribe to {ctype}, which it may not read")
                if not principal.operator:
                    req.body = _owned(req.body, principal.client_id)
        if "id" in bound and (pattern in _TARGETED or (pattern == "{type}/{id}" and req.method != "GET")):
            await self._check_target(ctx, bound.get("type", pattern.split("/")[0]), bound["id"], principal)
        if pattern == "{type}" and req.method in ("PUT", "PATCH", "DELETE") or (
                pattern == "{type}" and req.method == "POST" and req.header("if-none-exist")):
            await self._check_conditional(ctx, bound["type"], req, principal)
        return subtype, False

    def _check_has(self, req: FhirRequest, principal: Principal) -> None:
        for name, _ in req.params:
            if name.startswith("_has:"):
                parts = name.split(":")
                if len(parts) > 1 and not principal.can_see_type(parts[1]):
                    raise forbidden(f"'{name}' searches {parts[1]} resources, which client "
                                    f"{principal.client_id} may not read")

    def _check_labels(self, resource: dict, principal: Principal) -> None:
        hidden = principal.hidden_labels(self.service.restricted_labels)
        bad = resource_labels(resource) & hidden
        if bad:
            raise forbidden(f"Client {principal.client_id} may not write resources labelled "
                            + ", ".join(f"{s}|{c}" for s, c in sorted(bad)))

    async def _check_target(self, ctx, rtype: str, rid: str, principal: Principal) -> None:
        async with ctx.store.session() as s:
            row = await s.read(rtype, rid)
        if row is not None and not row.deleted and not may_read(principal, row.content, self.service.restricted_labels):
            raise not_found(f"{rtype}/{rid} is not known")

    async def _check_conditional(self, ctx, rtype: str, req: FhirRequest, principal: Principal) -> None:
        from gateway.fhir.search import find_matches

        criteria = req.header("if-none-exist") if req.method == "POST" else "&".join(
            f"{k}={v}" for k, v in req.params if k not in ("_format", "_pretty"))
        if not criteria:
            return
        async with ctx.store.session() as s:
            try:
                rows = await find_matches(ctx, s, rtype, criteria, limit=10)
            except FhirError:
                return  # the handler reports the bad criteria itself
        if any(not may_read(principal, r.content, self.service.restricted_labels) for r in rows):
            raise forbidden(f"The criteria match a {rtype} that client {principal.client_id} may not access")

    # -- after -----------------------------------------------------------------------------------
    def _after(self, pattern: str, bound: dict, resp: FhirResponse, principal: Principal) -> FhirResponse:
        labels = self.service.restricted_labels
        if pattern in _READS and resp.status == 200:
            body = resp.json_bytes()
            if body is not None and not may_read(principal, body, labels):
                raise not_found(f"{bound.get('type')}/{bound.get('id')} is not known")
        elif pattern in _POST_FILTERED and resp.status == 200:
            bundle = resp.as_dict()
            if isinstance(bundle, dict) and bundle.get("resourceType") == "Bundle":
                entries = bundle.get("entry") or []
                kept = [e for e in entries if "resource" not in e or may_read(principal, e["resource"], labels)]
                if pattern == "Patient/$match":
                    bundle["total"] = len(kept)
                else:
                    # a history total counts versions the caller may not see: leave it out
                    bundle.pop("total", None)
                bundle["entry"] = kept
                return FhirResponse(resp.status, body=orjson.dumps(bundle), headers=resp.headers)
        return resp

    # -- audit -----------------------------------------------------------------------------------
    def _audit(self, caller: Caller, pattern: str, subtype: str, bound: dict, req: FhirRequest, status: int,
               detail: str, resp: FhirResponse | None) -> None:
        ents = _entities(pattern, subtype, bound, req, resp)
        outer = current()
        if req.in_bundle and outer is not None and outer.entries is not None:
            desc = f"{req.method} {req.path} -> {status}"
            if ents:
                ents[0]["description"] = desc
            outer.entries.extend(ents or [entity(description=desc)])
            return
        if pattern == "" and caller.entries:
            ents = caller.entries
        what = f"{req.method} /{req.path}" + (f"?{_query(req)}" if req.params else "")
        self.service.audit.record(build_event(caller.principal, caller.address, subtype, status,
                                              detail or what, ents))


def _query(req: FhirRequest) -> str:
    from urllib.parse import urlencode

    return urlencode(req.params, safe="|:,/$")


def _entities(pattern: str, subtype: str, bound: dict, req: FhirRequest, resp: FhirResponse | None) -> list[dict]:
    rtype = bound.get("type") or (pattern.split("/")[0] if pattern and pattern[0].isupper() else None)
    if "id" in bound and rtype:
        what = f"{rtype}/{bound['id']}" + (f"/_history/{bound['vid']}" if "vid" in bound else "")
        return [entity(what, rtype)]
    if subtype in ("search-type", "history-type", "history-system") or pattern == "Patient/$match":
        q = _query(req)
        return [entity(rtype=rtype, query=q, description=f"{rtype or ''}?{q}")]
    if subtype == "create" and resp is not None:
        loc = resp.headers.get("Location", "")
        if "/" in loc:
            parts = loc.split("/_history/")[0].rsplit("/", 2)
            return [entity(f"{parts[-2]}/{parts[-1]}", rtype)]
    if rtype:
        return [entity(rtype=rtype, description=f"{req.method} /{req.path}")]
    return []


def _owned(subscription: dict, client_id: str) -> dict:
    """The Subscription tagged with its owner (any owner tag the client sent is replaced)."""
    meta = dict(subscription.get("meta") or {})
    tags = [t for t in meta.get("tag") or [] if not (isinstance(t, dict) and t.get("system") == SUBSCRIPTION_OWNER)]
    meta["tag"] = tags + [{"system": SUBSCRIPTION_OWNER, "code": client_id}]
    return {**subscription, "meta": meta}
