"""A shared cache of hot reads: the CapabilityStatement and ConceptMap reads ($translate above all).

Entries are keyed by a generation number per resource type. A committed write of that type bumps
the generation (INCR in Redis, so every process sees it), which retires all of the type's entries
at once; nothing is ever invalidated key by key. The generation is read before the response is
computed, so a response computed while a write commits is filed under the old generation and is
never served. The process that wrote skips the cache until its bump is visible (read-your-writes).

Without Redis the cache is per process, and ConceptMap reads are cached only when there is one
process (another worker's write could not reach this process's cache).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import logging
import time

import orjson

log = logging.getLogger("gateway.events")


class HotReadCache:
    def __init__(self, shared, ttl: int, types: frozenset[str]) -> None:
        self.shared = shared
        self.ttl = ttl
        self.types = types  # resource types whose reads may be cached ("metadata" for the statement)
        self._gen: dict[str, int] = {}  # in-process generations (no Redis)
        self._local: dict[str, tuple[float, bytes]] = {}
        self._bumping: dict[str, int] = {}  # bumps not yet visible in Redis: skip the cache meanwhile
        self._tasks: set[asyncio.Task] = set()

    def caches(self, tag: str) -> bool:
        return self.ttl > 0 and tag in self.types

    def touched(self, types: set[str]) -> None:
        """Called right after a commit (synchronously): retire the cached reads of these types."""
        for t in types & self.types:
            if self.shared.redis is None:
                self._gen[t] = self._gen.get(t, 0) + 1
                continue
            self._bumping[t] = self._bumping.get(t, 0) + 1
            # A fresh context: the committing session must not leak into the task.
            task = asyncio.get_running_loop().create_task(self._bump(t), context=contextvars.Context())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _bump(self, tag: str) -> None:
        try:
            await self.shared.redis.incr(self.shared.key("cache", "gen", tag))
        except Exception:
            log.warning("could not retire cached %s reads in Redis; they expire within %ss", tag, self.ttl)
        finally:
            self._bumping[tag] -= 1

    async def lookup(self, tag: str, key: str) -> tuple[bytes | None, str | None]:
        """(cached value or None, the storage key to fill on a miss; None = do not cache now)."""
        if self._bumping.get(tag):
            return None, None
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        if self.shared.redis is None:
            full = f"{tag}:{self._gen.get(tag, 0)}:{digest}"
            hit = self._local.get(full)
            if hit and hit[0] > time.monotonic():
                return hit[1], full
            return None, full
        gen = await self.shared.redis.get(self.shared.key("cache", "gen", tag))
        full = self.shared.key("cache", tag, int(gen or 0), digest)
        return await self.shared.redis.get(full), full

    async def store(self, full_key: str, value: bytes) -> None:
        if self.shared.redis is None:
            if len(self._local) > 1000:
                now = time.monotonic()
                self._local = {k: v for k, v in self._local.items() if v[0] > now}
            self._local[full_key] = (time.monotonic() + self.ttl, value)
            return
        await self.shared.redis.set(full_key, value, ex=self.ttl)


def pack(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    head = orjson.dumps({"s": status, "h": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in headers]})
    return head + b"\n" + body


def unpack(value: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    head, _, body = value.partition(b"\n")
    meta = orjson.loads(head)
    return meta["s"], [(k.encode("latin-1"), v.encode("latin-1")) for k, v in meta["h"]], body
