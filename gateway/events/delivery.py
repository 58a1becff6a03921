"""One notification's journey: load, build, sign, send, retry with backoff, dead-letter.

A delivery row says what is owed; this module decides when it is done. Every outbound call has a
timeout. Between attempts the lane sleeps (exponential backoff with jitter, capped), which holds
back only that lane: the same resource's later changes wait their turn, everything else goes on.
After `delivery_max_attempts` failures the row becomes a dead letter (`$resend` revives it).

A handshake (classic: an empty POST; backport: a `handshake` Bundle) is made once when a
subscription is `requested`: success makes it `active`, failure `error` with the reason in
`Subscription.error`. The status change is written with If-Match on the version that asked for
it, so a client's later edit is never overwritten.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time

import httpx

from gateway.events import deliveries, notify
from gateway.events.bus import Job, LaneControl
from gateway.events.signing import HEADER as SIGNATURE_HEADER, signature
from gateway.store.base import VersionConflict
from gateway.store.sql import now_us

log = logging.getLogger("gateway.events")
# httpx logs every request at INFO; a busy subscription would drown the gateway's own log.
logging.getLogger("httpx").setLevel(logging.WARNING)


def backoff_s(attempt: int, base_ms: int, cap_ms: int) -> float:
    """Delay after failed attempt number `attempt` (1-based): doubling, capped, "equal jitter"
    (half fixed, half random) so a receiver coming back is not hit by every lane at once."""
    full = min(cap_ms, base_ms * 2 ** (attempt - 1)) / 1000
    return full / 2 + random.uniform(0, full / 2)


class _GroupCommit:
    """Attempts finishing at about the same time, in different lanes, are recorded in one
    transaction (one fsync on SQLite, one BEGIN/COMMIT on PostgreSQL) rather than one each. A lane
    still waits for its own record to be committed before its bus entry is acknowledged."""

    def __init__(self, store) -> None:
        self.store = store
        self._queue: list[tuple[object, dict, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None

    async def record(self, d, **attempt):
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._queue.append((d, attempt, done))
        if self._flusher is None or self._flusher.done():
            # a fresh context: no caller's session may leak into the flusher
            self._flusher = loop.create_task(self._flush(), context=contextvars.Context())
        return await done

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                async with self.store.session(write=True) as s:
                    results = [await deliveries.record_attempt(s, d, **attempt) for d, attempt, _ in batch]
            except Exception as exc:
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, _, done), result in zip(batch, results):
                if not done.done():
                    done.set_result(result)


class Deliverer:
    def __init__(self, ctx, registry, node: str) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.registry = registry
        self.node = node
        s = ctx.settings
        self.max_attempts = max(1, s.delivery_max_attempts)
        self.base_ms, self.cap_ms = s.delivery_backoff_ms, s.delivery_backoff_max_ms
        self.timeout_s = s.delivery_timeout_ms / 1000
        self.base_url = notify.gateway_base(s)
        self.client: httpx.AsyncClient | None = None
        self.records = _GroupCommit(self.store)
        self.sent = 0  # requests made by this process (observability)

    async def start(self) -> None:
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout_s), follow_redirects=False, trust_env=False,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            headers={"User-Agent": "active-recovery-gateway"},
        )

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    # -- the bus's handler --------------------------------------------------------------------
    async def process(self, job: Job, lane: LaneControl) -> bool:
        async with self.store.session() as s:
            d, content = await deliveries.get_with_content(s, job.delivery_id)
            if d is None or d.status != "pending":
                return True  # already finished (a duplicate entry, or resent and done)
            spec = self.registry.cached(d.subscription_id) if d.kind == "event" else None
            if spec is None or spec.status == "off":
                spec = await self.registry.one(s, d.subscription_id)  # decisions need the stored state
            # Events since the subscription started, inclusive of this one: its own event number, not
            # the count at sending time (which a later event may already have raised), so a receiver
            # comparing it with the last number it saw detects gaps, never phantom ones.
            total = d.event_number if spec and spec.kind == "topic" and d.kind == "event" else 0
        if spec is None or spec.status == "off":
            await self._finish(d.id, "cancelled", "the subscription is off or deleted")
            return True
        if d.kind == "handshake":
            return await self._handshake(d, spec, lane)
        return await self._deliver(d, spec, lane, content, total)

    async def _finish(self, delivery_id: int, status: str, why: str | None = None) -> None:
        async with self.store.session(write=True) as s:
            await deliveries.set_status(s, delivery_id, status, why)

    # -- notifications --------------------------------------------------------------------------
    async def _deliver(self, d, spec, lane: LaneControl, content: bytes | None, total: int) -> bool:
        out = notify.event(spec, self.base_url, d, content if spec.content == "full-resource" else None, total)
        out.headers["X-Gateway-Delivery"] = str(d.id)
        while True:
            wait = (d.next_attempt_at - now_us()) / 1e6
            if wait > 0 and not await lane.sleep(wait):
                return False
            if not lane.active:
                return False
            if d.attempts:  # a retry: the subscription may have been switched off meanwhile
                async with self.store.session() as s:
                    current = await deliveries.get(s, d.id)
                if current is None or current.status != "pending":
                    return True
            ok, status, error, ms = await self._send(out, spec.secret)
            attempt = d.attempts + 1
            if ok:
                final, next_at = "delivered", 0
            elif attempt >= self.max_attempts:
                final, next_at = "dead", 0
                log.warning("Subscription/%s event %d dead-lettered after %d attempts: %s",
                            spec.id, d.event_number, attempt, error or f"HTTP {status}")
            else:
                final, next_at = None, now_us() + int(backoff_s(attempt, self.base_ms, self.cap_ms) * 1e6)
            d = await self.records.record(d, ok=ok, status=status, error=error, ms=ms, by=self.node,
                                          final_status=final, next_attempt_at=next_at)
            if d is None or d.status != "pending":
                return True  # finished, or finished elsewhere (cancelled meanwhile)

    async def _send(self, out: notify.Outbound, secret: str | None) -> tuple[bool, int | None, str | None, float]:
        headers = dict(out.headers)
        if secret:
            headers[SIGNATURE_HEADER] = signature(secret, out.body)
        t0 = time.perf_counter()
        self.sent += 1
        try:
            resp = await asyncio.wait_for(
                self.client.request(out.method, out.url, content=out.body, headers=headers), self.timeout_s + 1)
        except (asyncio.TimeoutError, httpx.TimeoutException) as exc:
            what = type(exc).__name__ if isinstance(exc, httpx.TimeoutException) else "timeout"
            return False, None, f"no answer within {self.timeout_s:g}s ({what})", (time.perf_counter() - t0) * 1000
        except httpx.HTTPError as exc:
            return False, None, f"{type(exc).__name__}: {exc}"[:300], (time.perf_counter() - t0) * 1000
        ms = (time.perf_counter() - t0) * 1000
        ok = 200 <= resp.status_code < 300
        return ok, resp.status_code, None if ok else f"HTTP {resp.status_code}", ms

    # -- handshake and activation ---------------------------------------------------------------
    async def _handshake(self, d, spec, lane: LaneControl) -> bool:
        if spec.status != "requested" or spec.version != d.version:
            await self._finish(d.id, "cancelled", "the subscription changed before its handshake")
            return True
        if not lane.active:
            return False
        if spec.problem:
            ok, status, error, ms = False, None, spec.problem, 0.0
        else:
            out = notify.handshake(spec, self.base_url)
            ok, status, error, ms = await self._send(out, spec.secret)
            if not ok:
                error = f"handshake with {spec.endpoint} failed: {error}"
        async with self.store.session(write=True) as s:
            await deliveries.record_attempt(s, d, ok=ok, status=status, error=error, ms=ms, by=self.node,
                                            final_status="delivered" if ok else "failed", next_attempt_at=0)
        await self._set_status(spec, "active" if ok else "error", None if ok else error)
        log.info("Subscription/%s is %s%s", spec.id, "active" if ok else "in error", "" if ok else f": {error}")
        return True

    async def _set_status(self, spec, status: str, error: str | None) -> None:
        resource = dict(spec.resource)
        resource["status"] = status
        if error:
            resource["error"] = error[:1000]
        else:
            resource.pop("error", None)
        try:
            async with self.store.session(write=True) as s:
                await s.update(resource, spec.id, if_match=spec.version)
        except VersionConflict:
            log.info("Subscription/%s changed during its handshake; its new version decides", spec.id)
