"""Turning one resource into the rows of the search index tables (gateway.store.schema).

This runs on every write, so each resource type's parameters are compiled once into a flat
"plan" of (first element, filter, remaining steps, emitter) tuples; extracting is then a loop of
dict lookups that skips absent elements after a single `dict.get`.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Callable
from zoneinfo import ZoneInfo

from gateway.fhir.decimals import FhirDecimal
from gateway.fhir.search_parameters import params_table

from .dates import DEFAULT_TZ, MAX_TIME, MIN_TIME, date_range
from .normalize import normalize_for_param, normalize_string
from .paths import Step, compile_path, walk
from .references import parse_canonical, parse_reference

# Column names after (pk, type), in the order extract_index emits them.
INDEX_COLUMNS: dict[str, tuple[str, ...]] = {
    "idx_string": ("param", "value_norm", "value_exact"),
    "idx_token": ("param", "system", "code", "text_norm"),
    "idx_reference": ("param", "target_type", "target_id", "target_url"),
    "idx_date": ("param", "low", "high"),
    "idx_number": ("param", "value", "system", "code"),
    "idx_uri": ("param", "uri"),
}

# Parameters answered from columns of `resource`, so indexing them would only cost writes.
_COLUMN_PARAMS = frozenset({"_id", "_lastUpdated"})  # searched on resource.id / last_updated

# ContactPoint.system codes. An Identifier's system is a URI, never one of these, which lets one
# token emitter tell the two apart without type information.
_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})

# HumanName and Address parts indexed by a string parameter pointing at the whole datatype.
_STRING_SCALARS = ("family", "text", "city", "district", "state", "postalCode", "country")
_STRING_LISTS = ("given", "prefix", "suffix", "line")

Out = dict[str, list[tuple]]
Emitter = Callable[[Any, str, Out, ZoneInfo, "str | None"], None]


def _emit_string(v: Any, name: str, out: Out, tz: ZoneInfo, only: str | None) -> None:
    rows = out["idx_string"]
    if type(v) is str:
        if v:
            rows.append((name, normalize_for_param(name, v), v))
        return
    if type(v) is not dict:
        return
    for key in _STRING_SCALARS:
        s = v.get(key)
        if type(s) is str and s:
            rows.append((name, normalize_for_param(name, s), s))
    for key in _STRING_LISTS:
        for s in v.get(key) or ():
            if type(s) is str and s:
                rows.append((name, normalize_for_param(name, s), s))
    given, family = v.get("given"), v.get("family")
    if given and type(family) is str:
        # "John Smith" must match given=[John, Adam], family=Smith: index the full name and,
        # when there are middle names, first given name + family.
        givens = [g for g in given if type(g) is str]
        for full in {" ".join([*givens, family]), " ".join([*givens[:1], family])}:
            rows.append((name, normalize_for_param(name, full), full))


def _norm_or_none(s: Any) -> str | None:
    return normalize_string(s) if type(s) is str and s else None


def _emit_token(v: Any, name: str, out: Out, tz: ZoneInfo, only: str | None) -> None:
    rows = out["idx_token"]
    t = type(v)
    if t is str:
        rows.append((name, None, v, None))
    elif t is bool:
        rows.append((name, None, "true" if v else "false", None))
    elif t is int or t is float or t is FhirDecimal:
        rows.append((name, None, str(v), None))
    elif t is not dict:
        return
    elif "coding" in v or ("text" in v and "value" not in v and "code" not in v):
        # CodeableConcept: one row per coding; its text also reachable by :text.
        text = _norm_or_none(v.get("text"))
        texts = set()
        for c in v.get("coding") or ():
            if type(c) is dict:
                tn = _norm_or_none(c.get("display")) or text
                texts.add(tn)
                rows.append((name, c.get("system"), c.get("code"), tn))
        if text is not None and text not in texts:
            rows.append((name, None, None, text))
    elif "value" in v:
        value, system = v.get("value"), v.get("system")
        if system in _CONTACT_SYSTEMS or "rank" in v:  # ContactPoint: its system is not a URI
            rows.append((name, None, value, None))
            return
        type_cc = v.get("type")  # Identifier
        rows.append((name, system, value, _norm_or_none(type_cc.get("text")) if type_cc else None))
        if type_cc and value is not None:
            # :of-type matches type coding + value together, so the pair is one indexed code.
            for c in type_cc.get("coding") or ():
                if type(c) is dict and c.get("code"):
                    rows.append((name + ":of-type", c.get("system"), f"{c['code']}|{value}", None))
    else:  # Coding
        rows.append((name, v.get("system"), v.get("code"), _norm_or_none(v.get("display"))))


def _emit_reference(v: Any, name: str, out: Out, tz: ZoneInfo, only: str | None) -> None:
    if type(v) is str:  # canonical
        parsed = parse_canonical(v)
        if parsed and (only is None or parsed[0] == only):
            out["idx_reference"].append((name, *parsed))
        return
    if type(v) is not dict:
        return
    ref = v.get("reference")
    parsed = parse_reference(ref) if type(ref) is str else None
    if parsed and (only is None or parsed[0] == only):
        out["idx_reference"].append((name, *parsed))
    ident = v.get("identifier")
    if type(ident) is dict and ident.get("value") is not None:
        # Logical references are searched with `param:identifier=system|value`.
        if only is None or (parsed and parsed[0] == only) or v.get("type") == only:
            out["idx_token"].append((name + ":identifier", ident.get("system"), ident["value"], None))


def _emit_date(v: Any, name: str, out: Out, tz: ZoneInfo, only: str | None) -> None:
    try:
        if type(v) is str:
            out["idx_date"].append((name, *date_range(v, tz)))
        elif type(v) is dict:  # Period; an open end is unbounded
            start, end = v.get("start"), v.get("end")
            if start is None and end is None:
                return
            low = date_range(start, tz)[0] if start else MIN_TIME
            high = date_range(end, tz)[1] if end else MAX_TIME
            out["idx_date"].append((name, low, high))
    except (ValueError, TypeError):
        pass  # an invalid date is the validator's business; indexing must not fail the write


def _emit_number(v: Any, name: str, out: Out, tz: ZoneInfo, only: str | None) -> None:
    t = type(v)
    if t is int or t is float or t is FhirDecimal:
        out["idx_number"].append((name, float(v), None, None))
    elif t is dict:  # Quantity; `||unit` searches match on code, falling back to the unit
        value = v.get("value")
        if type(value) in (int, float, FhirDecimal):
            out["idx_number"].append((name, float(value), v.get("system"), v.get("code") or v.get("unit")))


def _emit_uri(v: Any, name: str, out: Out, tz: ZoneInfo, only: str | None) -> None:
    if type(v) is str and v:
        out["idx_uri"].append((name, v))


_EMITTERS: dict[str, Emitter] = {
    "string": _emit_string,
    "token": _emit_token,
    "reference": _emit_reference,
    "date": _emit_date,
    "number": _emit_number,
    "quantity": _emit_number,
    "uri": _emit_uri,
}


def _deceased(resource: dict[str, Any]) -> list[Any]:
    # R4: Patient.deceased.exists() and Patient.deceased != false -- absent means "false".
    flag = resource.get("deceasedBoolean")
    return [flag is True or resource.get("deceasedDateTime") is not None]


_COMPUTED: dict[str, Callable[[dict[str, Any]], list[Any]]] = {"deceased": _deceased}

PlanEntry = tuple[str, "str | None", "str | None", tuple[Step, ...], str, Emitter, "str | None"]


@cache
def _plan(resource_type: str) -> tuple[tuple[PlanEntry, ...], tuple[tuple[Callable, str, Emitter], ...]]:
    entries: list[PlanEntry] = []
    computed: list[tuple[Callable, str, Emitter]] = []
    for sp in params_table(resource_type).values():
        if sp.name in _COLUMN_PARAMS:
            continue
        emit = _EMITTERS[sp.type]
        for path in sp.paths:
            cp = compile_path(path)
            if cp.computed:
                computed.append((_COMPUTED[cp.computed], sp.name, emit))
                continue
            first = cp.steps[0]
            entries.append(
                (first.key, first.filter_key, first.filter_value, cp.steps[1:], sp.name, emit, cp.only_type)
            )
    return tuple(entries), tuple(computed)


def empty_index() -> Out:
    return {"idx_string": [], "idx_token": [], "idx_reference": [], "idx_date": [], "idx_number": [], "idx_uri": []}


def extract_index(resource: dict[str, Any], tz: ZoneInfo = DEFAULT_TZ) -> Out:
    """Index rows of `resource`, keyed by table, each tuple the columns after (pk, type).

    Every table name is present (possibly with an empty list) so the caller can delete and
    re-insert per table without special cases.
    """
    out = empty_index()
    entries, computed = _plan(resource.get("resourceType", ""))
    get = resource.get
    for key, fkey, fval, rest, name, emit, only in entries:
        v = get(key)
        if v is None:
            continue
        if type(v) is list:
            items = v if fkey is None else [i for i in v if type(i) is dict and i.get(fkey) == fval]
        elif fkey is None or (type(v) is dict and v.get(fkey) == fval):
            items = (v,)
        else:
            continue
        if rest:
            items = walk(items, rest)
        for item in items:
            emit(item, name, out, tz, only)
    for fn, name, emit in computed:
        for item in fn(resource):
            emit(item, name, out, tz, None)
    return out
