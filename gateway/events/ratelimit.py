"""Per-client token buckets: `rate` requests a second, bursts up to `burst`.

With Redis the bucket lives in one hash per client, updated by a Lua script (atomic, and timed by
Redis's own clock, so processes on machines with skewed clocks still share one fair bucket).
Without Redis each process keeps its own buckets.
"""

from __future__ import annotations

import math
import time

_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
"""


class RateLimiter:
    def __init__(self, shared, rate: int, burst: int = 0) -> None:
        self.shared = shared
        self.rate = rate
        self.burst = burst or max(1, 2 * rate)
        self._local: dict[str, tuple[float, float]] = {}
        self._script = shared.redis.register_script(_TAKE) if shared.redis is not None else None

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    async def take(self, client: str) -> float:
        """0 when the request may go ahead, else the seconds until a token is free."""
        if self._script is not None:
            wait_ms = await self._script(keys=[self.shared.key("rate", client)], args=[self.rate, self.burst])
            return int(wait_ms) / 1000
        now = time.monotonic()
        tokens, ts = self._local.get(client, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - ts) * self.rate)
        if tokens >= 1:
            self._local[client] = (tokens - 1, now)
            return 0.0
        self._local[client] = (tokens, now)
        if len(self._local) > 50_000:  # forget clients whose buckets are full again
            horizon = self.burst / self.rate
            self._local = {k: v for k, v in self._local.items() if now - v[1] < horizon}
        return (1 - tokens) / self.rate


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
