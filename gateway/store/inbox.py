"""Rows of the inbound message inbox. Storage only: what a message means is the pipeline's business."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from gateway.store.sql import now_us

_COLS = "id, received_at, updated_at, channel, sender, control_id, message_type, status, raw, ack, detail"


@dataclass
class InboxEntry:
    id: int
    received_at: int
    updated_at: int
    channel: str
    sender: str
    control_id: str | None
    message_type: str
    status: str
    raw: bytes
    ack: bytes | None
    detail: dict = field(default_factory=dict)

    def summary(self) -> dict:
        from gateway.store.base import instant_iso

        return {
            "id": self.id, "receivedAt": instant_iso(self.received_at), "updatedAt": instant_iso(self.updated_at),
            "channel": self.channel, "sender": self.sender, "controlId": self.control_id,
            "messageType": self.message_type, "status": self.status,
        }


def _entry(r) -> InboxEntry:
    return InboxEntry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bytes(r[8]),
                      bytes(r[9]) if r[9] is not None else None, orjson.loads(r[10]) if r[10] else {})


async def receive(s, channel: str, sender: str, control_id: str | None, message_type: str, raw: bytes,
                  status: str = "received") -> tuple[InboxEntry, bool]:
    """Record a message; if (sender, control_id) was seen before return that record and True."""
    now = now_us()
    row = await s.conn.fetchrow(
        f"INSERT INTO inbox (received_at, updated_at, channel, sender, control_id, message_type, status, raw) "
        f"VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sender, control_id) DO NOTHING RETURNING {_COLS}",
        (now, now, channel, sender, control_id, message_type, status, raw),
    )
    if row is not None:
        return _entry(row), False
    existing = await s.conn.fetchrow(
        f"SELECT {_COLS} FROM inbox WHERE sender = ? AND control_id = ?" + s.dialect.for_update(s.write),
        (sender, control_id),
    )
    return _entry(existing), True


async def update(s, entry_id: int, status: str, ack: bytes | None, detail: dict) -> None:
    await s.conn.execute(
        "UPDATE inbox SET status = ?, ack = ?, detail = ?, updated_at = ? WHERE id = ?",
        (status, ack, orjson.dumps(detail).decode(), now_us(), entry_id),
    )


async def get(s, entry_id: int, lock: bool = False) -> InboxEntry | None:
    r = await s.conn.fetchrow(
        f"SELECT {_COLS} FROM inbox WHERE id = ?" + (s.dialect.for_update(s.write) if lock else ""), (entry_id,)
    )
    return _entry(r) if r else None


async def listing(s, status: str | None = None, before_id: int | None = None, limit: int = 50) -> list[InboxEntry]:
    cond, args = [], []
    if status:
        cond.append("status = ?")
        args.append(status)
    if before_id:
        cond.append("id < ?")
        args.append(before_id)
    where = " AND ".join(cond) or "1 = 1"
    rows = await s.conn.fetch(f"SELECT {_COLS} FROM inbox WHERE {where} ORDER BY id DESC LIMIT ?", [*args, limit])
    return [_entry(r) for r in rows]


async def ids_with_status(s, statuses: tuple[str, ...]) -> list[int]:
    marks = ",".join("?" * len(statuses))
    rows = await s.conn.fetch(f"SELECT id FROM inbox WHERE status IN ({marks}) ORDER BY id", statuses)
    return [r[0] for r in rows]
