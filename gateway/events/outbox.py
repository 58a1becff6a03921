"""The dispatcher: committed changes in the outbox become notifications owed to subscribers.

One dispatcher runs at a time across all processes (a `StoreLock`). Each cycle, in one write
transaction: read the oldest outbox rows in seq order, decide which subscriptions each change
concerns, write one delivery row per (subscription, change), delete the outbox rows. Only then,
still holding the lock, are the new deliveries published on the bus. So:

- nothing is skipped: rows are claimed by deleting them, never by a seq cursor, so on PostgreSQL a
  transaction that took a lower seq but committed later is simply found by a later cycle;
- per resource, order is kept: two writes to one resource are serialised by its row lock and take
  their seq inside it, so the later version can only be seen after the earlier one, and is
  published in a later (or the same, in seq order) cycle by the one dispatcher;
- each (subscription, change) is owed once: the delivery rows and the outbox delete commit
  together (and UNIQUE (subscription_id, seq, kind) says so again).

A crash between the commit and the publish leaves deliveries that were never published; the bus's
`recover` finds them at the start of the next cycle, before anything newer is published.
"""

from __future__ import annotations

import asyncio
import logging
import zlib

import orjson

from gateway.events import deliveries
from gateway.events.bus import Job
from gateway.events.matching import per_row
from gateway.security.visibility import visible
from gateway.store.sql import now_us

log = logging.getLogger("gateway.events")
BATCH = 500


def lane_of(rtype: str, rid: str, lanes: int) -> int:
    return zlib.crc32(f"{rtype}/{rid}".encode()) % max(1, lanes)


class Dispatcher:
    def __init__(self, store, registry, bus, settings, lock=None, on_subscriptions=None, owner=None) -> None:
        self.store = store
        # owner(subscription resource) -> the Principal its notifications are for (None: sees all)
        self.owner = owner
        self.registry = registry
        self.bus = bus
        self.lanes = settings.subscription_lanes
        self.poll_s = settings.events_poll_ms / 1000
        self.lock = lock  # None when this process is the only dispatcher (in-process leader)
        self.on_subscriptions = on_subscriptions
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.dispatched = 0  # changes taken from the outbox by this process (observability)
        self._per_row: dict[tuple[str, int], str] = {}  # (subscription, version) -> per-row criteria SQL

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        failures = 0
        while True:
            woken = True
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except asyncio.TimeoutError:
                woken = False
            self._wake.clear()
            try:
                await self.drain(check_first=not woken)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("outbox dispatch failed (attempt %d); will retry", failures)
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))

    async def drain(self, check_first: bool = False) -> int:
        """Dispatch everything committed so far; returns the number of changes taken. A poll
        (`check_first`) looks before taking the lock; a wake-up after our own commit need not."""
        if check_first and not self.bus.recovery_due():
            async with self.store.session() as s:
                if not await s.outbox_batch(1):
                    return 0
        if self.lock is not None and not await self.lock.acquire(timeout=5):
            return 0  # another process is draining; our rows are visible to it or to our next poll
        taken = 0
        try:
            await self.bus.recover(self.store)
            while True:
                n = await self._cycle()
                taken += n
                if n < BATCH:
                    break
        finally:
            if self.lock is not None:
                await self.lock.release()
        return taken

    async def _cycle(self) -> int:
        changed_subscriptions = False
        async with self.store.session(write=True) as s:
            rows = await s.outbox_batch(BATCH)
            if not rows:
                return 0
            specs = await self.registry.all(s)  # after the claim: it sees every subscription change before it
            owed = await self._handshakes(s, rows, specs)
            owed += await self._match(s, rows, specs)
            await s.outbox_delete([r.seq for r in rows])
            changed_subscriptions = any(r.type == "Subscription" for r in rows)
        if owed:
            await self.bus.publish([Job(d.id, d.subscription_id, d.lane) for d in owed], upto=max(d.id for d in owed))
        self.dispatched += len(rows)
        if changed_subscriptions and self.on_subscriptions is not None:
            self.on_subscriptions()
        return len(rows)

    async def _handshakes(self, s, rows, specs) -> list:
        """A Subscription written as `requested` is owed a handshake; one switched off, nothing more."""
        owed = []
        for row in rows:
            if row.type != "Subscription":
                continue
            spec = specs.get(row.id)
            if row.method == "DELETE" or spec is None or spec.status == "off":
                if await deliveries.cancel_pending(s, row.id):
                    log.info("Subscription/%s is off or deleted: pending notifications cancelled", row.id)
            elif spec.status == "requested" and spec.version == row.version:
                d = await deliveries.add_handshake(s, row.id, row.seq, row.version, row.last_updated)
                if d is not None:
                    owed.append(d)
        return owed

    async def _match(self, s, rows, specs) -> list:
        by_type: dict[str, list] = {}
        for row in rows:
            if not row.deleted:
                by_type.setdefault(row.type, []).append(row)
        now = now_us()
        owed = []
        for spec in specs.values():
            changes = by_type.get(spec.resource_type)
            if not changes or spec.status != "active" or spec.compiled is None or spec.ended(now):
                continue
            matched = await self._matching_ids(s, spec, sorted({r.id for r in changes}))
            items = []
            for row in changes:
                if row.id not in matched:
                    continue
                if spec.topic is not None and not await self._topic_fires(s, spec.topic, row):
                    continue
                items.append((row.seq, row.type, row.id, row.version, row.method,
                              lane_of(row.type, row.id, self.lanes), row.last_updated))
            if items:
                owed += await deliveries.add_events(s, spec.id, items)
        return owed

    async def _matching_ids(self, s, spec, ids: list[str]) -> set[str]:
        """Which of `ids` match the subscription's criteria: the REST search's own SQL, tied to the
        rows being tested (`matching.per_row`) so the cost does not grow with the record."""
        key = (spec.id, spec.version)
        owner = self.owner(spec.resource) if self.owner is not None else None
        if owner is not None:
            # The subscriber receives only what it may read: its scopes and security labels, applied
            # by the same SQL filter as its searches (a relabelled or out-of-scope change is skipped).
            s = visible(s, owner)
        where = self._per_row.get(key)
        if where is None:
            where = per_row(spec.compiled.where, self.store.dialect_name)[0]
            self._per_row = {k: v for k, v in self._per_row.items() if k[0] != spec.id}
            self._per_row[key] = where
        args = spec.compiled.args
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            tail = f" AND r.id IN ({','.join('?' * len(chunk))})"
            try:
                rows = await s.conn.fetch(f"SELECT r.id FROM resource r WHERE {where}{tail}", [*args, *chunk])
            except Exception:
                if self.store.dialect_name != "sqlite" or where == spec.compiled.where:
                    raise  # (PostgreSQL: the transaction is aborted; the cycle is retried as a whole)
                log.warning("per-row criteria of Subscription/%s failed on SQLite; using the search's own SQL",
                            spec.id, exc_info=True)
                where = self._per_row[key] = spec.compiled.where
                rows = await s.conn.fetch(f"SELECT r.id FROM resource r WHERE {where}{tail}", [*args, *chunk])
            found.update(r[0] for r in rows)
        return found

    async def _topic_fires(self, s, topic, row) -> bool:
        """The version itself passes the topic's test and the version before it did not."""
        this = await s.vread(row.type, row.id, row.version)
        if this is None or this.deleted or not topic.passes(orjson.loads(this.content)):
            return False
        before = await s.vread(row.type, row.id, row.version - 1) if row.version > 1 else None
        return topic.previous_failed(orjson.loads(before.content) if before and not before.deleted else None)
