"""A shared cache of hot reads: the CapabilityStatement and ConceptMap reads ($translate above all).

Entries are filed under a generation per resource type, read before the response is computed, so
a response computed while a write commits lands under a generation that is already retired and
is never served. Nothing is invalidated key by key.

- With Redis the generation is a counter in Redis: a committed write of the type bumps it (INCR)
  from the process that wrote, so every process sees it; the writing process skips the cache until
  its bump is visible (read-your-writes). A starting process bumps every counter too, since it may
  just have loaded changed ConceptMaps before it could listen to commits.
- Without Redis the cache is per process and the generation is read from the store itself (count
  and highest change number of the type's rows), so a write by any process sharing the store
  retires it at once. That costs one small query per hit, instead of loading and parsing maps.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import logging
import time
from typing import Awaitable, Callable

import orjson

log = logging.getLogger("gateway.events")
STATIC = "metadata"  # built from the route table: changes only with the code, i.e. never while running


class HotReadCache:
    def __init__(self, shared, ttl: int, types: frozenset[str],
                 store_generation: Callable[[str], Awaitable[str]] | None = None) -> None:
        self.shared = shared
        self.ttl = ttl
        self.types = types  # what may be cached: "metadata" and resource types
        self.store_generation = store_generation  # no Redis: the generation as the store sees it
        self._local: dict[str, tuple[float, bytes]] = {}
        self._bumping: dict[str, int] = {}  # bumps not yet visible in Redis: skip the cache meanwhile
        self._tasks: set[asyncio.Task] = set()

    def caches(self, tag: str) -> bool:
        return self.ttl > 0 and tag in self.types

    async def retire_all(self) -> None:
        if self.shared.redis is not None:
            for tag in self.types - {STATIC}:
                await self.shared.redis.incr(self.shared.key("cache", "gen", tag))

    def touched(self, types: set[str]) -> None:
        """Called right after a commit (synchronously): retire the cached reads of these types."""
        if self.shared.redis is None:
            return  # the store generation has moved already
        for t in types & self.types:
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
            gen = "0" if tag == STATIC else await self.store_generation(tag)
            full = f"{tag}:{gen}:{digest}"
            hit = self._local.get(full)
            if hit and hit[0] > time.monotonic():
                return hit[1], full
            return None, full
        gen = 0 if tag == STATIC else int(await self.shared.redis.get(self.shared.key("cache", "gen", tag)) or 0)
        full = self.shared.key("cache", tag, gen, digest)
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
