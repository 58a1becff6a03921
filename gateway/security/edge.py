"""The HTTP edge: who is calling, and which doors they may open before any handler runs.

A pure ASGI middleware, outermost, so a refused request costs nothing downstream:

* public: `GET /fhir/metadata`, the SMART configuration, `POST /auth/token`, the gateway's JWKS;
* everything else needs `Authorization: Bearer <token>` (401 with `WWW-Authenticate: Bearer`);
* inbound channels (`/hl7v2`, `/ingest/{council,community}`, `/fhir/$process-message`) need the
  channel in the client's registry entry (403); the pipelines then write as the gateway;
* operator views (`/inbox`, `/events`, subscription delivery logs) need `operator: true`;
* FHIR and the HTML pages run with the caller set (gateway.security.context) and are checked
  per interaction at the route table (gateway.security.guard).

Without auth the anonymous caller is set for FHIR and pages (for audit when GATEWAY_AUDIT=on).
"""

from __future__ import annotations

import logging

import orjson

from gateway.security.audit import build_event
from gateway.security.context import Caller, acting_as
from gateway.security.principal import ANONYMOUS, Principal
from gateway.security.tokens import AuthError

log = logging.getLogger("gateway.security")
REALM = "Active Recovery Gateway"
_PUBLIC = {"/fhir/metadata", "/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration",
           "/auth/token", "/auth/jwks.json", "/static/web.css"}
_CHANNELS = {"/hl7v2": "hl7v2", "/ingest/council": "ingest-council", "/ingest/community": "ingest-community",
             "/fhir/$process-message": "adw"}
_SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store"),
                     (b"referrer-policy", b"no-referrer")]


def _is_operator_path(path: str) -> bool:
    return path == "/inbox" or path.startswith("/inbox/") or path == "/events" or (
        path.startswith("/subscriptions/") and path.endswith("/deliveries"))


def _is_page(path: str) -> bool:
    return path == "/" or path == "/patients" or path.startswith("/patients/")


def _bearer(scope) -> str | None:
    for k, v in scope.get("headers", []):
        if k == b"authorization":
            scheme, _, token = v.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return ""
    return None


async def _refuse(send, status: int, code: str, text: str, www: str | None = None) -> None:
    body = orjson.dumps({"resourceType": "OperationOutcome",
                         "issue": [{"severity": "error", "code": code, "diagnostics": text}]})
    headers = [(b"content-type", b"application/fhir+json; charset=utf-8"),
               (b"content-length", str(len(body)).encode()), *_SECURITY_HEADERS]
    if www:
        headers.append((b"www-authenticate", www.encode("latin-1", "replace")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SecurityEdge:
    def __init__(self, app, service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        client = scope.get("client")
        address = client[0] if client else ""
        svc = self.service
        if not svc.auth_enabled:
            if path.startswith("/fhir") or _is_page(path):
                with acting_as(Caller(ANONYMOUS, address)):
                    return await self.app(scope, receive, send)
            return await self.app(scope, receive, send)
        if path in _PUBLIC:
            return await self.app(scope, receive, send)
        token = _bearer(scope)
        if not token:
            self._audit(None, address, scope, 401, "no bearer token")
            return await _refuse(send, 401, "login", "This endpoint needs an OAuth 2.0 bearer token "
                                 "(client credentials at /auth/token)", f'Bearer realm="{REALM}"')
        try:
            principal = await svc.tokens.verify(token)
        except AuthError as exc:
            self._audit(None, address, scope, 401, exc.description)
            return await _refuse(send, 401, "login", exc.description,
                                 f'Bearer realm="{REALM}", error="invalid_token", error_description="{exc.description}"')
        except Exception:
            log.exception("token verification failed")
            self._audit(None, address, scope, 401, "token could not be verified")
            return await _refuse(send, 401, "login", "The token could not be verified",
                                 f'Bearer realm="{REALM}", error="invalid_token"')
        channel = _CHANNELS.get(path)
        if channel is not None:
            if channel not in principal.channels:
                self._audit(principal, address, scope, 403, f"channel {channel} not allowed")
                return await _refuse(send, 403, "forbidden",
                                     f"Client {principal.client_id} may not use the {channel} channel")
            if channel != "adw":  # ADW is a FHIR operation: audited at the route table
                return await self._channel(principal, address, scope, receive, send, channel)
        if _is_operator_path(path) and not principal.operator:
            self._audit(principal, address, scope, 403, "operator view")
            return await _refuse(send, 403, "forbidden", f"{path} is for operators only")
        if _is_page(path) and path != "/" and not (principal.allows("Patient", "r") and principal.allows("Patient", "s")):
            self._audit(principal, address, scope, 403, "pages need Patient read")
            return await _refuse(send, 403, "forbidden", "The shared-history pages need read access to Patient")
        if path.startswith("/fhir/ConceptMap") and not principal.allows("ConceptMap", "r"):
            # checked here too: ConceptMap reads may be answered from the shared cache
            self._audit(principal, address, scope, 403, "ConceptMap read")
            return await _refuse(send, 403, "forbidden", f"Client {principal.client_id} may not read ConceptMap")
        if path.startswith("/fhir") or _is_page(path):
            with acting_as(Caller(principal, address)):
                return await self.app(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _channel(self, principal: Principal, address: str, scope, receive, send, channel: str) -> None:
        """An inbound channel: the pipeline writes as the gateway; one AuditEvent for the message."""
        seen = {"status": 500}

        async def watch(message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self._audit(principal, address, scope, seen["status"], f"{channel} message", kind="110100", action="C",
                        subtype=channel)

    def _audit(self, principal: Principal | None, address: str, scope, status: int, text: str,
               kind: str = "rest", action: str | None = None, subtype: str | None = None) -> None:
        svc = self.service
        if not svc.audit_enabled:
            return
        what = f"{scope['method']} {scope['path']}"
        if subtype is None:
            subtype = "read" if scope["method"] in ("GET", "HEAD") else "operation"
        svc.audit.record(build_event(principal, address, subtype, status, f"{text}: {what}", [], action=action,
                                     kind=kind))
