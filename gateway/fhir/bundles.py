"""`transaction` and `batch` Bundles, each entry dispatched through the same route table.

A transaction runs every entry in one store session: any failing entry raises, the session rolls
back, and the client gets that entry's OperationOutcome. Ids of created resources are decided
first so `urn:uuid:` references between entries can be rewritten before anything is written.
"""

from __future__ import annotations

import re
from http import HTTPStatus

import orjson

from gateway.fhir import decimals

from gateway.fhir.crud import criteria_key
from gateway.fhir.outcome import FhirError, Issue, bad_request
from gateway.fhir.request import FhirRequest, FhirResponse
from gateway.fhir.search import find_matches
from gateway.store.ids import new_id

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
ALONE_ENTRIES = 20


def _status_line(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


def _entry_request(req: FhirRequest, entry: dict, index: int) -> FhirRequest:
    request = entry.get("request")
    if not isinstance(request, dict) or not request.get("method") or not request.get("url"):
        raise bad_request(f"Bundle.entry[{index}] needs request.method and request.url", f"Bundle.entry[{index}].request", "required")
    method = str(request["method"]).upper()
    if method not in _ORDER:
        raise bad_request(f"Bundle.entry[{index}].request.method {method} is not supported", f"Bundle.entry[{index}].request.method")
    url = str(request["url"])
    if url.startswith(req.base_url + "/"):
        url = url[len(req.base_url) + 1 :]
    headers = {"prefer": req.headers.get("prefer", "")}
    for field, header in (("ifMatch", "if-match"), ("ifNoneExist", "if-none-exist"),
                          ("ifNoneMatch", "if-none-match"), ("ifModifiedSince", "if-modified-since")):
        if request.get(field):
            headers[header] = request[field]
    sub = FhirRequest.from_url(method, url, headers=headers, base_url=req.base_url, in_bundle=True,
                               prevalidated=True)  # process_bundle validated the whole Bundle
    resource = entry.get("resource")
    if method in ("POST", "PUT"):
        if resource is None:
            raise bad_request(f"Bundle.entry[{index}] ({method} {url}) has no resource", f"Bundle.entry[{index}].resource", "required")
        sub.body = resource
    if method == "PATCH":
        # JSON Patch travels as a Binary in a Bundle
        if not isinstance(resource, dict) or resource.get("resourceType") != "Binary":
            raise bad_request(f"Bundle.entry[{index}] PATCH needs a Binary resource holding a JSON Patch", f"Bundle.entry[{index}].resource")
        import base64

        sub.raw_body = base64.b64decode(resource.get("data", ""))
        sub.content_type = resource.get("contentType", "application/json-patch+json")
    return sub


def _response_entry(resp: FhirResponse, want_resource: bool) -> dict:
    out: dict = {"response": {"status": _status_line(resp.status)}}
    h = resp.headers
    if "Location" in h:
        out["response"]["location"] = h["Location"].split("/fhir/", 1)[-1] if "/fhir/" in h["Location"] else h["Location"]
    if "ETag" in h:
        out["response"]["etag"] = h["ETag"]
    body = resp.as_dict()
    if body is not None:
        if body.get("resourceType") == "OperationOutcome" and resp.status >= 300:
            out["response"]["outcome"] = body
        elif want_resource or resp.status == 200:
            out["resource"] = body
            if "Last-Modified" in h and body.get("meta", {}).get("lastUpdated"):
                out["response"]["lastModified"] = body["meta"]["lastUpdated"]
    return out


# In orjson's compact output a `"reference":"..."` pair can only be an element named reference
# (inside a string value the quotes would be escaped), so references are found and replaced on
# the serialised bytes in C rather than by walking every node in Python.
_REFERENCE = re.compile(rb'"reference":"((?:[^"\\]|\\.)*)"')


def _references(raw: bytes):
    for m in _REFERENCE.finditer(raw):
        yield m, (orjson.loads(b'"' + m.group(1) + b'"') if b"\\" in m.group(1) else m.group(1).decode())


def rewrite_references(node, refs: dict[str, str]):
    """A copy of `node` with every `reference` found in `refs` replaced."""
    if not refs:
        return node
    raw, plain = decimals.dumps_plain(node)
    out, last, changed = [], 0, False
    for m, value in _references(raw):
        new = refs.get(value)
        if new is not None:
            out += [raw[last:m.start()], b'"reference":', orjson.dumps(new)]
            last, changed = m.end(), True
    if not changed:
        return node
    out.append(raw[last:])
    joined = b"".join(out)  # only reference strings changed: numbers are as `node` had them
    return orjson.loads(joined) if plain else decimals.loads(joined)


def _conditional_refs(node, found: set[str]) -> None:
    """Conditional references (`Patient?identifier=...`) anywhere in `node`."""
    for _, value in _references(decimals.dumps(node)):
        if "?" in value and not value.startswith(("http:", "https:", "urn:")):
            found.add(value)


async def process_bundle(ctx, req: FhirRequest) -> FhirResponse:
    bundle = req.body
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise bad_request("POST to the base needs a Bundle of type transaction or batch", "Bundle", "structure")
    btype = bundle.get("type")
    if btype not in ("transaction", "batch"):
        raise bad_request(f"Bundle.type must be transaction or batch, not {btype!r}", "Bundle.type", "value")
    ctx.check_resource(bundle, "Bundle")
    entries = bundle.get("entry") or []
    if btype == "batch":
        return await _batch(ctx, req, entries)
    return await _transaction(ctx, req, entries)


async def _batch(ctx, req: FhirRequest, entries: list) -> FhirResponse:
    out = []
    want = (req.prefer("return") or "representation") == "representation"
    for i, entry in enumerate(entries):
        try:
            sub = _entry_request(req, entry, i)
            if sub.path == "" and sub.method == "POST":
                raise bad_request("A batch entry cannot itself be a Bundle to the base")
            resp = await ctx.router.dispatch(sub)
            out.append(_response_entry(resp, want))
        except FhirError as exc:
            out.append({"response": {"status": _status_line(exc.status), "outcome": exc.outcome()}})
    return FhirResponse(200, resource={"resourceType": "Bundle", "type": "batch-response", "entry": out})


def _conditional(sub: FhirRequest) -> tuple[str, str, str] | None:
    """(lock kind, type, criteria) of a conditional create or conditional update entry."""
    rtype = sub.path.split("/", 1)[0]
    if sub.method == "POST" and sub.header("if-none-exist"):
        return "create", rtype, sub.header("if-none-exist")
    if sub.method == "PUT" and "/" not in sub.path and sub.params:
        # the criteria the handler searches with and locks on (crud._criteria)
        criteria = "&".join(f"{k}={v}" for k, v in sub.params if k not in ("_format", "_pretty"))
        return ("update", rtype, criteria) if criteria else None
    return None


async def _search_conditional(ctx, s, sub: FhirRequest, rtype: str, criteria: str) -> list:
    """The entry's matches, kept for its handler (the criteria's lock is already held)."""
    hits = await find_matches(ctx, s, rtype, criteria)
    sub.conditional_hits = (len(s.changes), hits)
    return hits


async def _transaction(ctx, req: FhirRequest, entries: list) -> FhirResponse:
    subs = [_entry_request(req, e, i) for i, e in enumerate(entries)]
    want = (req.prefer("return") or "representation") == "representation"
    results: list[dict | None] = [None] * len(subs)
    # A large transaction starts one of its own in the store (see SqliteStore.session `alone`)
    async with ctx.store.session(write=True, alone=len(subs) > ALONE_ENTRIES) as s:
        refs: dict[str, str] = {}
        # Every conditional entry's lock first, in one sorted order: transactions (and the bulk
        # loader, which does the same) naming the same criteria in another order cannot deadlock.
        conditions = [_conditional(sub) for sub in subs]
        for key in sorted({criteria_key(*c) for c in conditions if c}):
            await s.lock(key)
        for i, (entry, sub) in enumerate(zip(entries, subs)):
            if sub.path == "" and sub.method == "POST":
                raise bad_request(f"Bundle.entry[{i}] cannot be a nested transaction")
            full_url = entry.get("fullUrl")
            rtype = sub.path.split("/", 1)[0]
            # Conditional entries are searched here, under the lock their handler takes, and the
            # handler uses this answer: the ids given to fullUrls are the ones it then writes.
            if sub.method == "POST":
                match = None
                if conditions[i]:
                    hits = await _search_conditional(ctx, s, sub, rtype, conditions[i][2])
                    match = hits[0].id if len(hits) == 1 else None
                sub.assigned_id = match or new_id()
                if full_url:
                    refs[full_url] = f"{rtype}/{sub.assigned_id}"
            elif conditions[i]:  # conditional update
                hits = await _search_conditional(ctx, s, sub, rtype, conditions[i][2])
                target = hits[0].id if len(hits) == 1 else (sub.body or {}).get("id") or new_id()
                if isinstance(sub.body, dict):
                    sub.body = {**sub.body, "id": target}
                if full_url:
                    refs[full_url] = f"{rtype}/{target}"
            elif sub.method == "PUT" and full_url:
                refs[full_url] = sub.path
        conditional: set[str] = set()
        for sub in subs:
            if sub.body is not None:
                _conditional_refs(sub.body, conditional)
        for cref in conditional:
            ctype, _, query = cref.partition("?")
            hits = await find_matches(ctx, s, ctype, query)
            if len(hits) != 1:
                raise FhirError(412, Issue("error", "not-found" if not hits else "multiple-matches",
                                           f"Conditional reference {cref!r} matched {len(hits)} resources"))
            refs[cref] = f"{ctype}/{hits[0].id}"
        for sub in subs:
            if sub.body is not None and refs:
                sub.body = rewrite_references(sub.body, refs)
        for i in sorted(range(len(subs)), key=lambda j: _ORDER[subs[j].method]):
            try:
                resp = await ctx.router.dispatch(subs[i])
            except FhirError as exc:
                exc.issues = [Issue(x.severity, x.code, f"Bundle.entry[{i}]: {x.diagnostics}",
                                    x.expression or f"Bundle.entry[{i}]") for x in exc.issues]
                raise
            results[i] = _response_entry(resp, want)
    return FhirResponse(200, resource={"resourceType": "Bundle", "type": "transaction-response", "entry": results})
