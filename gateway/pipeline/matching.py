"""One person across partners: find or create the Patient a source record belongs to.

The rules are in `identity.py` (pure); this module does the look-ups and writes:
- a valid NHS number on both sides is a certain match: the source's identifiers are added to the
  existing Patient, whose other data is never overwritten by another partner's;
- a source's own person identifier seen before finds that source's record of the person;
- if an NHS number arrives later for a record kept apart, and another Patient already holds that
  number, the two are linked (the older becomes `replaced-by`, its references move);
- a demographic match without an NHS number (probable/possible) never merges: a new Patient is
  made, both are linked `seealso` and tagged for review (`Patient?_tag=...|possible-duplicate`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from gateway.fhir.jsoncopy import clone
from gateway.pipeline.identity import NHS_NUMBER_SYSTEM, demographics, is_valid_nhs_number, match_grade
from gateway.pipeline.writes import find_one, move_references, token_query, write_one

REVIEW_TAG = {"system": "https://fhir.activerecovery.example/CodeSystem/identity-review", "code": "possible-duplicate",
              "display": "Possible duplicate: for review"}
_NS = uuid.UUID("a3f0c5d2-6b1e-5c4f-9e8d-7a6b5c4d3e2f")


@dataclass
class PatientMatch:
    reference: str  # what urn:gateway:patient becomes ("Patient/<id>")
    grade: str  # certain | source | new | probable | possible
    written: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)


def _nhs(patient: dict) -> list[str]:
    return [i["value"] for i in patient.get("identifier", [])
            if i.get("system") == NHS_NUMBER_SYSTEM and is_valid_nhs_number(i.get("value"))]


def _other_ids(patient: dict) -> list[tuple[str, str]]:
    return [(i["system"], i["value"]) for i in patient.get("identifier", [])
            if i.get("system") and i.get("value") and i.get("system") != NHS_NUMBER_SYSTEM]


def merge_into(current: dict, incoming: dict) -> dict:
    """Add the incoming identifiers and fill gaps; another partner's data is never replaced."""
    out = clone(current)
    have = {(i.get("system"), i.get("value")) for i in out.get("identifier", [])}
    for ident in incoming.get("identifier", []):
        if (ident.get("system"), ident.get("value")) not in have:
            out.setdefault("identifier", []).append(ident)
            have.add((ident.get("system"), ident.get("value")))
    for key, value in incoming.items():
        if key not in out and key not in ("id", "meta", "link"):
            out[key] = value
    return out


class SearchLookup:
    """How `resolve_patient` finds Patients: through the search engine, one query per question.

    The bulk file ingest (`gateway.pipeline.bulk`) passes a lookup answering the identifier
    questions from identifiers it resolved for a whole chunk of rows at once; the answers must be
    the ones these searches would give at that moment."""

    async def by_identifier(self, ctx, s, system: str, value: str) -> dict | None:
        """The first (lowest pk) live Patient carrying system|value."""
        return await find_one(ctx, s, "Patient", token_query(system, value))

    async def by_id(self, ctx, s, pid: str) -> dict | None:
        return await find_one(ctx, s, "Patient", f"_id={pid}")

    async def candidates(self, ctx, s, incoming: dict) -> list[dict]:
        return await demographic_candidates(ctx, s, incoming)


_SEARCH = SearchLookup()


def _adds_nothing(current: dict, incoming: dict) -> bool:
    """True when `merge_into(current, incoming)` would equal `current`."""
    if any(key not in current for key in incoming if key not in ("id", "meta", "link")):
        return False
    have = {(i.get("system"), i.get("value")) for i in current.get("identifier", [])}
    return all((i.get("system"), i.get("value")) in have for i in incoming.get("identifier", []))


