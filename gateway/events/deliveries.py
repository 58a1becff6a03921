"""Rows of the delivery log (`subscription_delivery`). Storage only: when to send is delivery.py's.

Statuses: `pending` (owed; being attempted or waiting for the next attempt), `delivered`,
`dead` (attempts used up: a dead letter, which `$resend` makes pending again), `failed` (a
handshake that did not succeed) and `cancelled` (the subscription was switched off or removed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from gateway.store.base import instant_iso
from gateway.store.sql import now_us

_COLS = ("id, subscription_id, kind, event_number, seq, resource_type, resource_id, version, method, lane, status, "
         "attempts, created_at, updated_at, next_attempt_at, delivered_at, last_status, last_error, log")
LOG_KEEP = 20  # attempts kept per delivery (the first and the latest ones)


@dataclass
class Delivery:
    id: int
    subscription_id: str
    kind: str  # event | handshake
    event_number: int
    seq: int
    resource_type: str
    resource_id: str
    version: int
    method: str
    lane: int
    status: str
    attempts: int
    created_at: int
    updated_at: int
    next_attempt_at: int
    delivered_at: int | None
    last_status: int | None
    last_error: str | None
    log: list = field(default_factory=list)

    def to_json(self) -> dict:
        out = {
            "id": self.id, "kind": self.kind, "eventNumber": self.event_number,
            "focus": f"{self.resource_type}/{self.resource_id}/_history/{self.version}",
            "status": self.status, "attempts": self.attempts, "lane": self.lane,
            "committedAt": instant_iso(self.created_at), "updatedAt": instant_iso(self.updated_at),
        }
        if self.status == "pending" and self.next_attempt_at:
            out["nextAttemptAt"] = instant_iso(self.next_attempt_at)
        if self.delivered_at:
            out["deliveredAt"] = instant_iso(self.delivered_at)
            out["latencyMs"] = round((self.delivered_at - self.created_at) / 1000, 1)
        if self.last_status is not None:
            out["lastStatus"] = self.last_status
        if self.last_error:
            out["lastError"] = self.last_error
        out["log"] = self.log
        return out


def _delivery(r) -> Delivery:
    r = tuple(r)
    return Delivery(*r[:18], orjson.loads(r[18]) if r[18] else [])


async def add_events(s, subscription_id: str, items: list[tuple]) -> list[Delivery]:
    """Owe `subscription_id` one notification per change; items are (seq, type, id, version,
    method, lane, committed_at). Event numbers continue the subscription's own count."""
    row = await s.conn.fetchrow(
        "INSERT INTO subscription_state (subscription_id, events) VALUES (?, ?) ON CONFLICT (subscription_id) "
        "DO UPDATE SET events = subscription_state.events + excluded.events RETURNING events",
        (subscription_id, len(items)),
    )
    first = int(row[0]) - len(items) + 1
    now = now_us()
    out = []
    for start in range(0, len(items), 100):  # one multi-row INSERT per hundred
        chunk = items[start : start + 100]
        args: list = []
        for n, (seq, rtype, rid, version, method, lane, committed) in enumerate(chunk, start):
            args += [subscription_id, first + n, seq, rtype, rid, version, method, lane, committed, now]
        rows = await s.conn.fetch(
            "INSERT INTO subscription_delivery (subscription_id, kind, event_number, seq, resource_type, resource_id, "
            "version, method, lane, status, created_at, updated_at) VALUES "
            + ",".join(["(?, 'event', ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)"] * len(chunk))
            + f" ON CONFLICT (subscription_id, seq, kind) DO NOTHING RETURNING {_COLS}",
            args,
        )
        out += sorted((_delivery(r) for r in rows), key=lambda d: d.id)
    return out


async def add_handshake(s, subscription_id: str, seq: int, version: int, committed: int) -> Delivery | None:
    r = await s.conn.fetchrow(
        "INSERT INTO subscription_delivery (subscription_id, kind, event_number, seq, resource_type, resource_id, "
        "version, method, lane, status, created_at, updated_at) VALUES (?, 'handshake', 0, ?, 'Subscription', ?, ?, "
        f"'PUT', 0, 'pending', ?, ?) ON CONFLICT (subscription_id, seq, kind) DO NOTHING RETURNING {_COLS}",
        (subscription_id, seq, subscription_id, version, committed, now_us()),
    )
    return _delivery(r) if r else None


async def get(s, delivery_id: int) -> Delivery | None:
    r = await s.conn.fetchrow(f"SELECT {_COLS} FROM subscription_delivery WHERE id = ?", (delivery_id,))
    return _delivery(r) if r else None


