"""AuditEvents for every read, search, write and refused access, written off the request path.

A request only builds a small dict and puts it on a bounded in-process queue; a background task
drains the queue in batches, each batch one write session, straight into the store as AuditEvent
resources (searchable like any other: `AuditEvent?altid=<client>&entity=Patient/123`). A full
queue (the store slow or down) drops the event, counts it and logs a warning at most every 30 s:
auditing never blocks or fails a request. The writer uses the store directly, not the route
table, so writing an AuditEvent is never itself audited.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from datetime import datetime, timezone

from gateway.security.principal import Principal

log = logging.getLogger("gateway.audit")

CLIENT_SYSTEM = "https://fhir.activerecovery.example/Id/client"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_INTERACTION = "http://hl7.org/fhir/restful-interaction"
_ACTIONS = {"create": "C", "update": "U", "patch": "U", "delete": "D", "read": "R", "vread": "R",
            "search-type": "E", "search-system": "E", "history-instance": "R", "history-type": "R",
            "history-system": "R", "operation": "E", "transaction": "E", "batch": "E"}


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def outcome_code(status: int) -> str:
    return "0" if status < 400 else ("4" if status < 500 else "8")


def entity(what: str | None = None, rtype: str | None = None, query: str | None = None,
           description: str | None = None) -> dict:
    out: dict = {}
    if what:
        out["what"] = {"reference": what}
    if rtype:
        out["type"] = {"system": "http://hl7.org/fhir/resource-types", "code": rtype}
    if query is not None:
        out["query"] = base64.b64encode(query.encode()).decode()
    if description:
        out["description"] = description[:1000]
    return out


def build_event(principal: Principal | None, address: str, subtype: str, status: int, description: str,
                entities: list[dict], action: str | None = None, kind: str = "rest") -> dict:
    """One AuditEvent: who (client and organisation), what, when, from where, outcome."""
    agents = []
    if principal is not None:
        agents.append({
            "type": {"coding": [{"system": _DCM, "code": "110150", "display": "Application"}]},
            "who": {"identifier": {"system": CLIENT_SYSTEM, "value": principal.client_id},
                    **({"display": principal.name} if principal.name else {})},
            "altId": principal.client_id,
            "requestor": True,
            **({"network": {"address": address, "type": "2"}} if address else {}),
        })
        if principal.organization:
            agents.append({
                "type": {"coding": [{"system": _DCM, "code": "110153", "display": "Source Role ID"}]},
                "who": {"identifier": {"system": ODS_SYSTEM, "value": principal.organization}},
                "requestor": False,
            })
    else:  # refused before we knew who it was
        agents.append({"who": {"display": "unauthenticated caller"}, "requestor": True,
                       **({"network": {"address": address, "type": "2"}} if address else {})})
    if kind == "rest":
        etype = {"system": _EVENT_TYPE, "code": "rest", "display": "RESTful Operation"}
        sub = [{"system": _INTERACTION, "code": subtype}]
    else:
        etype = {"system": _DCM, "code": kind}
        sub = [{"system": "https://fhir.activerecovery.example/CodeSystem/audit-subtype", "code": subtype}]
    event = {
        "resourceType": "AuditEvent",
        "type": etype,
        "subtype": sub,
        "action": action or _ACTIONS.get(subtype, "E"),
        "recorded": _now_iso(),
        "outcome": outcome_code(status),
        "outcomeDesc": f"{status} {description}"[:1000],
        "agent": agents,
        "source": {"site": "active-recovery-gateway", "observer": {"display": "Active Recovery Gateway"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4"}]},
    }
    if entities:
        event["entity"] = entities[:200]
    return event


class AuditWriter:
    """Bounded queue, batched background writes, drop-and-count when full."""

    def __init__(self, store, queue_size: int = 10_000, batch_size: int = 200) -> None:
        self.store = store
        self.queue: asyncio.Queue | None = None
        self.queue_size = max(1, queue_size)
        self.batch_size = max(1, batch_size)
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self._task: asyncio.Task | None = None
        self._warned = 0.0
        self._idle = asyncio.Event()

    def start(self) -> None:
        self.queue = asyncio.Queue(self.queue_size)
        self._idle.set()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-writer")

    def record(self, event: dict) -> None:
        if self.queue is None:
            return
        try:
            self.queue.put_nowait(event)
            self._idle.clear()
        except asyncio.QueueFull:
            self.dropped += 1
            now = time.monotonic()
            if now - self._warned > 30:
                self._warned = now
                log.warning("audit queue full (%d): dropped %d AuditEvents so far", self.queue_size, self.dropped)

    async def _run(self) -> None:
        assert self.queue is not None
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.batch_size and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            await self._write(batch)
            if self.queue.empty():
                self._idle.set()

    async def _write(self, batch: list[dict]) -> None:
        try:
            async with self.store.session(write=True) as s:
                mark = len(s.changes)
                for event in batch:
                    await s.create(event)
                # Not announced to Subscriptions: the audit trail must not feed back into the event
                # machinery (no loops), and at one event per read it would swamp the dispatcher.
                mine = s.changes[mark:]
                await s.outbox_delete([row.seq for row in mine])
                del s.changes[mark:]
            self.written += len(batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.failed += len(batch)
            now = time.monotonic()
            if now - self._warned > 30:
                self._warned = now
                log.warning("could not write %d AuditEvents (%d lost so far)", len(batch), self.failed, exc_info=True)

    async def flush(self, timeout: float = 10) -> None:
        """Wait until everything queued so far is written (tests, shutdown)."""
        if self.queue is None:
            return
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def stop(self) -> None:
        if self._task is None:
            return
        await self.flush(5)
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):
            pass
        self._task = None

    def status(self) -> dict:
        return {"queued": self.queue.qsize() if self.queue else 0, "written": self.written,
                "dropped": self.dropped, "failed": self.failed}
