"""Type-level search: filters compiled to SQL, keyset paging, _sort, _include/_revinclude, _elements.

Paging is by keyset (the last row's sort values and pk, carried in `_page_token`), never by
offset, so rows written while a client pages through results cannot make it skip or repeat one.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import parse_qsl, urlencode

import orjson

from gateway.fhir import decimals

from gateway.fhir.bundle_bytes import bundle_bytes, entry_bytes
from gateway.fhir.outcome import bad_request
from gateway.fhir.request import FhirRequest, FhirResponse
from gateway.fhir.search_parameters import search_params_for
from gateway.fhir.structure import summary_elements
from gateway.security.visibility import visible
from gateway.store.search_plan import search_page
from gateway.store.search_sql import SearchError, compile_search, sort_expression

RESULT_PARAMS = frozenset(
    ["_count", "_sort", "_include", "_revinclude", "_summary", "_total", "_elements", "_format", "_pretty",
     "_page_token", "_contained", "_containedType"]
)
DEFAULT_COUNT, MAX_COUNT = 20, 1000
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
_SENTINEL = {"string": "", "token": "", "reference": "", "uri": "", "date": -(2**62), "number": -1e300,
             "quantity": -1e300}


def split_params(params: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    filters, control = [], []
    for k, v in params:
        (control if k.split(":", 1)[0] in RESULT_PARAMS else filters).append((k, v))
    return filters, control


def compile_filters(ctx, rtype: str, filters: list[tuple[str, str]], lenient: bool):
    try:
        return compile_search(rtype, filters, tz=ctx.settings.tz, lenient=lenient)
    except SearchError as exc:
        raise bad_request(str(exc), getattr(exc, "param", None), "invalid") from None


# `identifier=system|value` with nothing to unescape or decode (no \ , | $ + % in either part)
_IDENTIFIER_ONLY = re.compile(r"identifier=([^&|,\\$+%]+)\|([^&|,\\$+%]+)")


async def find_matches(ctx, session, rtype: str, criteria: str, limit: int = 2):
    """Resources matching a conditional-interaction query string (strict: unknown params are errors)."""
    plain = _IDENTIFIER_ONLY.fullmatch(criteria)
    if plain and "identifier" in search_params_for(rtype):
        # The hot path of every adapter (find by business identifier), same SQL as compile_search makes
        where = ("r.type = ? AND r.deleted = 0 AND r.pk IN (SELECT pk FROM idx_token WHERE type = ? "
                 "AND param = 'identifier' AND code = ? AND system = ?)")
        return await session.find(where, [rtype, rtype, plain.group(2), plain.group(1)], limit)
    filters, _ = split_params(parse_qsl(criteria, keep_blank_values=True))
    if not filters:
        raise bad_request(f"Conditional criteria {criteria!r} has no search parameters", code="required")
    compiled = compile_filters(ctx, rtype, filters, lenient=False)
    return await session.find(compiled.where, compiled.args, limit)


def _int_param(control: dict[str, list[str]], name: str, default: int, maximum: int) -> int:
    values = control.get(name)
    if not values:
        return default
    raw = values[-1]
    if not raw.isdigit():
        raise bad_request(f"{name} must be a non-negative integer, not {raw!r}", name, "value")
    return min(int(raw), maximum)


def _sorts(ctx, rtype: str, values: list[str]) -> list[tuple[str, list, bool]]:
    params = search_params_for(rtype)
    out = []
    for value in values:
        for name in filter(None, value.split(",")):
            desc = name.startswith("-")
            name = name.lstrip("-")
            try:
                sql, args = sort_expression(rtype, name, desc)
            except SearchError as exc:
                raise bad_request(str(exc), "_sort", "invalid") from None
            ptype = "date" if name == "_lastUpdated" else (params[name].type if name in params else "token")
            out.append((f"COALESCE({sql}, ?)", [*args, _SENTINEL.get(ptype, "")], desc))
    return out


def _decode_token(token: str) -> list:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except Exception:
        raise bad_request("_page_token is not one this server issued", "_page_token", "value") from None
    if not isinstance(value, list):
        raise bad_request("_page_token is not one this server issued", "_page_token", "value")
    return value


def _encode_token(values: list) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


async def search_type(ctx, req: FhirRequest, type: str) -> FhirResponse:
    lenient = req.prefer("handling") == "lenient"
    filters, control_pairs = split_params(req.params)
    control: dict[str, list[str]] = {}
    for k, v in control_pairs:
        control.setdefault(k, []).append(v)
    compiled = compile_filters(ctx, type, filters, lenient)
    count = _int_param(control, "_count", DEFAULT_COUNT, MAX_COUNT)
    summary = (control.get("_summary") or [None])[-1]
    if summary not in (None, "count", "false", "data", "text", "true"):
        raise bad_request(f"_summary={summary} is not supported", "_summary", "not-supported")
    total_mode = (control.get("_total") or ["accurate"])[-1]
    if total_mode not in ("none", "estimate", "accurate"):
        raise bad_request(f"_total={total_mode} is not one of none, estimate, accurate", "_total", "value")
    sorts = _sorts(ctx, type, control.get("_sort", []))
    after = _decode_token(control["_page_token"][-1]) if "_page_token" in control else None
    if summary == "count":
        count = 0
    async with ctx.store.session() as session:
        s = visible(session)  # only what the caller may see: rows, total, chains, _has, includes
        # Counting a huge match set costs seconds: by default the total is exact up to a cap and
        # left out above it; `_total=accurate` asks for an exact count whatever it costs
        asked = summary == "count" or ("_total" in control and total_mode == "accurate")
        cap = None if asked else ctx.settings.search_total_cap
        page = await search_page(s, compiled, sorts, count, after, total_mode != "none", cap,
                                 index_total=s is session)
        included = await _includes(ctx, s, type, page.rows, control, lenient)
    ignored = set(compiled.ignored)
    used = [(k, v) for k, v in filters if k not in ignored] + [
        (k, v) for k, v in control_pairs if k != "_page_token"
    ]
    base = f"{req.base_url}/{type}"
    links = [{"relation": "self", "url": _url(base, used + ([("_page_token", control["_page_token"][-1])] if after else []))}]
    if after is not None:
        links.append({"relation": "first", "url": _url(base, used)})
    if page.next_after is not None:
        links.append({"relation": "next", "url": _url(base, used + [("_page_token", _encode_token(page.next_after))])})
    elements = _elements(control)
    entries = [_entry(req, r, "match", elements, summary) for r in page.rows]
    entries += [_entry(req, r, "include", None, summary) for r in included]
    return FhirResponse(200, body=bundle_bytes("searchset", entries, page.total, links))


def _url(base: str, pairs: list[tuple[str, str]]) -> str:
    return base + ("?" + urlencode(pairs, safe="|:,/$") if pairs else "")


def _elements(control: dict[str, list[str]]) -> set[str] | None:
    if "_elements" not in control:
        return None
    return {e.strip() for v in control["_elements"] for e in v.split(",") if e.strip()}


def _entry(req: FhirRequest, row, mode: str, elements: set[str] | None, summary: str | None) -> bytes:
    content = row.content
    if elements is not None or summary in ("data", "text", "true"):
        res = decimals.loads(content)
        if summary == "true":
            keep = summary_elements(row.type) | {"resourceType", "id", "meta"}
            res = {k: v for k, v in res.items() if k in keep}
        elif elements is not None:
            keep = elements | {"resourceType", "id", "meta"}
            res = {k: v for k, v in res.items() if k in keep}
        elif summary == "data":
            res.pop("text", None)
        elif summary == "text":
            res = {k: v for k, v in res.items() if k in ("resourceType", "id", "meta", "text")}
        meta = res.setdefault("meta", {})
        meta["tag"] = [*meta.get("tag", []), SUBSETTED]
        content = decimals.dumps(res)
    return entry_bytes(f"{req.base_url}/{row.type}/{row.id}", content, {"search": {"mode": mode}})


async def _includes(ctx, s, rtype: str, rows, control: dict[str, list[str]], lenient: bool) -> list:
    directives = []
    for key in ("_include", "_revinclude", "_include:iterate", "_revinclude:iterate"):
        for value in control.get(key, []):
            directives.append((key.startswith("_rev"), key.endswith(":iterate"), value))
    if not directives or not rows:
        return []
    seen = {r.pk for r in rows}
    out: list = []
    frontier = list(rows)
    for round_no in range(4):  # :iterate follows at most a few hops; cycles stop at `seen`
        added = []
        for rev, iterate, value in directives:
            if round_no > 0 and not iterate:
                continue
            parts = value.split(":")
            if value == "*":
                src_type, param, target = None, None, None
            elif len(parts) in (2, 3):
                src_type, param, target = parts[0], parts[1], (parts[2] if len(parts) == 3 else None)
                p = search_params_for(src_type).get(param) if src_type else None
                if p is None or p.type != "reference":
                    if lenient:
                        continue
                    raise bad_request(f"{value!r} does not name a reference search parameter", "_include", "invalid")
            else:
                raise bad_request(f"_include/_revinclude value {value!r} is not Type:param[:target]", "_include")
            if rev:
                targets = [(r.type, r.id) for r in frontier]
                found = await s.revincluded(targets, src_type, param)
            else:
                pks = [r.pk for r in frontier if src_type is None or r.type == src_type]
                found = await s.included(pks, param, src_type, target)
            for r in found:
                if r.pk not in seen:
                    seen.add(r.pk)
                    added.append(r)
        out += added
        frontier = added
        if not added:
            break
    return out
