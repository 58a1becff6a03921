"""HTTP edge of the inbound channels: POST /hl7v2 and the inbox views operators use."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.store import inbox

ER7_TYPES = ("x-application/hl7-v2+er7", "application/hl7-v2+er7", "application/hl7-v2", "text/plain")


async def post_hl7v2(request: Request) -> Response:
    ctx = request.app.state.ctx
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype not in ER7_TYPES:
        return Response(f"Content-Type must be one of {', '.join(ER7_TYPES)}\n", status_code=415, media_type="text/plain")
    body = await request.body()
    if len(body) > ctx.settings.max_body_bytes:
        return Response("Message over the size limit\n", status_code=413, media_type="text/plain")
    acks = await ctx.services["hl7v2"].receive_batch(body, "http")
    # ACKs for a batch are separated by a blank line, as they would be in an HL7 batch file
    return Response(b"\n".join(acks), media_type="x-application/hl7-v2+er7")


def _entry_json(entry, full: bool) -> dict:
    out = entry.summary()
    out.update(entry.detail)
    if full:
        out["raw"] = entry.raw.decode("utf-8", "replace")
        out["ack"] = entry.ack.decode("utf-8", "replace") if entry.ack else None
    return out


async def list_inbox(request: Request) -> Response:
    ctx = request.app.state.ctx
    status = request.query_params.get("status")
    before = request.query_params.get("before")
    limit = request.query_params.get("_count", "50")
    if (before and not before.isdigit()) or not limit.isdigit():
        return JSONResponse({"error": "before and _count must be integers"}, status_code=400)
    async with ctx.store.session() as s:
        rows = await inbox.listing(s, status, int(before) if before else None, min(int(limit), 500))
    body = {"entries": [_entry_json(r, False) for r in rows]}
    if rows and len(rows) == min(int(limit), 500):
        body["next"] = f"/inbox?before={rows[-1].id}" + (f"&status={status}" if status else "")
    return Response(orjson.dumps(body), media_type="application/json")


async def get_inbox_entry(request: Request) -> Response:
    ctx = request.app.state.ctx
    raw_id = request.path_params["entry_id"]
    if not raw_id.isdigit():
        return JSONResponse({"error": "inbox ids are integers"}, status_code=404)
    async with ctx.store.session() as s:
        entry = await inbox.get(s, int(raw_id))
    if entry is None:
        return JSONResponse({"error": f"no inbox entry {raw_id}"}, status_code=404)
    return Response(orjson.dumps(_entry_json(entry, True)), media_type="application/json")


async def replay_inbox_entry(request: Request) -> Response:
    ctx = request.app.state.ctx
    raw_id = request.path_params["entry_id"]
    if not raw_id.isdigit():
        return JSONResponse({"error": "inbox ids are integers"}, status_code=404)
    try:
        status = await ctx.services["hl7v2"].replay(int(raw_id))
    except KeyError:
        return JSONResponse({"error": f"no inbox entry {raw_id}"}, status_code=404)
    return JSONResponse({"id": int(raw_id), "status": status})


CSV_TYPES = ("text/csv", "application/csv", "text/plain")


async def post_ingest(request: Request) -> Response:
    """A council (CLD) or community (CSDS) CSV file in; a FHIR OperationOutcome report out."""
    from gateway.pipeline.ingest import ingest

    ctx = request.app.state.ctx
    kind = request.path_params["kind"]
    if kind not in ("council", "community"):
        return _outcome(404, "not-found", f"No ingest channel {kind!r}; use council or community")
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype not in CSV_TYPES:
        return _outcome(415, "not-supported", "Send the file as text/csv")
    body = await request.body()
    if len(body) > ctx.settings.max_body_bytes:
        return _outcome(413, "too-costly", "File over the size limit; use `gateway ingest` for large files")
    source = request.query_params.get("source") or f"{kind}-upload"
    report = await ingest(ctx, kind, body, source)
    status = 400 if report.file_errors else 200
    return Response(orjson.dumps(report.outcome()), status_code=status, media_type="application/fhir+json")


def _outcome(status: int, code: str, text: str) -> Response:
    body = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}
    return Response(orjson.dumps(body), status_code=status, media_type="application/fhir+json")


ROUTES = [
    Route("/ingest/{kind}", post_ingest, methods=["POST"]),
    Route("/hl7v2", post_hl7v2, methods=["POST"]),
    Route("/inbox", list_inbox, methods=["GET"]),
    Route("/inbox/{entry_id}", get_inbox_entry, methods=["GET"]),
    Route("/inbox/{entry_id}/replay", replay_inbox_entry, methods=["POST"]),
]
