"""The journey of one HL7 v2 message: record → parse → map → look up → plan → store → ACK.

Every step's outcome is written on the message's inbox record, so an operator can see where a
message stopped and replay it after a mapping fix. The raw message, the resources it produced
and its inbox status commit in one transaction: a crash leaves either all of it or only what the
sender must re-send (it never got an ACK). Only an unexpected failure takes the slow path:
rollback, then record the raw message as failed on its own and answer AE, never AA.
"""

from __future__ import annotations

import logging
import time

from gateway.adapters.hl7v2.ack import AckError, build_ack, new_control_id, salvage_header
from gateway.adapters.hl7v2.er7 import Er7Error, parse_message, split_batch
from gateway.adapters.hl7v2.mapping.adt import map_adt
from gateway.adapters.hl7v2.mapping.codes import ConceptMaps
from gateway.adapters.hl7v2.mapping.feeds import FeedConfig
from gateway.adapters.hl7v2.plan import lookups, plan_writes
from gateway.pipeline.provenance import provenance_for
from gateway.pipeline.writes import apply_transaction, find_one, move_references, write_one
from gateway.store import inbox
from gateway.store.base import conflicted

log = logging.getLogger("gateway.hl7v2")
DONE = ("stored", "failed", "rejected")


class Hl7v2Pipeline:
    def __init__(self, ctx):
        self.ctx = ctx
        mappings = ctx.settings.effective_mappings_dir
        self.codes = ConceptMaps.load(mappings)
        self.feeds = FeedConfig.load(mappings / "hl7v2-feeds.json")
        self.triggers = self.feeds.referral_triggers

    # -- entry points ------------------------------------------------------------------------
    async def receive_batch(self, data: bytes, channel: str) -> list[bytes]:
        """An HTTP body may hold one message or a batch: one ACK per message, in order."""
        try:
            messages = split_batch(data)
        except Er7Error as exc:
            return [await self._reject(data, channel, exc)]
        if not messages:
            return [await self._reject(data, channel, Er7Error("empty message"))]
        return [await self.receive(m.encode("utf-8") if isinstance(m, str) else m, channel) for m in messages]

    async def receive(self, raw: bytes, channel: str, certificate: str | None = None) -> bytes:
        """One message in, one ACK out, after the message is durably recorded.

        `certificate`: on the MLLP channel, the subject of the sender's TLS client certificate
        (None without one), checked against the feed its MSH-3/MSH-4 name.
        """
        try:
            msg = parse_message(raw)
        except Er7Error as exc:
            return await self._reject(raw, channel, exc)
        if not msg.control_id:
            return await self._reject(raw, channel, Er7Error("MSH-10 (message control id) is required", "MSH", 10))
        sender = f"{msg.sending_application}^{msg.sending_facility}"
        kind = f"{msg.message_type}^{msg.trigger_event}"
        if channel == "mllp":
            refusal = self.feeds.refusal(msg.sending_application, msg.sending_facility, certificate)
            if refusal:
                return await self._refuse(raw, channel, msg, sender, kind, refusal)
        try:
            return await self._apply(raw, channel, msg, sender, kind)
        except Exception as exc:
            failure = exc
        if conflicted(failure) == "retry":  # PostgreSQL rolled it all back as a deadlock victim
            log.warning("message %s from %s: %s; applying it once more", msg.control_id, sender, failure)
            try:
                return await self._apply(raw, channel, msg, sender, kind)
            except Exception as exc:
                failure = exc
        # unexpected: keep the message, answer AE, let an operator replay it
        log.error("message %s from %s failed", msg.control_id, sender, exc_info=failure)
        return await self._record_failure(raw, channel, msg, sender, kind, failure)

    async def _apply(self, raw: bytes, channel: str, msg, sender: str, kind: str) -> bytes:
        async with self.ctx.store.session(write=True) as s:
            entry, seen = await inbox.receive(s, channel, sender, msg.control_id, kind, raw)
            if seen and entry.status in DONE and entry.ack:
                return entry.ack  # a re-sent message changes nothing and gets the same ACK
            return await self._process(s, entry.id, msg, raw)

    async def replay(self, entry_id: int) -> str:
        """Re-run a recorded message through the current mappings; returns its new status."""
        async with self.ctx.store.session(write=True) as s:
            entry = await inbox.get(s, entry_id, lock=True)
            if entry is None:
                raise KeyError(entry_id)
            try:
                msg = parse_message(entry.raw)
            except Er7Error:
                return entry.status
            ack = await self._process(s, entry.id, msg, entry.raw, replay=True)
        return "stored" if b"MSA|AA" in ack else "failed"

    # -- steps -------------------------------------------------------------------------------
    async def _process(self, s, entry_id: int, msg, raw: bytes, replay: bool = False) -> bytes:
        steps = {"received": _now(), "parsed": _now()}
        mapping = map_adt(msg, self.feeds, self.codes, self.triggers)
        if mapping.errors:
            return await self._finish(s, entry_id, msg, "failed", steps, mapping.errors, [], "AE")
        steps["mapped"] = _now()
        if mapping.patient_keys:
            # One patient's messages apply one at a time, whichever connection or process brought them.
            await s.lock("patient:" + "|".join(mapping.patient_keys[0]))
        found = {}
        for name, (rtype, query) in lookups(mapping).items():
            found[name] = await self._find_one(s, rtype, query)
        entries = plan_writes(mapping, found)
        steps["matched"] = _now()
        produced = await self._store(s, entries)
        if mapping.action == "merge":
            produced += await self._follow_merge(s, mapping, found)
        if produced:
            feed = self.feeds.resolve(msg.sending_application, msg.sending_facility)
            prov = provenance_for(produced, entry_id, f"HL7 v2 {msg.message_type}^{msg.trigger_event} "
                                  f"control id {msg.control_id}", feed.ods_code or msg.sending_facility or None,
                                  msg.sending_application or msg.sending_facility)
            produced += await write_one(self.ctx, s, prov)
        steps["stored"] = _now()
        return await self._finish(s, entry_id, msg, "stored", steps, [], produced, "AA", replay)

    async def _find_one(self, s, rtype: str, query: str) -> dict | None:
        return await find_one(self.ctx, s, rtype, query)

    async def _store(self, s, entries: list[dict]) -> list[str]:
        return await apply_transaction(self.ctx, s, entries)

    async def _follow_merge(self, s, mapping, found: dict) -> list[str]:
        """A40: what pointed at the retired Patient now points at the survivor (history untouched)."""
        survivor = await self._find_one(s, "Patient", lookups(mapping)["patient"][1])
        produced: list[str] = []
        for name, old in found.items():
            if name.startswith("merge_from_") and old and survivor:
                produced += await move_references(self.ctx, s, old["id"], survivor["id"])
        return produced

    async def _finish(self, s, entry_id, msg, status, steps, errors: list[AckError], produced, code, replay=False) -> bytes:
        ack = build_ack(msg, code, control_id=new_control_id(), errors=errors).encode("utf-8")
        detail = {"steps": steps, "errors": [_err_json(e) for e in errors], "resources": produced}
        if replay:
            detail["replayed"] = _now()
        await inbox.update(s, entry_id, status, ack, detail)
        return ack

    async def _reject(self, raw: bytes, channel: str, exc: Er7Error) -> bytes:
        """AR: the message could not be read. Still recorded, so nothing is lost silently."""
        err = AckError(getattr(exc, "segment", None) or "MSH", 1, getattr(exc, "field", None), "100" if "MSH" in str(exc) else "102", str(exc)[:200])
        ack = build_ack(None, "AR", control_id=new_control_id(), errors=[err], raw_header=raw[:8192]).encode("utf-8")
        hdr = salvage_header(raw[:8192])
        sender = f"{hdr.first(3)}^{hdr.first(4)}" if hdr else ""
        return await self._record(raw, channel, sender, None, "unparsed", "rejected", ack,
                                  {"errors": [_err_json(err)], "steps": {"received": _now()}})

    async def _refuse(self, raw: bytes, channel: str, msg, sender: str, kind: str, reason: str) -> bytes:
        """AR: this connection may not send for that feed. Recorded without its control id, so an
        impostor cannot take a control id (and its ACK) from the feed it claims to be."""
        log.warning("MLLP message %s refused: %s", msg.control_id, reason)
        err = AckError("MSH", 1, 4, "207", f"Sender not authorised: {reason}"[:200])
        ack = build_ack(msg, "AR", control_id=new_control_id(), errors=[err]).encode("utf-8")
        return await self._record(raw, channel, sender, None, kind, "rejected", ack,
                                  {"errors": [_err_json(err)], "steps": {"received": _now()},
                                   "refused": reason, "claimedControlId": msg.control_id})

    async def _record_failure(self, raw, channel, msg, sender, kind, exc) -> bytes:
        err = AckError("MSH", 1, None, "207", "The gateway could not apply this message; it is kept for replay")
        ack = build_ack(msg, "AE", control_id=new_control_id(), errors=[err]).encode("utf-8")
        return await self._record(raw, channel, sender, msg.control_id, kind, "failed", ack,
                                  {"errors": [_err_json(err), {"message": f"{type(exc).__name__}: {exc}"[:500]}],
                                   "steps": {"received": _now()}})

    async def _record(self, raw: bytes, channel: str, sender: str, control_id: str | None, kind: str,
                      status: str, ack: bytes, detail: dict) -> bytes:
        """A message that went no further, recorded on its own with its ACK and why."""
        async with self.ctx.store.session(write=True) as s:
            entry, _ = await inbox.receive(s, channel, sender, control_id, kind, raw, status)
            await inbox.update(s, entry.id, status, ack, detail)
        return ack


def _err_json(e: AckError) -> dict:
    return {"segment": e.segment, "sequence": e.sequence, "field": e.field, "code": e.code, "message": e.message}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
