"""The HTTP edge: turns Starlette requests into FhirRequests and FhirResponses into bytes.

This is the only FHIR module that knows about HTTP. It also owns format negotiation, body limits
and the rule that no error leaves as a stack trace.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from gateway.config import Settings
from gateway.fhir.context import GatewayContext
from gateway.fhir.outcome import FhirError, Issue, too_large
from gateway.fhir.request import FhirRequest, FhirResponse
from gateway.fhir.router import Router
from gateway.formats import parse_body, render, response_format
from gateway.security.limits import check_depth, check_raw_json_depth
from gateway.store import open_store
from gateway.store.base import conflicted

log = logging.getLogger("gateway")
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]


def _base_url(settings: Settings, request: Request) -> str:
    if settings.base_url:
        return settings.base_url.rstrip("/")
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    return f"{request.url.scheme}://{host}/fhir"


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(f"Request body of {declared} bytes is over the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(f"Request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def to_fhir_request(ctx: GatewayContext, request: Request, path: str) -> FhirRequest:
    method = request.method
    headers = {k.lower(): v for k, v in request.headers.items()}
    params = parse_qsl(request.url.query, keep_blank_values=True)
    content_type = headers.get("content-type", "")
    freq = FhirRequest(method, path.strip("/"), params, headers, content_type=content_type,
                       base_url=_base_url(ctx.settings, request))
    if method in ("POST", "PUT", "PATCH"):
        raw = getattr(request.state, "fhir_body", None)  # kept: a request may be run twice
        if raw is None:
            raw = request.state.fhir_body = await _read_body(request, ctx.settings.max_body_bytes)
        if method == "PATCH" or freq.path == "$process-message":
            # JSON Patch, and ADW notices (FHIR DSTU2, not R4), are read by their own handlers
            freq.raw_body = raw
            check_raw_json_depth(raw, content_type, ctx.settings.max_body_depth)
        elif content_type.startswith("application/x-www-form-urlencoded"):
            freq.params = params + parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        elif raw.strip():
            freq.body = parse_body(content_type, raw)
            check_depth(freq.body, ctx.settings.max_body_depth)  # JSON or XML: 400 when too deeply nested
    return freq


def http_response(resp: FhirResponse, fmt: str, head: bool = False) -> Response:
    payload = resp.json_bytes()
    if payload is None:
        return Response(status_code=resp.status, headers=resp.headers)
    content, media = render(payload, fmt)
    return Response(b"" if head else content, status_code=resp.status, headers=resp.headers, media_type=media)


def error_response(exc: FhirError, fmt: str) -> Response:
    import orjson

    return http_response(FhirResponse(exc.status, body=orjson.dumps(exc.outcome()), headers=exc.headers), fmt)


class GatewayApp(FastAPI):
    """FastAPI for the pages, inbound channels and auth endpoints; FHIR requests (`/fhir...`, the
    hot path) go straight to their own short stack - security edge, event edge, handler - without
    Starlette's routing and per-route wrappers, which cost more than a read itself."""

    fhir_stack = None  # set by create_app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and self.fhir_stack is not None:
            path = _local_path(scope)
            if path == "/fhir" or (path.startswith("/fhir/") and not path.startswith("/fhir/.well-known/")):
                await self.fhir_stack(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _local_path(scope) -> str:
    """The path below the app's mount point (`root_path`, when served behind a path prefix)."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _fhir_asgi(endpoint):
    """The FHIR handler as a plain ASGI app; whatever escapes the edges is a 500 OperationOutcome."""
    allowed = frozenset(_METHODS)

    async def app(scope, receive, send) -> None:
        request = Request(scope, receive)
        if scope["method"] not in allowed:
            fmt = response_format(request.query_params.get("_format"), request.headers.get("accept"))
            error = FhirError(405, Issue("error", "not-supported", f"HTTP {scope['method']} is not used by this FHIR server"))
            response = error_response(error, fmt)
            response.headers["Allow"] = ", ".join(_METHODS)
        else:
            response = await endpoint(request, _local_path(scope)[len("/fhir"):])
        await response(scope, receive, send)

    return app


def _internal_error() -> FhirError:
    return FhirError(500, Issue("fatal", "exception", "The gateway could not process this request; it has been logged"))


def _guarded(app):
    async def guarded(scope, receive, send) -> None:
        started = False

        async def tracking_send(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await app(scope, receive, tracking_send)
        except Exception:  # never a stack trace in a response (Starlette's ServerErrorMiddleware's job elsewhere)
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                response = error_response(_internal_error(), "json")
                await response(scope, receive, send)

    return guarded


def create_app(settings: Settings, store=None) -> FastAPI:
    store = store or open_store(settings)
    ctx = GatewayContext(settings=settings, store=store)
    ctx.router = Router(ctx)
    from gateway.security.service import SecurityService, check_startup, is_loopback

    security = ctx.services["security"] = SecurityService(settings, store)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        log.info(check_startup(settings))  # no auth → loopback only; refuses (and exits) otherwise
        await store.open()
        await security.start()
        from gateway.startup import load_conformance_resources

        await load_conformance_resources(ctx)
        from gateway.pipeline.hl7v2 import Hl7v2Pipeline

        ctx.services["hl7v2"] = Hl7v2Pipeline(ctx)
        from gateway.pipeline.adw import AdwPipeline

        ctx.services["adw"] = AdwPipeline(ctx)
        mllp = None
        if settings.mllp_port:
            from gateway.transport.mllp import start_mllp_server, tls_context

            tls = (tls_context(settings.mllp_tls_cert, settings.mllp_tls_key, settings.mllp_tls_client_ca)
                   if settings.mllp_tls_cert else None)
            mllp_host = settings.mllp_host or settings.host
            mllp = await start_mllp_server(lambda raw, sender: ctx.services["hl7v2"].receive(
                                               raw, "mllp", certificate=sender.get("subject")),
                                           mllp_host, settings.mllp_port,
                                           max_message_bytes=settings.max_body_bytes, ssl=tls,
                                           observe=security.record_mllp, shared=settings.workers > 1)
            log.info("MLLP listener on %s:%s (%s)", mllp_host, settings.mllp_port,
                     "TLS, client certificates required" if tls and settings.mllp_tls_client_ca
                     else "TLS" if tls else "plain TCP")
            if not settings.mllp_tls_client_ca and not is_loopback(mllp_host):
                log.warning("MLLP on %s accepts any sender that can reach it: set GATEWAY_MLLP_TLS_CERT, "
                            "GATEWAY_MLLP_TLS_KEY and GATEWAY_MLLP_TLS_CLIENT_CA to require certificates", mllp_host)
            restricted = ctx.services["hl7v2"].feeds.certificate_feeds
            if restricted and not settings.mllp_tls_client_ca:
                log.warning("feeds %s accept only named client certificates, but GATEWAY_MLLP_TLS_CLIENT_CA is "
                            "not set, so no MLLP sender presents one: their messages will all be refused (AR)",
                            ", ".join(sorted({f for feeds in restricted.values() for f in feeds})))
        from gateway.events.service import EventService

        events = EventService(ctx)
        await events.start()
        yield
        await events.stop()
        if mllp is not None:
            mllp.close()
            await mllp.wait_closed()
        await security.stop()
        await store.close()

    async def fhir_endpoint(request: Request, path: str) -> Response:
        fmt = "json"
        try:
            fmt = response_format(request.query_params.get("_format"), request.headers.get("accept"))
            try:
                resp = await ctx.router.dispatch(await _fhir_request(request, path))
            except Exception as exc:
                if conflicted(exc) != "retry":
                    raise
                # PostgreSQL rolled the whole request back as a deadlock victim: run it once more,
                # from a fresh parse (the first run may have changed the parsed body)
                log.warning("%s %s: %s; running it once more", request.method, request.url.path, exc)
                resp = await ctx.router.dispatch(await _fhir_request(request, path))
            return http_response(resp, fmt, head=request.method == "HEAD")
        except FhirError as exc:
            return error_response(exc, fmt)
        except Exception as exc:  # never a stack trace or SQL in a response body
            if conflicted(exc):
                log.warning("%s %s: %s", request.method, request.url.path, exc)
                return error_response(FhirError(503, Issue("error", "lock-error", "The store was busy with a "
                                      "conflicting write; nothing was changed, try again"), {"Retry-After": "1"}), fmt)
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            return error_response(_internal_error(), fmt)

    async def _fhir_request(request: Request, path: str) -> FhirRequest:
        freq = await to_fhir_request(ctx, request, path)
        if freq.method == "HEAD":
            freq.method = "GET"
        return freq

    app = GatewayApp(title="Active Recovery Gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.ctx = ctx
    from gateway.inbound import ROUTES as INBOUND_ROUTES

    app.router.routes.extend(INBOUND_ROUTES)
    from gateway.events.edge import EdgeMiddleware
    from gateway.events.routes import ROUTES as EVENT_ROUTES

    app.router.routes.extend(EVENT_ROUTES)
    app.add_middleware(EdgeMiddleware, ctx=ctx)
    from gateway.security.edge import SecurityEdge
    from gateway.security.routes import ROUTES as SECURITY_ROUTES  # /auth/token, smart-configuration

    app.add_middleware(SecurityEdge, service=security)  # outermost: tokens before rate limits and cache
    app.router.routes.extend(SECURITY_ROUTES)
    # The same edges as the rest of the app, in the same order (security outermost).
    app.fhir_stack = _guarded(SecurityEdge(EdgeMiddleware(_fhir_asgi(fhir_endpoint), ctx=ctx), service=security))
    from gateway.web.routes import ROUTES as WEB_ROUTES  # shared-history pages: /, /patients

    app.router.routes.extend(WEB_ROUTES)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory: settings from GATEWAY_* variables (the CLI sets them from its flags)."""
    from gateway.config import load_settings

    return create_app(load_settings())
