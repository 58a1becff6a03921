"""Bulk file ingest: the rows of one store session written with the searches of the whole chunk
done up front, and each row's entries written straight through the session.

The row-by-row path (`gateway.pipeline.ingest._one_row`) sends every row through the FHIR
transaction machinery: a Bundle, the route table, a search per conditional update (twice: once
to pick the target, once more in the handler) and a search per person identifier. On a file of
100,000 rows that is most of the time. This module keeps the same outcome per row and does less:

- **Identifiers of a chunk are resolved together.** Every conditional target
  (`Type?identifier=system|value`, `ifNoneExist`, conditional references) and every person
  identifier of the chunk's rows is collected first, then answered by one search per resource
  type and 200 values (`identifier=v1,v2,...`, the same search engine and index; see
  `ChunkIndex.resolve`). The answers are kept in a
  map from (type, system, value) to the resources carrying it, and that map is brought up to date
  from what each row wrote once the row's savepoint is released; a rolled-back row changes
  nothing in it. So each look-up answers what the search would have answered at that moment.
  The map lives for one store session only: between sessions other writers may change the store.
- **Entries are written through the session** (`s.update` for a conditional PUT, `s.create` for
  a conditional create), after `ctx.check_resource` (structure and profile policy) like the
  transaction handler does, so index rows, versions, no-op detection and the outbox stay in the
  store. Targets are picked as the transaction handler picks them: one match updates it, none
  creates, several reject the row (412).
- Anything else (another method, criteria that are not one plain identifier, two entries of a
  row with the same criteria, an entry on Patient) goes through `apply_transaction` exactly as
  before, so the shortcut is only taken where its semantics are the handler's.

Each row still runs in its own savepoint (all or nothing), gets its Provenance from the caller,
and a session commits many rows with one fsync; a crash loses only uncommitted whole rows, which
a re-run then loads (everything is idempotent).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

import orjson

from gateway.fhir.bundles import rewrite_references
from gateway.fhir.crud import criteria_key
from gateway.fhir.outcome import FhirError, Issue, precondition_failed
from gateway.fhir.search import compile_filters, find_matches
from gateway.fhir.search_parameters import search_params_for
from gateway.pipeline.identity import (
    NHS_NUMBER_SYSTEM,
    demographics,
    is_valid_nhs_number,
)
from gateway.pipeline.matching import SearchLookup
from gateway.pipeline.writes import apply_transaction, token_query
from gateway.store.ids import new_id

# Criteria the search engine answers with its exact-identifier fast path (`find_matches`): no
# escapes or percent-encoding to interpret, so system and value are exactly the indexed ones.
_PLAIN = re.compile(r"identifier=([^&|,\\$+%]+)\|([^&|,\\$+%]+)")
_REFERENCE = re.compile(rb'"reference":"((?:[^"\\]|\\.)*)"')
_BATCH = 200  # identifiers per search (bound variables stay well under SQLite's limit)
_FAMILY_CAP = 500  # Patients sharing a family-name prefix read to pick demographic candidates

Key = tuple[str, str, str]  # (resource type, identifier system, identifier value)


class _Fallback(Exception):
    """This row's entries are not of the shapes handled here: use the transaction path."""


def _plain_key(rtype: str, criteria: str) -> Key | None:
    m = _PLAIN.fullmatch(criteria)
    if m is None or "identifier" not in search_params_for(rtype):
        return None
    return rtype, m.group(1), m.group(2)


class _Entry:
    __slots__ = ("criteria", "full_url", "hits", "index", "key", "method", "resource", "rtype", "target")

    def __init__(self, index: int, method: str, rtype: str, criteria: str, resource: dict, full_url: str | None):
        self.index, self.method, self.rtype, self.criteria = index, method, rtype, criteria
        self.key = _plain_key(rtype, criteria)
        self.resource, self.full_url, self.target, self.hits = resource, full_url, None, 0


