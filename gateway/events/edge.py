"""At the HTTP edge, before any handler: per-client rate limits and the hot-read cache.

A pure ASGI middleware so it costs nothing on the way out except for the few cached paths. It
finds the event service in `ctx.services["events"]` per request, so it is inert until the
lifespan has started the service (and in apps built without it).
"""

from __future__ import annotations

import logging
import time

import orjson

from gateway.events.cache import pack, unpack
from gateway.events.ratelimit import retry_after

log = logging.getLogger("gateway.events")
_CACHED_PREFIXES = (("/fhir/metadata", "metadata"), ("/fhir/ConceptMap", "ConceptMap"))
# Query parameters that read other resource types: _include, _revinclude, _has, and chains ("a.b=").
_OTHER_TYPES = (b"_include", b"_revinclude", b"_has")


def _throttled(seconds: float) -> tuple[list[tuple[bytes, bytes]], bytes]:
    body = orjson.dumps({"resourceType": "OperationOutcome", "issue": [{
        "severity": "error", "code": "throttled",
        "diagnostics": f"Too many requests from this client; retry after {retry_after(seconds)} s",
    }]})
    headers = [(b"content-type", b"application/fhir+json; charset=utf-8"),
               (b"retry-after", retry_after(seconds).encode()), (b"content-length", str(len(body)).encode())]
    return headers, body


def _cache_tag(scope) -> str | None:
    if scope["method"] != "GET":
        return None
    names = [part.split(b"=", 1)[0] for part in scope.get("query_string", b"").split(b"&")]
    if any(name.startswith(_OTHER_TYPES) or b"." in name or b"%2E" in name.upper() for name in names):
        return None  # the answer would depend on other resource types, whose writes do not retire it
    path = scope["path"]
    for prefix, tag in _CACHED_PREFIXES:
        if path == prefix or path.startswith(prefix + "/") or path.startswith(prefix + "?"):
            return tag
    return None


class EdgeMiddleware:
    def __init__(self, app, ctx) -> None:
        self.app = app
        self.ctx = ctx
        self._warned = 0.0

    def _client(self, scope, header: str) -> str:
        # An authenticated partner is limited as itself, whatever address or proxy it comes through
        # (the security edge, outermost, has already verified its token); otherwise by header or IP.
        from gateway.security.context import current_principal

        principal = current_principal()
        if principal is not None and not principal.unrestricted:
            return "c:" + principal.client_id
        if header:
            wanted = header.lower().encode()
            for k, v in scope.get("headers", []):
                if k == wanted and v:
                    return "h:" + v.decode("latin-1")[:200]
        client = scope.get("client")
        return "a:" + (client[0] if client else "unknown")

    def _warn(self, what: str) -> None:
        now = time.monotonic()
        if now - self._warned > 30:
            self._warned = now
            log.warning("%s unavailable (Redis?); serving without it", what, exc_info=True)

    async def __call__(self, scope, receive, send) -> None:
        events = self.ctx.services.get("events") if scope["type"] == "http" else None
        if events is None:
            return await self.app(scope, receive, send)
        limiter = events.limiter
        if limiter.enabled:
            try:
                wait = await limiter.take(self._client(scope, self.ctx.settings.rate_limit_client_header))
            except Exception:
                wait = 0.0
                self._warn("rate limiter")
            if wait > 0:
                headers, body = _throttled(wait)
                await send({"type": "http.response.start", "status": 429, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        tag = _cache_tag(scope)
        if tag is None or not events.cache.caches(tag):
            return await self.app(scope, receive, send)
        return await self._cached(events.cache, tag, scope, receive, send)

    async def _cached(self, cache, tag: str, scope, receive, send) -> None:
        headers = dict(scope.get("headers", []))
        if b"if-none-match" in headers or b"if-modified-since" in headers:
            return await self.app(scope, receive, send)
        # Links in a response are built from the Host header unless GATEWAY_BASE_URL fixes them.
        host = b"" if self.ctx.settings.base_url else headers.get(b"host", b"")
        key = "|".join([scope["path"], scope.get("query_string", b"").decode("latin-1"),
                        headers.get(b"accept", b"").decode("latin-1"), host.decode("latin-1")])
        try:
            hit, fill_key = await cache.lookup(tag, key)
        except Exception:
            self._warn("shared cache")
            return await self.app(scope, receive, send)
        if hit is not None:
            status, out_headers, body = unpack(hit)
            await send({"type": "http.response.start", "status": status,
                        "headers": out_headers + [(b"x-gateway-cache", b"hit")]})
            await send({"type": "http.response.body", "body": body})
            return
        captured: dict = {"body": []}

        async def capture(message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = list(message.get("headers", []))
                message = {**message, "headers": captured["headers"] + [(b"x-gateway-cache", b"miss")]}
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, capture)
        if fill_key and captured.get("status") == 200:
            try:
                await cache.store(fill_key, pack(200, captured["headers"], b"".join(captured["body"])))
            except Exception:
                self._warn("shared cache")
