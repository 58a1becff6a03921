"""OAuth and SMART endpoints: `POST /auth/token`, `/.well-known/smart-configuration`, `/auth/jwks.json`.

The token endpoint is the SMART Backend Services client-credentials flow: the client proves who
it is with a JWT signed by its own private key (`client_assertion_type =
urn:ietf:params:oauth:client-assertion-type:jwt-bearer`), and receives a short-lived access token
signed by the gateway, carrying the granted scopes (requested ∩ registered), its organisation and
the security labels it may see.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.security.audit import build_event
from gateway.security.principal import Principal
from gateway.security.scopes import narrow, parse_scopes
from gateway.security.tokens import ASYMMETRIC, AuthError

log = logging.getLogger("gateway.security")
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache", "X-Content-Type-Options": "nosniff"}


def _json(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers={**_NO_STORE, **(headers or {})})


def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    return _json({"error": error, "error_description": description}, status)


def _service(request: Request):
    return request.app.state.ctx.services["security"]


async def token(request: Request) -> Response:
    svc = _service(request)
    if not svc.auth_enabled:
        return _oauth_error("invalid_request", "Authorisation is off on this gateway (no clients configured)", 404)
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return _oauth_error("invalid_request", "Send the token request as application/x-www-form-urlencoded")
    raw = await request.body()
    if len(raw) > 64 * 1024:
        return _oauth_error("invalid_request", "Token request too large")
    form: dict[str, str] = {}
    for k, v in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        if k in form:
            return _oauth_error("invalid_request", f"Parameter {k} is repeated")
        form[k] = v
    address = request.client.host if request.client else ""
    if form.get("grant_type") != "client_credentials":
        return _oauth_error("unsupported_grant_type", "Only grant_type=client_credentials is supported")
    if form.get("client_assertion_type") != JWT_BEARER or not form.get("client_assertion"):
        return _oauth_error("invalid_client", f"Authenticate with client_assertion_type={JWT_BEARER} "
                            "and a signed client_assertion (private_key_jwt)", 401)
    try:
        client, claims = await svc.tokens.client_from_assertion(form["client_assertion"])
    except AuthError as exc:
        _audit(svc, None, address, 401, exc.description)
        return _oauth_error(exc.error, exc.description, 401 if exc.error == "invalid_client" else 400)
    except Exception:
        log.exception("client assertion check failed")
        return _oauth_error("invalid_client", "The client's keys could not be used", 401)
    if not await _first_use(request, client.client_id, claims["jti"], claims["exp"]):
        _audit(svc, client.principal([]), address, 401, "client assertion replayed (jti seen before)")
        return _oauth_error("invalid_client", "This client assertion was already used (jti replay)", 401)
    requested = form.get("scope", "")
    granted = narrow(parse_scopes(requested), client.scopes)
    if not requested.strip() or not granted:
        _audit(svc, client.principal([]), address, 400, f"no grantable scope in {requested!r}")
        return _oauth_error("invalid_scope", f"None of the requested scopes ({requested!r}) is allowed for "
                            f"{client.client_id}; allowed: {' '.join(str(s) for s in client.scopes)}")
    access, ttl = svc.tokens.issue(client, granted)
    scope_text = " ".join(str(s) for s in granted)
    _audit(svc, client.principal(granted), address, 200, f"access token issued: {scope_text}")
    return _json({"access_token": access, "token_type": "bearer", "expires_in": ttl, "scope": scope_text})


async def _first_use(request: Request, client_id: str, jti: str, exp: float) -> bool:
    """Record the assertion's jti until it expires; False if it was seen (by any process)."""
    store = request.app.state.ctx.store
    now = int(time.time())
    async with store.session(write=True) as s:
        await s.conn.execute("DELETE FROM auth_jti WHERE expires_at < ?", (now - 60,))
        row = await s.conn.fetchrow(
            "INSERT INTO auth_jti (jti, expires_at) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING RETURNING jti",
            (f"{client_id}\n{jti}"[:500], int(exp) + 60),
        )
    return row is not None


def _audit(svc, principal: Principal | None, address: str, status: int, text: str) -> None:
    if svc.audit_enabled:
        svc.audit.record(build_event(principal, address, "token", status, text, [], action="E", kind="110114"))


def smart_configuration_for(svc) -> dict:
    return {
        "issuer": svc.issuer,
        "jwks_uri": svc.issuer + "/jwks.json",
        "token_endpoint": svc.token_endpoint,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ASYMMETRIC,
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": ["system/*.cruds", "system/*.rs", "user/*.cruds", "user/*.rs", "system/*.read",
                             "system/*.write"],
        "response_types_supported": ["token"],
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    }


async def smart_configuration(request: Request) -> Response:
    svc = _service(request)
    if not svc.auth_enabled:
        return _json({"error": "not_found", "error_description": "Authorisation is off on this gateway"}, 404)
    return _json(smart_configuration_for(svc), headers={"Cache-Control": "public, max-age=300"})


async def jwks(request: Request) -> Response:
    svc = _service(request)
    if not svc.auth_enabled or svc.tokens is None:
        return _json({"keys": []}, 404)
    return _json(svc.tokens.key.jwks(), headers={"Cache-Control": "public, max-age=300"})


ROUTES = [
    Route("/auth/token", token, methods=["POST"]),
    Route("/auth/jwks.json", jwks, methods=["GET"]),
    Route("/.well-known/smart-configuration", smart_configuration, methods=["GET"]),
    Route("/fhir/.well-known/smart-configuration", smart_configuration, methods=["GET"]),
]
