"""Signing notifications so a partner can tell they came from us and were not replayed.

`X-Gateway-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over `"<t>." + body` with the
subscription's own secret (the same shape as Stripe's webhooks, so partners have tools for it).
The timestamp is inside the MAC, so a receiver rejecting old `t` values also rejects replays.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Gateway-Signature"


def signature(secret: str, body: bytes, t: int | None = None) -> str:
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode("utf-8"), f"{t}.".encode("ascii") + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance_s: int = 300, now: float | None = None) -> bool:
    """True when `header` is a valid signature of `body` made less than `tolerance_s` ago."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        k, _, v = item.strip().partition("=")
        parts.setdefault(k, []).append(v)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    expected = signature(secret, body, t).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, v) for v in parts.get("v1", []))
