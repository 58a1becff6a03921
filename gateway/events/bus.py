"""The event bus: owed notifications, in ordered lanes, handed to the deliverer.

A lane is one (subscription, n) queue; a resource always maps to the same lane of a
subscription, so its notifications leave in commit order, while other lanes - other resources,
other subscriptions - go on in parallel. A slow or failing receiver holds up only its own lanes.

Two implementations share this interface:
- `LocalBus` (embedded default): asyncio queues in this process; the delivery rows in the
  database are the durable copy, re-read after a restart;
- `RedisBus` (`redis_bus.py`): one Redis stream per lane, shared by every process.

The deliverer (`Handler`) returns True when a job is finished (delivered, dead-lettered or
cancelled) and False when it was interrupted because the lane is stopping; an unfinished job is
never acknowledged, so whoever owns the lane next starts with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol

from gateway.events import deliveries

log = logging.getLogger("gateway.events")


@dataclass(frozen=True, slots=True)
class Job:
    delivery_id: int
    subscription_id: str
    lane: int


class LaneControl:
    """What a handler may ask of its lane: may I go on, and a sleep that ends when the lane stops."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.valid_until = float("inf")  # monotonic; a lease-backed lane moves this forward
        self._stop = asyncio.Event()

    @property
    def active(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self.valid_until

    def stop(self) -> None:
        self._stop.set()

    async def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`; False (early) if the lane stopped meanwhile."""
        if seconds > 0:
            try:
                await asyncio.wait_for(self._stop.wait(), seconds)
            except asyncio.TimeoutError:
                pass
        return self.active


Handler = Callable[[Job, LaneControl], Awaitable[bool]]


class EventBus(Protocol):
    name: str

    async def start(self, handler: Handler) -> None: ...
    async def stop(self) -> None: ...
    async def publish(self, jobs: list[Job], upto: int | None = None) -> None: ...
    def recovery_due(self) -> bool: ...
    async def recover(self, store) -> None: ...


async def run_job(handler: Handler, job: Job, lane: LaneControl) -> bool:
    """Run one job to an end; an unexpected error (database down) is retried, never skipped,
    because the jobs behind it in the lane must not overtake it."""
    delay = 0.5
    while True:
        try:
            return await handler(job, lane)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery %s failed unexpectedly; retrying in %.1fs", job.delivery_id, delay)
            if not await lane.sleep(delay):
                return False
            delay = min(delay * 2, 30.0)


class LocalBus:
    """In-process lanes. The delivery rows are the durable queue: `recover` re-reads every pending
    one not already queued here (after a restart, or a `$resend` made by another process)."""

    name = "in-process"
    RECOVER_EVERY_S = 5.0

    def __init__(self) -> None:
        self._handler: Handler | None = None
        self._queues: dict[tuple[str, int], asyncio.Queue] = {}
        self._lanes: dict[tuple[str, int], LaneControl] = {}
        self._tasks: dict[tuple[str, int], asyncio.Task] = {}
        self._held: set[int] = set()  # delivery ids queued or in hand
        self._recovered_at = 0.0

    async def start(self, handler: Handler) -> None:
        self._handler = handler

    async def stop(self) -> None:
        for lane in self._lanes.values():
            lane.stop()
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._lanes.clear()
        self._queues.clear()
        self._held.clear()

    async def publish(self, jobs: list[Job], upto: int | None = None) -> None:
        for job in jobs:
            if job.delivery_id in self._held:
                continue
            self._held.add(job.delivery_id)
            key = (job.subscription_id, job.lane)
            if key not in self._queues:
                self._queues[key] = asyncio.Queue()
                self._lanes[key] = LaneControl(f"{key[0]}:{key[1]}")
                self._tasks[key] = asyncio.get_running_loop().create_task(self._run_lane(key), name=f"lane {key}")
            self._queues[key].put_nowait(job)

    def recovery_due(self) -> bool:
        return time.monotonic() - self._recovered_at >= self.RECOVER_EVERY_S

    async def recover(self, store) -> None:
        if not self.recovery_due():
            return
        self._recovered_at = time.monotonic()
        after = 0
        while True:
            async with store.session() as s:
                rows = await deliveries.pending(s, after, 1000)
            if not rows:
                return
            await self.publish([Job(i, sid, lane) for i, sid, lane in rows])
            after = rows[-1][0]

    async def _run_lane(self, key: tuple[str, int]) -> None:
        queue, lane = self._queues[key], self._lanes[key]
        while lane.active:
            job = await queue.get()
            finished = await run_job(self._handler, job, lane)
            self._held.discard(job.delivery_id)
            if not finished:
                return
