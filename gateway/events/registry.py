"""The subscriptions of the store, parsed once per version and reloaded only when one changed.

"Changed" is one cheap query (count and highest change number of Subscription rows; a delete
bumps the row's seq too), so every process can ask before each dispatch without reparsing.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import orjson

from gateway.events.subscriptions import SubscriptionSpec, parse


class Registry:
    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._mark: tuple | None = None
        self._specs: dict[str, SubscriptionSpec] = {}

    def _parse(self, row) -> SubscriptionSpec:
        old = self._specs.get(row.id)
        if old is not None and old.version == row.version:
            return old
        return parse(orjson.loads(row.content), row.version, self.tz)

    async def all(self, s) -> dict[str, SubscriptionSpec]:
        """Every non-deleted Subscription, by id."""
        r = await s.conn.fetchrow("SELECT COUNT(*), MAX(seq) FROM resource WHERE type = 'Subscription'")
        mark = (int(r[0]), r[1])
        if mark != self._mark:
            rows = await s.find("r.type = ? AND r.deleted = 0", ["Subscription"], limit=1_000_000)
            self._specs = {row.id: self._parse(row) for row in rows}
            self._mark = mark
        return self._specs

    def cached(self, subscription_id: str) -> SubscriptionSpec | None:
        """As last loaded by `all()` (the dispatcher and the lane keeper reload it every second or
        sooner); good enough to address a notification, never to decide a status change."""
        return self._specs.get(subscription_id)

    async def one(self, s, subscription_id: str) -> SubscriptionSpec | None:
        """The subscription as stored now (None if deleted or unknown)."""
        row = await s.read("Subscription", subscription_id)
        if row is None or row.deleted:
            return None
        return self._parse(row)
