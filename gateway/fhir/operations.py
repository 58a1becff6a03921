"""FHIR operations: Patient/$everything (the shared history) and ConceptMap/$translate."""

from __future__ import annotations

import orjson

# ConceptMap semantics (groups, unmapped modes, ranking) are shared with the adapters' code tables
from gateway.fhir.terminology import translate as translate_code
from gateway.fhir.bundle_bytes import bundle_bytes, entry_bytes
from gateway.fhir.outcome import bad_request, gone, not_found
from gateway.fhir.request import FhirRequest, FhirResponse
from gateway.fhir.search import MAX_COUNT, _url
from gateway.fhir.search_parameters import PATIENT_COMPARTMENT
from gateway.security.visibility import visible
from gateway.store.indexing import date_range

# Resources a shared history needs to be read on its own: who and where, not only what.
EVERYTHING_REFERENCED = ("Organization", "Practitioner", "PractitionerRole", "Location")


def _params(req: FhirRequest) -> dict[str, str]:
    """Operation parameters from the query string or a Parameters body."""
    out = {k: v for k, v in req.params}
    body = req.body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for p in body.get("parameter", []):
            for key, value in p.items():
                if key.startswith("value"):
                    out[p.get("name", "")] = value if not isinstance(value, dict) else value
    return out


async def everything(ctx, req: FhirRequest, id: str) -> FhirResponse:
    params = _params(req)
    since = None
    if params.get("_since"):
        try:
            since = date_range(params["_since"], ctx.settings.tz)[0]
        except Exception:
            raise bad_request(f"_since {params['_since']!r} is not a FHIR instant", "_since", "value") from None
    types = [t for t in params.get("_type", "").split(",") if t] or None
    raw_count = params.get("_count")
    if raw_count is not None and not str(raw_count).isdigit():
        raise bad_request("_count must be a non-negative integer", "_count", "value")
    count = min(int(raw_count), MAX_COUNT) if raw_count else None
    offset_raw = params.get("_page_token", "0")
    offset = int(offset_raw) if str(offset_raw).isdigit() else 0
    pairs = [(t, p) for t, ps in PATIENT_COMPARTMENT.items() for p in ps]
    async with ctx.store.session() as s:
        s = visible(s)  # the compartment and referenced resources the caller may see, and the total
        patient = await s.read("Patient", id)
        if patient is None:
            raise not_found(f"Patient/{id} is not known")
        if patient.deleted:
            raise gone(f"Patient/{id} was deleted")
        rows = await s.compartment(id, pairs, since, types)
        members = [patient] + [r for r in rows if r.pk != patient.pk]
        if since is not None and patient.last_updated < since:
            members = members[1:]
        if types:
            members = [r for r in members if r.type in types]
        seen = {r.pk for r in members}
        wanted = [t for t in EVERYTHING_REFERENCED if not types or t in types]
        if wanted:
            referenced = await s.included([r.pk for r in members] + [patient.pk], None, None, None)
            members += [r for r in referenced if r.type in wanted and r.pk not in seen]
    total = len(members)
    page = members[offset : offset + count] if count is not None else members
    base = f"{req.base_url}/Patient/{id}/$everything"
    kept = [(k, v) for k, v in req.params if k != "_page_token"]
    links = [{"relation": "self", "url": _url(base, req.params)}]
    if count is not None and offset + count < total:
        links.append({"relation": "next", "url": _url(base, kept + [("_page_token", str(offset + count))])})
    entries = [entry_bytes(f"{req.base_url}/{r.type}/{r.id}", r.content, {"search": {"mode": "match"}}) for r in page]
    return FhirResponse(200, body=bundle_bytes("searchset", entries, total, links))


