"""The journey of one NHS ADW notice: record → parse → map → look up → plan → store → respond.

Assessment notice → ServiceRequest for a care needs assessment (plus Patient and Encounter);
discharge notice → the Encounter's expected or actual discharge, and the referral's occurrence;
withdrawal → the ServiceRequest revoked (and the expected discharge date withdrawn). Like HL7 v2,
the raw notice, its resources and its inbox status commit together; a re-sent notice (same
MessageHeader id from the same sender) changes nothing and gets the same response.
"""

from __future__ import annotations

import logging
import uuid

import orjson

from gateway.adapters.adw import AdwError, build_response, map_adw, parse_adw
from gateway.adapters.adw.codes import ENCOUNTER_REF, PATIENT_REF, PLANNED_DISCHARGE_EXT
from gateway.fhir.jsoncopy import clone
from gateway.pipeline.hl7v2 import _now
from gateway.pipeline.matching import merge_into
from gateway.pipeline.provenance import provenance_for
from gateway.pipeline.writes import apply_transaction, find_one, token_query, write_one
from gateway.store import inbox

log = logging.getLogger("gateway.adw")
_NS = uuid.UUID("0d8d7c1e-2f0b-5b7e-8a71-616477000000")


class AdwPipeline:
    def __init__(self, ctx):
        self.ctx = ctx

    async def receive(self, raw: bytes, content_type: str) -> tuple[int, dict]:
        """(HTTP status, response body) for a notice posted to $process-message."""
        try:
            bundle = parse_adw(raw, content_type)
        except AdwError as exc:
            return 400, _outcome(str(exc), exc.location)
        try:
            m = map_adw(bundle)
        except AdwError as exc:
            return 400, _outcome(str(exc), exc.location)
        sender = m.sender or ""
        async with self.ctx.store.session(write=True) as s:
            entry, seen = await inbox.receive(s, "adw", sender, m.message_id, f"ADW^{m.kind}", raw)
            if seen and entry.ack:
                return 200, orjson.loads(entry.ack)
            steps = {"received": _now(), "parsed": _now()}
            if m.errors:
                reply = build_response(bundle, False, m.errors)
                await inbox.update(s, entry.id, "failed", orjson.dumps(reply),
                                   {"steps": steps, "errors": [{"location": l, "message": t} for l, t in m.errors]})
                return 200, reply
            steps["mapped"] = _now()
            if m.patient_keys:
                await s.lock("patient:" + "|".join(m.patient_keys[0]))
            found = await self._lookups(s, m)
            entries = plan_adw(m, found)
            steps["matched"] = _now()
            produced = await self._store(s, entries)
            if produced:
                prov = provenance_for(produced, entry.id, f"ADW {m.kind} notice {m.message_id}", sender or None,
                                      f"hospital {sender}")
                produced += await write_one(self.ctx, s, prov)
            steps["stored"] = _now()
            reply = build_response(bundle, True, [])
            await inbox.update(s, entry.id, "stored", orjson.dumps(reply),
                               {"steps": steps, "errors": [], "resources": produced})
        return 200, reply

    async def _lookups(self, s, m) -> dict:
        found: dict = {}
        for key in m.patient_keys:
            found["patient"] = await self._one(s, "Patient", key)
            if found["patient"]:
                break
        if m.encounter_key:
            found["encounter"] = await self._one(s, "Encounter", m.encounter_key)
        if m.referral_key:
            found["referral"] = await self._one(s, "ServiceRequest", m.referral_key)
        return found

    async def _one(self, s, rtype: str, key: tuple[str, str]) -> dict | None:
        return await find_one(self.ctx, s, rtype, token_query(*key))

    async def _store(self, s, entries: list[dict]) -> list[str]:
        return await apply_transaction(self.ctx, s, entries)


