"""HTTP edge of the shared-history pages: `GET /patients` (search) and `GET /patients/{id}`.

The pages read the record the way any partner would: through the FHIR route table in-process
(`Patient?...` search, `Patient/{id}/$everything`, `Patient/{id}`), never through the store, so
what a nurse sees is what the FHIR API serves. HTML is rendered server-side, escaped by Jinja2's
autoescape, with no script, and sent with headers that forbid framing, sniffing and referrers.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.fhir.outcome import FhirError
from gateway.fhir.request import FhirRequest
from gateway.web.history import born_display, build_history, describe_duplicate, display_name, nhs_number, postcode
from gateway.web.search import interpret
from gateway.web.history import badge
from gateway.web.sources import ORDER, SourceIndex

log = logging.getLogger("gateway.web")
HERE = Path(__file__).resolve().parent
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",  # a person's record must not linger in a shared ward laptop's cache
}

templates = Environment(
    loader=FileSystemLoader(str(HERE / "templates")),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _page(name: str, status: int = 200, **values) -> Response:
    html = templates.get_template(name).render(**values)
    return Response(html, status_code=status, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


def _base_url(ctx, request: Request) -> str:
    if ctx.settings.base_url:
        return ctx.settings.base_url.rstrip("/")
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    return f"{request.url.scheme}://{host}/fhir"


async def _fhir(ctx, request: Request, path: str, params: list[tuple[str, str]] | None = None) -> dict:
    freq = FhirRequest("GET", path, params or [], {"accept": "application/fhir+json"}, base_url=_base_url(ctx, request))
    resp = await ctx.router.dispatch(freq)
    return resp.as_dict() or {}


def _not_found(what: str) -> Response:
    return _page("not_found.html", 404, title="Person not found", what=what)


async def patient_history(request: Request) -> Response:
    ctx = request.app.state.ctx
    pid = request.path_params["patient_id"]
    if not _ID.fullmatch(pid):
        return _not_found(pid)
    try:
        bundle = await _fhir(ctx, request, f"Patient/{pid}/$everything")
    except FhirError as exc:
        if exc.status in (404, 410):
            return _not_found(pid)
        raise
    index = SourceIndex.for_settings(ctx.settings)
    history = build_history(bundle, pid, index, ctx.settings.tz)
    for dup in history.duplicates:
        try:
            other = await _fhir(ctx, request, f"Patient/{dup.id}") if _ID.fullmatch(dup.id) else None
        except FhirError:
            other = None
        describe_duplicate(dup, other, index)
    return _page("history.html", title=f"{history.name}: shared history", h=history)


async def patient_search(request: Request) -> Response:
    ctx = request.app.state.ctx
    q = request.query_params.get("q", "")
    query = interpret(q)
    rows: list[dict] = []
    total = 0
    if query.params:
        bundle = await _fhir(ctx, request, "Patient", query.params)
        index = SourceIndex.for_settings(ctx.settings)
        for entry in bundle.get("entry") or []:
            res = entry.get("resource") or {}
            if res.get("resourceType") != "Patient":
                continue
            sources = set(index.of_resource(res))
            tags = (res.get("meta") or {}).get("tag") or []
            rows.append({
                "id": res.get("id"),
                "name": display_name(res),
                "born": born_display(res),
                "nhs": nhs_number(res),
                "postcode": postcode(res),
                "sources": [badge(s) for s in ORDER if s in sources],
                "review": any(t.get("code") == "possible-duplicate" for t in tags),
                "active": res.get("active") is not False,
            })
        total = bundle.get("total", len(rows))
    return _page("search.html", title="Find a person" if not q else f"Search: {q[:60]}", q=q, query=query,
                 rows=rows, total=total)


def _guarded(handler):
    """No stack trace or SQL in a page: log it, answer a plain error page (still with the headers)."""
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception:
            log.exception("page %s failed", request.url.path)
            return _page("error.html", 500, title="Something went wrong")
    return run


async def stylesheet(request: Request) -> Response:
    css = (HERE / "static" / "web.css").read_bytes()
    return Response(css, media_type="text/css; charset=utf-8",
                    headers={**SECURITY_HEADERS, "Cache-Control": "public, max-age=3600"})


async def home(request: Request) -> Response:
    return RedirectResponse("/patients", status_code=303, headers=SECURITY_HEADERS)


ROUTES = [
    Route("/", home, methods=["GET", "HEAD"]),
    Route("/patients", _guarded(patient_search), methods=["GET", "HEAD"]),
    Route("/patients/{patient_id}", _guarded(patient_history), methods=["GET", "HEAD"]),
    Route("/static/web.css", stylesheet, methods=["GET", "HEAD"]),
]
