"""What gateway processes share through Redis, and the in-process stand-in for a single node.

`first_time(key, ttl)` answers "have we seen this inbound message before?" for every process
at once when Redis is configured (`SET key NX EX ttl`), and for this process alone otherwise.
The app's lifespan installs the Redis-backed `Shared` with `use()`; until then, and in tools that
never start the app, the in-process fallback answers.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("gateway.events")

# Every Redis call has a timeout: a hung Redis must slow the gateway down, not stop it.
REDIS_TIMEOUT_S = 5.0


def connect_redis(url: str):
    import redis.asyncio as aioredis

    return aioredis.from_url(url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S,
                             health_check_interval=30, decode_responses=False)


class Shared:
    """A Redis client (or None) and the key prefix of this deployment."""

    def __init__(self, redis=None, prefix: str = "gateway") -> None:
        self.redis = redis
        self.prefix = prefix
        self._seen: dict[str, float] = {}  # in-process idempotency keys -> expiry (monotonic)

    def key(self, *parts: object) -> str:
        return ":".join([self.prefix, *(str(p) for p in parts)])

    async def first_time(self, key: str, ttl: int) -> bool:
        """True the first time `key` is offered within `ttl` seconds, False after that."""
        if ttl <= 0:
            raise ValueError("ttl must be a positive number of seconds")
        if self.redis is not None:
            return bool(await self.redis.set(self.key("idem", key), b"1", nx=True, ex=ttl))
        now = time.monotonic()
        if len(self._seen) > 10_000:
            self._seen = {k: t for k, t in self._seen.items() if t > now}
        expiry = self._seen.get(key)
        if expiry is not None and expiry > now:
            return False
        self._seen[key] = now + ttl
        return True


_fallback = Shared()
_active: Shared = _fallback


def use(shared: Shared | None) -> None:
    """Install the process's shared state (None: back to the in-process fallback)."""
    global _active
    _active = shared or _fallback


def current() -> Shared:
    return _active


async def first_time(key: str, ttl: int) -> bool:
    """Cross-process idempotency for inbound messages: True only for the first sighting of `key`."""
    return await _active.first_time(key, ttl)