def plan_adw(m, found: dict) -> list[dict]:
    """Transaction entries for a mapped notice, given what the store already holds. Pure."""
    entries: list[dict] = []
    refs: dict[str, str] = {}
    patient = found.get("patient")
    if m.patient:
        if patient:
            merged = merge_into(patient, m.patient)
            if merged != patient:
                entries.append(_put(merged))
            refs[PATIENT_REF] = f"Patient/{patient['id']}"
        else:
            full = _urn("patient", *m.patient_keys[0])
            entries.append({"fullUrl": full, "resource": m.patient, "request": {"method": "POST", "url": "Patient"}})
            refs[PATIENT_REF] = full
    elif patient:
        refs[PATIENT_REF] = f"Patient/{patient['id']}"
    encounter = found.get("encounter")
    if m.encounter_update is not None:
        if encounter:
            updated = _apply_encounter(encounter, m.encounter_update, m.clear_planned_discharge)
            if updated != encounter:
                entries.append(_put(updated))
            refs[ENCOUNTER_REF] = f"Encounter/{encounter['id']}"
        elif m.kind != "withdrawal":
            full = _urn("encounter", *m.encounter_key)
            entries.append({"fullUrl": full, "resource": m.encounter_update, "request": {"method": "POST", "url": "Encounter"}})
            refs[ENCOUNTER_REF] = full
    elif encounter:
        refs[ENCOUNTER_REF] = f"Encounter/{encounter['id']}"
        if m.clear_planned_discharge:
            updated = _apply_encounter(encounter, {}, True)
            if updated != encounter:
                entries.append(_put(updated))
    referral = found.get("referral")
    if m.service_request and not referral:
        system, value = m.referral_key
        entries.append({"fullUrl": _urn("referral", system, value), "resource": m.service_request,
                        "request": {"method": "PUT", "url": f"ServiceRequest?identifier={system}|{value}"}})
    elif referral:
        updated = clone(referral)
        if m.kind == "withdrawal" and m.withdraw_scope == "all":
            updated["status"] = "revoked"
        if m.kind == "discharge":
            planned = _planned(m.encounter_update or {})
            if planned:
                updated["occurrenceDateTime"] = planned
        if m.kind == "assessment" and referral.get("status") == "revoked":
            updated["status"] = "active"  # a new assessment notice for the same case reopens it
        if updated != referral:
            entries.append(_put(updated))
    for e in entries:
        e["resource"] = _replace_refs(e["resource"], refs)
    return entries


def _planned(enc: dict) -> str | None:
    for ext in enc.get("extension", []):
        if ext.get("url") == PLANNED_DISCHARGE_EXT:
            return ext.get("valueDateTime")
    return None


def _apply_encounter(current: dict, update: dict, clear_planned: bool) -> dict:
    out = clone(current)
    exts = [e for e in out.get("extension", []) if e.get("url") != PLANNED_DISCHARGE_EXT]
    planned = _planned(update)
    if planned and not clear_planned:
        exts.append({"url": PLANNED_DISCHARGE_EXT, "valueDateTime": planned})
    elif not clear_planned:
        exts += [e for e in current.get("extension", []) if e.get("url") == PLANNED_DISCHARGE_EXT]
    if exts:
        out["extension"] = exts
    else:
        out.pop("extension", None)
    if update.get("status") == "finished" and current.get("status") != "finished":
        out["status"] = "finished"
        out.setdefault("period", {}).update({k: v for k, v in update.get("period", {}).items() if k == "end"})
    for key in ("period",):
        if key in update and key not in out:
            out[key] = update[key]
    return out


def _put(resource: dict) -> dict:
    return {"resource": resource, "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}",
                                              "ifMatch": f'W/"{resource["meta"]["versionId"]}"'}}


def _urn(kind: str, system: str, value: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NS, f'{kind}|{system}|{value}')}"


def _replace_refs(node, refs: dict[str, str]):
    from gateway.fhir.bundles import rewrite_references

    return rewrite_references(node, refs)


def _outcome(message: str, location: str | None) -> dict:
    issue = {"severity": "error", "code": "structure", "diagnostics": message}
    if location:
        issue["expression"] = [location]
    return {"resourceType": "OperationOutcome", "issue": [issue]}