async def resolve_patient(ctx, s, incoming: dict, lookup: SearchLookup | None = None) -> PatientMatch:
    lookup = lookup or _SEARCH
    by_nhs = None
    for number in _nhs(incoming):
        by_nhs = await lookup.by_identifier(ctx, s, NHS_NUMBER_SYSTEM, number)
        if by_nhs:
            break
    by_source = None
    for system, value in _other_ids(incoming):
        by_source = await lookup.by_identifier(ctx, s, system, value)
        if by_source:
            break
    if by_nhs and by_source and by_source["id"] != by_nhs["id"]:
        # The NHS number arrived for a record kept apart: link them, keep the NHS-number one.
        written = await _link_replaced(ctx, s, by_source, by_nhs)
        by_nhs = await lookup.by_id(ctx, s, by_nhs["id"])
        written += await _update(ctx, s, by_nhs, merge_into(by_nhs, incoming))
        return PatientMatch(f"Patient/{by_nhs['id']}", "certain", written)
    found = by_nhs or by_source
    if found:
        # the usual case on a file: this source's record is already on the Patient (no copy made)
        written = [] if _adds_nothing(found, incoming) else await _update(ctx, s, found, merge_into(found, incoming))
        return PatientMatch(f"Patient/{found['id']}", "certain" if by_nhs else "source", written)
    return await _new_patient(ctx, s, incoming, lookup)


async def _new_patient(ctx, s, incoming: dict, lookup: SearchLookup = _SEARCH) -> PatientMatch:
    candidates = await lookup.candidates(ctx, s, incoming)
    graded = [(match_grade(incoming, c), c) for c in candidates]
    close = [(g, c) for g, c in graded if g.grade in ("probable", "possible")]
    patient = clone(incoming)
    pid = str(uuid.uuid5(_NS, "|".join(f"{a}|{b}" for a, b in sorted(_other_ids(incoming) + [(NHS_NUMBER_SYSTEM, n) for n in _nhs(incoming)]))))
    written: list[str] = []
    if close:
        patient.setdefault("meta", {}).setdefault("tag", []).append(REVIEW_TAG)
        patient["link"] = [{"other": {"reference": f"Patient/{c['id']}"}, "type": "seealso"} for _, c in close]
    written += await write_one(ctx, s, {**patient, "id": pid})
    for _, c in close:
        linked = clone(c)
        linked["link"] = [*c.get("link", []), {"other": {"reference": f"Patient/{pid}"}, "type": "seealso"}]
        tags = linked.setdefault("meta", {}).setdefault("tag", [])
        if not any(t.get("code") == REVIEW_TAG["code"] for t in tags):
            tags.append(REVIEW_TAG)
        written += await _update(ctx, s, c, linked)
    grade = max((g.grade for g, _ in close), key=["possible", "probable"].index, default="new")
    return PatientMatch(f"Patient/{pid}", grade, written, [f"Patient/{c['id']}" for _, c in close])


async def demographic_candidates(ctx, s, incoming: dict, limit: int = 20) -> list[dict]:
    """Patients sharing the birth date and family name (normalised) with `incoming`."""
    import orjson

    from gateway.fhir.search import compile_filters

    d = demographics(incoming)
    if not d.get("birthDate") or not (d.get("family") or d.get("given")):
        return []
    params = [("birthdate", d["birthDate"]), ("active:not", "false")]  # merged-away records are not candidates
    if d.get("family"):
        params.append(("family", d["family"]))
    compiled = compile_filters(ctx, "Patient", params, lenient=False)
    rows = await s.find(compiled.where, compiled.args, limit)
    return [orjson.loads(r.content) for r in rows]


async def _update(ctx, s, current: dict, new: dict) -> list[str]:
    if new == current:
        return []
    return await write_one(ctx, s, new, int(current["meta"]["versionId"]))


async def _link_replaced(ctx, s, old: dict, survivor: dict) -> list[str]:
    retired = clone(old)
    retired["active"] = False
    retired["link"] = [l for l in old.get("link", []) if l.get("other", {}).get("reference") != f"Patient/{survivor['id']}"]
    retired["link"].append({"other": {"reference": f"Patient/{survivor['id']}"}, "type": "replaced-by"})
    keep = clone(survivor)
    keep["link"] = [l for l in survivor.get("link", []) if l.get("other", {}).get("reference") != f"Patient/{old['id']}"]
    keep["link"].append({"other": {"reference": f"Patient/{old['id']}"}, "type": "replaces"})
    written = await _update(ctx, s, old, retired)
    written += await _update(ctx, s, survivor, keep)
    written += await move_references(ctx, s, old["id"], survivor["id"])
    return written