def _plan(entries: list[dict]) -> list[_Entry]:
    """The row's entries as conditional PUTs / conditional creates, or _Fallback."""
    out: list[_Entry] = []
    seen: set[tuple[str, str]] = set()
    for i, entry in enumerate(entries):
        request = entry.get("request")
        resource = entry.get("resource")
        if not isinstance(request, dict) or not isinstance(resource, dict):
            raise _Fallback
        method = str(request.get("method") or "").upper()
        path, _, query = str(request.get("url") or "").partition("?")
        rtype = path.strip("/")
        if not rtype or "/" in rtype or rtype == "Patient" or resource.get("resourceType") != rtype:
            raise _Fallback
        if method == "PUT" and query and not request.get("ifMatch"):
            # the criteria string the transaction handler searches with (decoded query)
            criteria = "&".join(f"{k}={v}" for k, v in parse_qsl(query, keep_blank_values=True))
        elif method == "POST" and not query and request.get("ifNoneExist"):
            criteria = str(request["ifNoneExist"])
        else:
            raise _Fallback
        if (rtype, criteria) in seen:
            raise _Fallback  # the second would see the first's write: leave ordering to the handler
        seen.add((rtype, criteria))
        out.append(_Entry(i, method, rtype, criteria, resource, entry.get("fullUrl")))
    return out


def _conditional_refs(resources: list[dict]) -> list[str]:
    """`Type?criteria` references in the row's resources, found on the compact JSON bytes as the
    transaction handler finds them; a reference with JSON escapes in it is left to the handler."""
    found: list[str] = []
    for res in resources:
        raw = orjson.dumps(res)
        if b"?" not in raw:
            continue
        for m in _REFERENCE.finditer(raw):
            if b"\\" in m.group(1):
                raise _Fallback
            value = m.group(1).decode()
            if "?" in value and not value.startswith(("http:", "https:", "urn:")) and value not in found:
                found.append(value)
    return found


