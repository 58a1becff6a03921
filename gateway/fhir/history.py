"""History at instance, type and system level, newest first, paged by change sequence."""

from __future__ import annotations

import orjson

from gateway.fhir.bundle_bytes import bundle_bytes, entry_bytes
from gateway.fhir.outcome import bad_request, not_found
from gateway.fhir.request import FhirRequest, FhirResponse
from gateway.fhir.search import DEFAULT_COUNT, MAX_COUNT, _url
from gateway.store.indexing import date_range


def _instant_param(req: FhirRequest, name: str, ctx) -> int | None:
    value = req.param(name)
    if value is None:
        return None
    try:
        low, _ = date_range(value, ctx.settings.tz)
    except Exception:
        raise bad_request(f"{name} must be a FHIR instant such as 2026-01-31T09:00:00Z, not {value!r}", name, "value") from None
    return low


async def _history(ctx, req: FhirRequest, rtype: str | None, rid: str | None) -> FhirResponse:
    count_raw = req.param("_count")
    if count_raw is not None and not count_raw.isdigit():
        raise bad_request(f"_count must be a non-negative integer, not {count_raw!r}", "_count", "value")
    count = min(int(count_raw), MAX_COUNT) if count_raw else DEFAULT_COUNT
    since = _instant_param(req, "_since", ctx)
    at = _instant_param(req, "_at", ctx)
    token = req.param("_page_token")
    before = int(token) if token and token.isdigit() else None
    async with ctx.store.session() as s:
        if rid is not None:
            current = await s.read(rtype, rid)
            if current is None:
                raise not_found(f"{rtype}/{rid} is not known")
        rows, next_seq, total = await s.history(rtype, rid, since, before, count, at)
    base = req.base_url + "".join(f"/{p}" for p in (rtype, rid) if p) + "/_history"
    kept = [(k, v) for k, v in req.params if k != "_page_token"]
    links = [{"relation": "self", "url": _url(base, req.params)}]
    if next_seq is not None:
        links.append({"relation": "next", "url": _url(base, kept + [("_page_token", str(next_seq))])})
    entries = []
    for row in rows:
        url = f"{row.type}/{row.id}"
        request = {"method": row.method or "PUT", "url": url if row.method != "POST" else row.type}
        response = {
            "status": "410 Gone" if row.deleted else ("201 Created" if row.version == 1 else "200 OK"),
            "etag": row.etag,
            "lastModified": row.last_updated_iso,
        }
        full = f"{req.base_url}/{url}"
        if row.deleted:
            entries.append(orjson.dumps({"fullUrl": full, "request": request, "response": response}))
        else:
            entries.append(entry_bytes(full, row.content, {"request": request, "response": response}))
    return FhirResponse(200, body=bundle_bytes("history", entries, total, links))


async def instance_history(ctx, req: FhirRequest, type: str, id: str) -> FhirResponse:
    return await _history(ctx, req, type, id)


async def type_history(ctx, req: FhirRequest, type: str) -> FhirResponse:
    return await _history(ctx, req, type, None)


async def system_history(ctx, req: FhirRequest) -> FhirResponse:
    return await _history(ctx, req, None, None)
