"""The Redis bus: one stream per lane, shared by every gateway process on every machine.

- Publish: the dispatcher XADDs one entry per owed notification to `<prefix>:q:<subscription>:<n>`
  and, in the same MULTI, records the highest delivery id published (`published_upto`), so
  `recover` can tell exactly which deliveries a crashed dispatcher committed but never published.
- Share: each lane is owned by one process at a time through a lease (`SET NX PX`, renewed by a
  compare-and-PEXPIRE script). Live processes heartbeat into a sorted set; each takes roughly
  `lanes / processes` lanes and gives back any above its share, so a process joining takes half
  the work and a dead one's lanes are taken once its lease and heartbeat run out.
- Deliver: the owner reads its lane through the consumer group `delivery` (XREADGROUP), one entry
  at a time, in order, and XACK+XDELs an entry only once the deliverer has finished with it. An
  entry handed out but unfinished stays in the group's pending list.
- Recover: a new owner first XAUTOCLAIMs every pending entry of the lane (those a crashed or
  departed owner was given), oldest first, then reads new ones. The lease guarantees the old owner
  is gone, so entries are claimed at once (min idle 0) and order is kept: pending entries are
  always older than never-delivered ones.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import zlib
from typing import Awaitable, Callable

from gateway.events import deliveries
from gateway.events.bus import Handler, Job, LaneControl, run_job

log = logging.getLogger("gateway.events")
GROUP = "delivery"
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class _Lane(LaneControl):
    def __init__(self, subscription_id: str, n: int, stream: str, lease: str) -> None:
        super().__init__(f"{subscription_id}:{n}")
        self.key = (subscription_id, n)
        self.stream = stream
        self.lease = lease
        self.releasing = False
        self.task: asyncio.Task | None = None


class RedisBus:
    name = "redis"
    RECOVER_EVERY_S = 5.0

    def __init__(self, shared, settings, node: str, wanted: Callable[[], Awaitable[list[str]]]) -> None:
        self.shared = shared
        self.redis = shared.redis
        self.node = node  # this process's consumer name
        self.wanted = wanted  # ids of the subscriptions that need lanes
        self.lanes_per_subscription = max(1, settings.subscription_lanes)
        self.lease_ms = settings.events_lease_ms
        self.tick_s = min(self.lease_ms / 3, 1000) / 1000
        self._handler: Handler | None = None
        self._owned: dict[tuple[str, int], _Lane] = {}
        self._keeper: asyncio.Task | None = None
        self._poke = asyncio.Event()
        self._recovered_at = 0.0
        self._renew = self.redis.register_script(_RENEW)
        self._release = self.redis.register_script(_RELEASE)

    # -- keys ---------------------------------------------------------------------------------
    def stream(self, subscription_id: str, n: int) -> str:
        return self.shared.key("q", subscription_id, n)

    def _lease(self, subscription_id: str, n: int) -> str:
        return self.shared.key("lease", subscription_id, n)

    @property
    def owned(self) -> list[str]:
        return sorted(lane.name for lane in self._owned.values() if not lane.releasing)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self, handler: Handler) -> None:
        self._handler = handler
        self._keeper = asyncio.get_running_loop().create_task(self._keep(), name="redis-lane-keeper")

    def poke(self) -> None:
        """Re-balance now (a subscription was added or changed)."""
        self._poke.set()

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        lanes = list(self._owned.values())
        for lane in lanes:
            lane.stop()
        tasks = [lane.task for lane in lanes if lane.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=5)
            for t in late:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self.redis.zrem(self.shared.key("members"), self.node)
        except Exception:
            pass

    # -- publishing ---------------------------------------------------------------------------
    async def publish(self, jobs: list[Job], upto: int | None = None) -> None:
        async with self.redis.pipeline(transaction=True) as p:
            for job in jobs:
                p.xadd(self.stream(job.subscription_id, job.lane), {"d": job.delivery_id, "s": job.subscription_id})
            if upto is not None:
                p.set(self.shared.key("published_upto"), upto)
            await p.execute()

    def recovery_due(self) -> bool:
        return time.monotonic() - self._recovered_at >= self.RECOVER_EVERY_S

    async def recover(self, store) -> None:
        """Publish deliveries committed after the last recorded publish (a dispatcher died between
        its commit and its publish). Runs under the dispatch lock, before any newer publish."""
        self._recovered_at = time.monotonic()
        upto = int(await self.redis.get(self.shared.key("published_upto")) or 0)
        while True:
            async with store.session() as s:
                rows = await deliveries.pending(s, upto, 1000)
            if not rows:
                return
            log.warning("publishing %d notification(s) left unpublished by an interrupted dispatcher", len(rows))
            await self.publish([Job(i, sid, lane) for i, sid, lane in rows], upto=rows[-1][0])
            upto = rows[-1][0]

    # -- lane ownership -----------------------------------------------------------------------
    async def _keep(self) -> None:
        while True:
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("lane keeper tick failed", exc_info=True)
            try:
                await asyncio.wait_for(self._poke.wait(), self.tick_s)
            except asyncio.TimeoutError:
                pass
            self._poke.clear()

    def _rank(self, key: tuple[str, int]) -> int:
        return zlib.crc32(f"{self.node}|{key[0]}|{key[1]}".encode())

    async def _tick(self) -> None:
        members_key = self.shared.key("members")
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as p:
            p.zadd(members_key, {self.node: now_ms})
            p.zremrangebyscore(members_key, "-inf", now_ms - self.lease_ms)
            p.zcard(members_key)
            members = max(1, int((await p.execute())[2]))
        await self._renew_all()
        wanted = [(sid, n) for sid in await self.wanted() for n in range(self.lanes_per_subscription)]
        wanted_set = set(wanted)
        for key, lane in list(self._owned.items()):
            if key not in wanted_set:
                self._give_back(lane)
        active = [lane for lane in self._owned.values() if not lane.releasing]
        share = math.ceil(len(wanted) / members)
        if len(active) > share:
            for lane in sorted(active, key=lambda lane: self._rank(lane.key))[share:]:
                self._give_back(lane)
            return
        candidates = sorted((k for k in wanted if k not in self._owned), key=self._rank)
        if len(active) >= share or not candidates:
            return
        holders = await self.redis.mget([self._lease(*k) for k in candidates])
        for key, holder in zip(candidates, holders):
            if len(active) >= share:
                break
            if holder is not None:
                continue  # someone else's (its own lease decides when it is free)
            t0 = time.monotonic()
            if await self.redis.set(self._lease(*key), self.node, nx=True, px=self.lease_ms):
                lane = _Lane(key[0], key[1], self.stream(*key), self._lease(*key))
                lane.valid_until = t0 + self.lease_ms / 1000 * 0.8
                self._owned[key] = lane
                lane.task = asyncio.get_running_loop().create_task(self._run_lane(lane), name=f"lane {lane.name}")
                active.append(lane)

    async def _renew_all(self) -> None:
        lanes = list(self._owned.values())
        if not lanes:
            return
        t0 = time.monotonic()
        async with self.redis.pipeline(transaction=False) as p:
            for lane in lanes:
                await self._renew(keys=[lane.lease], args=[self.node, self.lease_ms], client=p)
            results = await p.execute()
        for lane, ok in zip(lanes, results):
            if ok:
                lane.valid_until = t0 + self.lease_ms / 1000 * 0.8
            else:
                log.warning("lost the lease on lane %s; stopping it", lane.name)
                lane.stop()

    def _give_back(self, lane: _Lane) -> None:
        """Stop after the notification in hand; the lease is released when the lane's task ends."""
        lane.releasing = True
        lane.stop()

    # -- one lane -----------------------------------------------------------------------------
    async def _run_lane(self, lane: _Lane) -> None:
        try:
            try:
                await self.redis.xgroup_create(lane.stream, GROUP, id="0", mkstream=True)
            except Exception as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            start = "0-0"
            while lane.active:  # first: what earlier owners were given and never finished
                start, entries = await self._autoclaim(lane, start)
                for entry_id, fields in entries:
                    if not await self._handle(lane, entry_id, fields):
                        return
                if start in (b"0-0", "0-0"):
                    break
            while lane.active:
                found = await self.redis.xreadgroup(GROUP, self.node, {lane.stream: ">"}, count=32, block=1000)
                for _stream, entries in found or []:
                    for entry_id, fields in entries:
                        if not await self._handle(lane, entry_id, fields):
                            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("lane %s stopped on an error; it will be taken up again", lane.name, exc_info=True)
        finally:
            if self._owned.get(lane.key) is lane:
                del self._owned[lane.key]
            try:
                await self._release(keys=[lane.lease], args=[self.node])
            except Exception:
                pass  # it expires on its own

    async def _autoclaim(self, lane: _Lane, start):
        result = await self.redis.xautoclaim(lane.stream, GROUP, self.node, min_idle_time=0, start_id=start,
                                             count=100)
        return result[0], result[1]

    async def _handle(self, lane: _Lane, entry_id, fields) -> bool:
        if fields:
            job = Job(int(fields[b"d"]), fields[b"s"].decode(), lane.key[1])
            if not await run_job(self._handler, job, lane):
                return False
        async with self.redis.pipeline(transaction=True) as p:
            p.xack(lane.stream, GROUP, entry_id)
            p.xdel(lane.stream, entry_id)
            await p.execute()
        return True