class ChunkIndex(SearchLookup):
    """Identifier → resources, for the rows of one session; also the Patient lookup of
    `resolve_patient` (which falls back to a search for anything not resolved here)."""

    def __init__(self, ctx, s) -> None:
        self.ctx, self.s = ctx, s
        self.ids: dict[Key, list[tuple[int, str]]] = {}  # resolved keys → (pk, id), pk order
        self.keys_of: dict[tuple[str, str], set[Key]] = {}  # (type, id) → resolved keys it carries
        self.plans: dict[int, tuple | None] = {}  # id(row.entries) → (entry plan, conditional refs) | None
        self.types: set[str] = set()  # resource types of the resolved keys
        # Patient id → content as last read in this session, dropped when a row writes that
        # Patient; never mutated by resolve_patient (it copies before changing anything)
        self.patients: dict[str, dict] = {}

    # -- filling --------------------------------------------------------------------------
    async def resolve(self, keys: set[Key]) -> None:
        """Answer `keys` with one search per type and batch (the search engine's SQL).

        The search asks for the values alone (`identifier=v1,v2,...`): an OR of system|value
        pairs cannot use the token index's (code, system) order and reads every identifier of
        the type, while a list of codes is one index probe each. The answer is a superset; each
        resource found is then registered only under the exact system|value pairs it carries."""
        by_type: dict[str, list[Key]] = {}
        for key in keys:
            if key not in self.ids:
                by_type.setdefault(key[0], []).append(key)
        for rtype, todo in by_type.items():
            todo.sort(key=lambda k: k[2])
            for i in range(0, len(todo), _BATCH):
                batch = todo[i:i + _BATCH]
                value = ",".join(dict.fromkeys(code for _, _, code in batch))
                compiled = compile_filters(self.ctx, rtype, [("identifier", value)], lenient=False)
                limit = 4 * len(batch) + 10
                rows = await self.s.find(compiled.where, compiled.args, limit)
                if len(rows) >= limit:
                    continue  # more sharing than expected: leave these keys to per-key searches
                wanted = set(batch)
                self.types.add(rtype)
                for key in batch:
                    self.ids[key] = []
                for row in rows:
                    self._register(rtype, row.pk, row.id, orjson.loads(row.content), wanted)

    def _register(self, rtype: str, pk: int, rid: str, resource: dict | None, only: set[Key] | None = None) -> None:
        now: set[Key] = set()
        for ident in (resource or {}).get("identifier") or ():
            if isinstance(ident, dict) and ident.get("system") and ident.get("value"):
                key = (rtype, ident["system"], ident["value"])
                if key in self.ids and (only is None or key in only):
                    now.add(key)
        old = self.keys_of.get((rtype, rid), set())
        for key in old - now:
            self.ids[key] = [x for x in self.ids[key] if x[1] != rid]
        for key in now - old:
            hits = self.ids[key]
            if not any(x[1] == rid for x in hits):
                hits.append((pk, rid))
                hits.sort()
        self.keys_of[(rtype, rid)] = now | (old if only is not None else set())

    def written(self, changes) -> None:
        """Bring the map up to date with what a committed row wrote (StoredResource rows)."""
        for c in changes:
            if c.type == "Patient":
                self.patients.pop(c.id, None)
            if c.type in self.types:  # a type nothing was asked about (Provenance) has nothing to update
                self._register(c.type, c.pk, c.id, None if c.deleted else orjson.loads(c.content))

    # -- answering ------------------------------------------------------------------------
    async def matches(self, rtype: str, criteria: str, key: Key | None) -> list[str]:
        """Ids of the resources `criteria` finds, at most two (like find_matches)."""
        if key is not None and key in self.ids:
            return [rid for _, rid in self.ids[key][:2]]
        return [r.id for r in await find_matches(self.ctx, self.s, rtype, criteria)]

    async def by_identifier(self, ctx, s, system: str, value: str) -> dict | None:
        key = _plain_key("Patient", token_query(system, value))
        if key is None or key not in self.ids:
            return await super().by_identifier(ctx, s, system, value)
        hits = self.ids[key]
        if not hits:
            return None
        pid = hits[0][1]
        if pid in self.patients:  # resolve_patient asks before it writes; written() drops what a row wrote
            return self.patients[pid]
        row = await s.read("Patient", pid)
        if row is None or row.deleted:  # changed under us: ask the search engine
            return await super().by_identifier(ctx, s, system, value)
        self.patients[pid] = patient = orjson.loads(row.content)
        return patient

    async def by_id(self, ctx, s, pid: str) -> dict | None:
        row = await s.read("Patient", pid)
        return None if row is None or row.deleted else orjson.loads(row.content)

    async def candidates(self, ctx, s, incoming: dict, limit: int = 20) -> list[dict]:
        """The same candidates as `demographic_candidates` (birthdate eq, family starts-with,
        not inactive; the first `limit` by pk), found from the family name instead.

        The search with the birth date reads every Patient's date index row (the date filter
        cannot narrow an index range on both bounds), so on a large store it costs milliseconds
        per new person. The family name alone is a narrow index range; the birth date is then
        compared here. For a full date (the only kind `demographics` keeps) a Patient's
        birthdate interval lies within that day exactly when its birthDate is that date."""
        d = demographics(incoming)
        if not d.get("birthDate") or not d.get("family"):
            return await super().candidates(ctx, s, incoming)
        compiled = compile_filters(ctx, "Patient", [("family", d["family"]), ("active:not", "false")], lenient=False)
        rows = await s.find(compiled.where, compiled.args, _FAMILY_CAP)
        if len(rows) >= _FAMILY_CAP:  # a very common name: let the search engine narrow it
            return await super().candidates(ctx, s, incoming)
        out = []
        for row in rows:
            if f'"birthDate":"{d["birthDate"]}"'.encode() in row.content:
                patient = orjson.loads(row.content)
                if patient.get("birthDate") == d["birthDate"]:
                    out.append(patient)
                    if len(out) == limit:
                        break
        return out


