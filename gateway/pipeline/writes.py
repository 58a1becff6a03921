"""What every inbound pipeline does with the store: find by identifier, apply a transaction."""

from __future__ import annotations

import orjson

from gateway.fhir.request import FhirRequest
from gateway.fhir.search import find_matches


def token_query(system: str, value: str) -> str:
    """`identifier=system|value` with FHIR search escaping of `\\ , | $`."""
    def esc(text: str) -> str:
        for ch in ("\\", ",", "|", "$"):
            text = text.replace(ch, "\\" + ch)
        return text

    return f"identifier={esc(system)}|{esc(value)}"


async def find_one(ctx, s, rtype: str, query: str) -> dict | None:
    rows = await find_matches(ctx, s, rtype, query, limit=1)
    return orjson.loads(rows[0].content) if rows else None


async def write_one(ctx, s, resource: dict, if_match: int | None = None) -> list[str]:
    """One resource, checked like any write, without the Bundle machinery (Provenance, a Patient
    update): create when it has no id, else update. Returns the version written, if any."""
    from gateway.store.base import VersionConflict
    from gateway.fhir.outcome import precondition_failed

    ctx.check_resource(resource, resource.get("resourceType"))
    before = len(s.changes)
    if resource.get("id"):
        try:
            await s.update(resource, resource["id"], if_match)
        except VersionConflict as exc:
            raise precondition_failed(f"{resource['resourceType']}/{resource['id']} changed meanwhile "
                                      f"(now version {exc.current})") from None
    else:
        await s.create(resource)
    return [f"{r.type}/{r.id}/_history/{r.version}" for r in s.changes[before:]]


async def apply_transaction(ctx, s, entries: list[dict]) -> list[str]:
    """Run entries as one FHIR transaction through the route table; the versions it wrote."""
    if not entries:
        return []
    before = len(s.changes)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    await ctx.router.dispatch(FhirRequest("POST", "", body=bundle, in_bundle=True, headers={"prefer": "return=minimal"}))
    return [f"{r.type}/{r.id}/_history/{r.version}" for r in s.changes[before:]]


# What happened stays as it was recorded: merges do not rewrite audit trails or Patient links.
_HISTORY_TYPES = ("Patient", "Provenance", "AuditEvent")


async def move_references(ctx, s, old_id: str, new_id: str) -> list[str]:
    """Everything in Patient/old_id's compartment now points at Patient/new_id (a merge)."""
    from gateway.fhir.bundles import rewrite_references
    from gateway.fhir.search_parameters import PATIENT_COMPARTMENT

    if old_id == new_id:
        return []
    pairs = [(t, p) for t, ps in PATIENT_COMPARTMENT.items() if t not in _HISTORY_TYPES for p in ps]
    refs = {f"Patient/{old_id}": f"Patient/{new_id}"}
    entries = []
    for row in await s.compartment(old_id, pairs, None, None):
        resource = orjson.loads(row.content)
        moved = rewrite_references(resource, refs)
        if moved != resource:
            entries.append({"resource": moved, "request": {"method": "PUT", "url": f"{row.type}/{row.id}", "ifMatch": row.etag}})
    return await apply_transaction(ctx, s, entries)