async def translate(ctx, req: FhirRequest, id: str | None = None) -> FhirResponse:
    params = _params(req)
    coding = params.get("coding") if isinstance(params.get("coding"), dict) else None
    code = params.get("code") or (coding or {}).get("code")
    system = params.get("system") or (coding or {}).get("system")
    if not code:
        raise bad_request("$translate needs a code (code+system or coding)", "code", "required")
    async with ctx.store.session() as s:
        if id:
            row = await s.read("ConceptMap", id)
            if row is None or row.deleted:
                raise not_found(f"ConceptMap/{id} is not known")
            maps = [orjson.loads(row.content)]
        else:
            url = params.get("url")
            where = "r.type = ? AND r.deleted = 0"
            args: list = ["ConceptMap"]
            if url:
                where += " AND r.pk IN (SELECT pk FROM idx_uri WHERE type = 'ConceptMap' AND param = 'url' AND uri = ?)"
                args.append(url)
            maps = [orjson.loads(r.content) for r in await s.find(where, args, limit=1000)]
            if url and not maps:
                raise not_found(f"No ConceptMap with url {url}")
    matches = [m for cm in maps for m in translate_code(cm, str(code), system)]
    parameter = [{"name": "result", "valueBoolean": bool(matches)}]
    if not matches:
        parameter.append({"name": "message", "valueString": f"No translation for {system or ''}|{code}"})
    for m in matches:
        parameter.append({"name": "match", "part": [
            {"name": "equivalence", "valueCode": m["equivalence"]},
            {"name": "concept", "valueCoding": m["concept"]},
            {"name": "source", "valueUri": m["source"]},
        ]})
    return FhirResponse(200, resource={"resourceType": "Parameters", "parameter": parameter})


async def process_message(ctx, req: FhirRequest) -> FhirResponse:
    """$process-message: NHS ADW notices (FHIR DSTU2 message Bundles, XML or JSON)."""
    if not req.raw_body:
        raise bad_request("$process-message needs a message Bundle in the body", code="required")
    status, body = await ctx.services["adw"].receive(req.raw_body, req.content_type)
    return FhirResponse(status, resource=body)


async def match(ctx, req: FhirRequest) -> FhirResponse:
    """Patient/$match (R4): scored candidates for a Patient, graded by the identity rules."""
    from gateway.pipeline.identity import MatchResult, match_grade, nhs_numbers
    from gateway.pipeline.matching import demographic_candidates
    from gateway.pipeline.writes import find_one, token_query

    body = req.body
    params = {p.get("name"): p for p in (body or {}).get("parameter", [])} if isinstance(body, dict) else {}
    if not body or body.get("resourceType") != "Parameters" or "resource" not in params:
        raise bad_request("Patient/$match needs a Parameters body with a 'resource' Patient", "Parameters.parameter", "required")
    patient = ctx.check_resource(params["resource"].get("resource"), "Patient", "resource parameter")
    only_certain = bool(params.get("onlyCertainMatches", {}).get("valueBoolean", False))
    count = params.get("count", {}).get("valueInteger")
    async with ctx.store.session() as s:
        found: dict[str, dict] = {}
        for ident in patient.get("identifier", []):
            if ident.get("system") and ident.get("value"):
                hit = await find_one(ctx, s, "Patient", token_query(ident["system"], ident["value"]))
                if hit and hit.get("active") is not False:
                    found[hit["id"]] = hit
        for c in await demographic_candidates(ctx, s, patient, limit=50):
            found.setdefault(c["id"], c)
    scored = []
    for candidate in found.values():
        result = match_grade(patient, candidate)
        shared = {(i.get("system"), i.get("value")) for i in patient.get("identifier", [])} & {
            (i.get("system"), i.get("value")) for i in candidate.get("identifier", [])}
        nhs_conflict = bool(nhs_numbers(patient)) and bool(nhs_numbers(candidate)) and not (
            nhs_numbers(patient) & nhs_numbers(candidate))
        if shared and not nhs_conflict:  # the same source's identifier for the person: one record
            result = MatchResult("certain", 1.0, ["identifier equal", *result.reasons])
        if result.grade == "none" or (only_certain and result.grade != "certain"):
            continue
        scored.append((result, candidate))
    scored.sort(key=lambda x: -x[0].score)
    if count:
        scored = scored[: int(count)]
    entries = [orjson.dumps({"fullUrl": f"{req.base_url}/Patient/{c['id']}", "resource": c, "search": r.search()})
               for r, c in scored]
    return FhirResponse(200, body=bundle_bytes("searchset", entries, len(entries)))