def chunk_keys(rows, index: ChunkIndex, want_locks: bool = True) -> tuple[set[Key], list[str]]:
    """Every plain identifier key the chunk's rows will look up, and (for PostgreSQL) the lock
    keys of their conditional interactions. Each row's entry plan is kept in `index` for
    `write_entries`."""
    keys: set[Key] = set()
    locks: list[str] = []
    for row in rows:
        if row.errors or not row.entries:
            continue
        if row.patient is not None:
            for ident in row.patient.get("identifier") or ():
                system, value = ident.get("system"), ident.get("value")
                if not system or not value:
                    continue
                if system == NHS_NUMBER_SYSTEM and not is_valid_nhs_number(value):
                    continue
                key = _plain_key("Patient", token_query(system, value))
                if key:
                    keys.add(key)
        try:
            plan = _plan(row.entries)
            refs = _conditional_refs([e.resource for e in plan])
        except _Fallback:
            index.plans[id(row.entries)] = None
            continue
        index.plans[id(row.entries)] = (plan, refs)
        for e in plan:
            if e.key:
                keys.add(e.key)
            if want_locks:  # the conditional handlers' own lock keys: HTTP clients wait on the same
                locks.append(criteria_key("update" if e.method == "PUT" else "create", e.rtype, e.criteria))
        for ref in refs:
            rtype, _, query = ref.partition("?")
            key = _plain_key(rtype, query)
            if key:
                keys.add(key)
    return keys, sorted(set(locks))


async def write_entries(ctx, s, index: ChunkIndex, entries: list[dict], refs: dict[str, str]) -> list[str]:
    """One row's adapter entries (patient reference already in `refs`), written through the
    session with the transaction handler's semantics. Returns the versions written."""
    planned = index.plans.pop(id(entries), False)
    try:
        if planned is None:
            raise _Fallback
        plan, conditional = planned or (p := _plan(entries), _conditional_refs([e.resource for e in p]))
    except _Fallback:
        return await apply_transaction(ctx, s, [rewrite_references(e, refs) for e in entries])
    before = len(s.changes)
    refs = dict(refs)
    for e in plan:
        hits = await index.matches(e.rtype, e.criteria, e.key)
        e.hits = len(hits)
        if e.method == "PUT":
            e.target = hits[0] if len(hits) == 1 else (e.resource.get("id") or new_id())
        else:
            e.target = hits[0] if len(hits) == 1 else new_id()
        if e.full_url:
            refs[e.full_url] = f"{e.rtype}/{e.target}"
    for cref in conditional:
        ctype, _, query = cref.partition("?")
        hits = await index.matches(ctype, query, _plain_key(ctype, query))
        if len(hits) != 1:
            raise FhirError(412, Issue("error", "not-found" if not hits else "multiple-matches",
                                       f"Conditional reference {cref!r} matched {len(hits)} resources"))
        refs[cref] = f"{ctype}/{hits[0]}"
    # Then each entry as the handler runs it, creates before updates: the body is checked first
    # (even a conditional create that will find its resource exists), then the match decides.
    todo = sorted(plan, key=lambda x: 0 if x.method == "POST" else 1)
    bodies = rewrite_references([e.resource for e in todo], refs)  # one pass for the row
    for e, body in zip(todo, bodies):
        try:
            body = ctx.check_resource(body, e.rtype)
            if e.hits > 1:
                what = "Conditional update" if e.method == "PUT" else "If-None-Exist"
                raise precondition_failed(f"{what} {e.criteria!r} matches {e.hits} {e.rtype} resources")
            if e.method == "PUT" and (e.hits or body.get("id")):
                await s.update({**body, "id": e.target}, e.target, None)
            elif e.method == "PUT":
                # no match and no id: an update to an id made here, so there is no current
                # version to read (or lock) first; history says PUT, as the handler's does
                await s.create({**body, "id": e.target}, e.target, method="PUT")
            elif not e.hits:
                await s.create({k: v for k, v in body.items() if k != "id"}, e.target)
            # else: it exists; the handler answers 200 and leaves it alone
        except FhirError as exc:
            raise _entry_error(e, exc) from None
    return [f"{r.type}/{r.id}/_history/{r.version}" for r in s.changes[before:]]


def _entry_error(e: _Entry, exc: FhirError) -> FhirError:
    # the same wording a transaction gives, so a rejected row reads alike on either path
    exc.issues = [Issue(x.severity, x.code, f"Bundle.entry[{e.index}]: {x.diagnostics}",
                        x.expression or f"Bundle.entry[{e.index}]") for x in exc.issues]
    return exc