async def get_with_content(s, delivery_id: int) -> tuple[Delivery | None, bytes | None]:
    """The delivery and the resource version it is about, in one query."""
    cols = ", ".join(f"d.{c.strip()}" for c in _COLS.split(","))
    r = await s.conn.fetchrow(
        f"SELECT {cols}, v.content FROM subscription_delivery d LEFT JOIN resource_version v "
        "ON v.type = d.resource_type AND v.id = d.resource_id AND v.version = d.version WHERE d.id = ?",
        (delivery_id,),
    )
    if r is None:
        return None, None
    r = tuple(r)
    return _delivery(r[:19]), bytes(r[19]) if r[19] is not None else None


async def record_attempt(s, d: Delivery, *, ok: bool, status: int | None, error: str | None, ms: float,
                         by: str, final_status: str | None, next_attempt_at: int) -> Delivery | None:
    """Append one attempt; `final_status` (delivered, dead, failed) ends the delivery. None when
    the row is no longer pending (cancelled while the attempt was being made)."""
    now = now_us()
    entry = {"attempt": d.attempts + 1, "at": instant_iso(now), "ms": round(ms, 1), "by": by}
    if status is not None:
        entry["status"] = status
    if error:
        entry["error"] = error[:300]
    log = d.log + [entry]
    if len(log) > LOG_KEEP:
        log = log[:1] + log[-(LOG_KEEP - 1):]
    new_status = final_status or "pending"
    r = await s.conn.fetchrow(
        "UPDATE subscription_delivery SET attempts = attempts + 1, status = ?, updated_at = ?, next_attempt_at = ?, "
        "delivered_at = ?, last_status = ?, last_error = ?, log = ? WHERE id = ? AND status = 'pending' "
        f"RETURNING {_COLS}",
        (new_status, now, next_attempt_at, now if new_status == "delivered" else None, status,
         None if ok else (error or f"HTTP {status}"), orjson.dumps(log).decode(), d.id),
    )
    return _delivery(r) if r else None


async def set_status(s, delivery_id: int, status: str, error: str | None = None) -> None:
    await s.conn.execute(
        "UPDATE subscription_delivery SET status = ?, last_error = COALESCE(?, last_error), updated_at = ? "
        "WHERE id = ? AND status = 'pending'",
        (status, error, now_us(), delivery_id),
    )


async def cancel_pending(s, subscription_id: str) -> int:
    rows = await s.conn.fetch(
        "UPDATE subscription_delivery SET status = 'cancelled', updated_at = ? "
        "WHERE subscription_id = ? AND status = 'pending' RETURNING id",
        (now_us(), subscription_id),
    )
    return len(rows)


async def pending(s, after_id: int, limit: int) -> list[tuple[int, str, int]]:
    """(id, subscription, lane) of owed notifications after `after_id`, oldest first."""
    rows = await s.conn.fetch(
        "SELECT id, subscription_id, lane FROM subscription_delivery WHERE status = 'pending' AND id > ? "
        "ORDER BY id LIMIT ?",
        (after_id, limit),
    )
    return [(int(r[0]), r[1], int(r[2])) for r in rows]


async def resend(s, subscription_id: str, event_numbers: list[int] | None) -> list[Delivery]:
    """Dead letters of the subscription (all, or those numbered) made pending again, attempts reset."""
    cond, args = "", []
    if event_numbers:
        cond = f" AND event_number IN ({','.join('?' * len(event_numbers))})"
        args = list(event_numbers)
    rows = await s.conn.fetch(
        "UPDATE subscription_delivery SET status = 'pending', attempts = 0, next_attempt_at = 0, updated_at = ? "
        f"WHERE subscription_id = ? AND kind = 'event' AND status = 'dead'{cond} RETURNING {_COLS}",
        (now_us(), subscription_id, *args),
    )
    return sorted((_delivery(r) for r in rows), key=lambda d: d.id)


async def listing(s, subscription_id: str, status: str | None, before_id: int | None, limit: int) -> list[Delivery]:
    cond, args = ["subscription_id = ?"], [subscription_id]
    if status:
        cond.append("status = ?")
        args.append(status)
    if before_id:
        cond.append("id < ?")
        args.append(before_id)
    rows = await s.conn.fetch(
        f"SELECT {_COLS} FROM subscription_delivery WHERE {' AND '.join(cond)} ORDER BY id DESC LIMIT ?",
        [*args, limit],
    )
    return [_delivery(r) for r in rows]


async def events_since_start(s, subscription_id: str) -> int:
    r = await s.conn.fetchrow("SELECT events FROM subscription_state WHERE subscription_id = ?", (subscription_id,))
    return int(r[0]) if r else 0


async def counts(s, subscription_id: str) -> dict[str, int]:
    rows = await s.conn.fetch(
        "SELECT status, COUNT(*) FROM subscription_delivery WHERE subscription_id = ? GROUP BY status",
        (subscription_id,),
    )
    return {r[0]: int(r[1]) for r in rows}
