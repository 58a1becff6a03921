"""Wiring: the event service a gateway process starts in its lifespan and stops on shutdown.

With `GATEWAY_REDIS_URL`, every process dispatches (one at a time, under a store lock) and the
Redis bus spreads delivery lanes over all processes. Without it, one process - whichever holds the
store's `events-leader` lock - dispatches and delivers through in-process lanes; the others serve
the API, and one of them takes over as soon as the leader dies (the lock dies with it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket

from gateway.events import deliveries, shared as shared_state
from gateway.events.bus import Job, LocalBus
from gateway.events.cache import HotReadCache
from gateway.events.coordination import StoreLock
from gateway.events.delivery import Deliverer
from gateway.events.outbox import Dispatcher
from gateway.events.ratelimit import RateLimiter
from gateway.events.registry import Registry
from gateway.events.subscriptions import LIVE

log = logging.getLogger("gateway.events")


class EventService:
    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.settings = ctx.settings
        self.node = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self.shared = shared_state.Shared(None, self.settings.redis_prefix)
        self.registry = Registry(self.settings.tz)
        self.deliverer = Deliverer(ctx, self.registry, self.node)
        self.limiter = RateLimiter(self.shared, 0)
        self.cache = HotReadCache(self.shared, 0, frozenset())
        self.bus = None
        self.dispatcher: Dispatcher | None = None
        self._locks: list[StoreLock] = []
        self._leader_task: asyncio.Task | None = None

    @property
    def mode(self) -> str:
        return "redis" if self.shared.redis is not None else "in-process"

    async def start(self) -> None:
        s = self.settings
        redis = None
        if s.redis_url:
            redis = shared_state.connect_redis(s.redis_url)
            try:
                await redis.ping()
            except Exception as exc:
                await redis.aclose()
                raise RuntimeError(f"GATEWAY_REDIS_URL is set but Redis does not answer: {exc}") from None
        self.shared = shared_state.Shared(redis, s.redis_prefix)
        shared_state.use(self.shared)
        self.limiter = RateLimiter(self.shared, s.rate_limit, s.rate_limit_burst)
        self.cache = HotReadCache(self.shared, s.cache_ttl, frozenset({"metadata", "ConceptMap"}), self._generation)
        await self.cache.retire_all()
        await self.deliverer.start()
        self.store.listeners.append(self._on_commit)
        if redis is not None:
            from gateway.events.redis_bus import RedisBus

            self.bus = RedisBus(self.shared, s, self.node, self._wanted)
            lock = StoreLock(self.store, "events-dispatch")
            self._locks.append(lock)
            self.dispatcher = Dispatcher(self.store, self.registry, self.bus, s, lock=lock,
                                         on_subscriptions=self.bus.poke, owner=self._owner)
            await self.bus.start(self.deliverer.process)
            self.dispatcher.start()
            self.dispatcher.wake()
        else:
            self._leader_task = asyncio.get_running_loop().create_task(self._lead(), name="events-leader")
        self.ctx.services["events"] = self
        log.info("events: %s bus, node %s", self.mode, self.node)

    async def stop(self) -> None:
        self.ctx.services.pop("events", None)
        if self._on_commit in self.store.listeners:
            self.store.listeners.remove(self._on_commit)
        if self._leader_task is not None:
            self._leader_task.cancel()
            await asyncio.gather(self._leader_task, return_exceptions=True)
        await self._stop_delivery()
        for lock in self._locks:
            await lock.close()
        await self.deliverer.close()
        if self.shared.redis is not None:
            await self.shared.redis.aclose()
        shared_state.use(None)

    async def _stop_delivery(self) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.stop()
            self.dispatcher = None
        if self.bus is not None:
            await self.bus.stop()
            self.bus = None

    async def _lead(self) -> None:
        """In-process mode: deliver while this process holds the store's leader lock."""
        lock = StoreLock(self.store, "events-leader")
        self._locks.append(lock)
        while True:
            try:
                if not lock.held and await lock.try_acquire():
                    self.bus = LocalBus()
                    await self.bus.start(self.deliverer.process)
                    self.dispatcher = Dispatcher(self.store, self.registry, self.bus, self.settings, owner=self._owner)
                    self.dispatcher.start()
                    self.dispatcher.wake()
                    log.info("events: this process (%s) dispatches and delivers notifications", self.node)
                elif lock.held and not await lock.still_held():
                    await self._stop_delivery()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("events leadership check failed", exc_info=True)
            await asyncio.sleep(1.0)

    def _on_commit(self, rows) -> None:
        # Runs synchronously right after a commit, inside the committing task: only cheap signals here.
        if self.dispatcher is not None:
            self.dispatcher.wake()
        self.cache.touched({r.type for r in rows})

    async def _generation(self, rtype: str) -> str:
        async with self.store.session() as s:
            r = await s.conn.fetchrow("SELECT COUNT(*), MAX(seq) FROM resource WHERE type = ?", (rtype,))
        return f"{r[0]}.{r[1]}"

    def _owner(self, subscription: dict):
        from gateway.security import subscriber

        return subscriber(self.ctx, subscription)

    async def _wanted(self) -> list[str]:
        async with self.store.session() as s:
            specs = await self.registry.all(s)
        return sorted(sid for sid, spec in specs.items() if spec.status in LIVE)

    # -- operations -------------------------------------------------------------------------------
    async def resend(self, subscription_id: str, event_numbers: list[int] | None) -> list:
        """Make dead letters pending again and put them back on the bus."""
        async with self.store.session(write=True) as s:
            revived = await deliveries.resend(s, subscription_id, event_numbers)
        if revived and self.bus is not None:
            try:
                await self.bus.publish([Job(d.id, d.subscription_id, d.lane) for d in revived])
            except Exception:
                async with self.store.session(write=True) as s:
                    for d in revived:
                        await deliveries.set_status(s, d.id, "dead", "resend could not be queued")
                raise
        # No bus here (in-process mode, not the leader): the leader's recovery sweep finds them.
        return revived

    def status(self) -> dict:
        out = {"node": self.node, "bus": self.mode, "dispatching": self.dispatcher is not None,
               "changesDispatched": self.dispatcher.dispatched if self.dispatcher else 0,
               "requestsSent": self.deliverer.sent}
        if self.bus is not None and hasattr(self.bus, "owned"):
            out["lanes"] = self.bus.owned
        return out
