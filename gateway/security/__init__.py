"""Access control and audit: tokens, SMART scopes, partner clients, security labels, AuditEvents.

    scopes.py      SMART v1/v2 scopes as permission letters
    principal.py   who is calling, and `may_read(principal, resource)`: the one visibility rule
    clients.py     the partner registry (GATEWAY_CLIENTS_FILE): scopes, channels, labels, keys
    keys.py        the gateway's token-signing key; tokens.py: issuing and verifying JWTs
    routes.py      POST /auth/token (private_key_jwt), SMART configuration, JWKS
    edge.py        ASGI middleware: bearer tokens, channels, operator views, pages
    guard.py       checks at Router.dispatch: scopes, labels, writes, read filtering, audit
    visibility.py  the SQL filter that hides what a caller may not see from search and includes
    audit.py       AuditEvent building and the bounded, batched background writer
    service.py     wiring and the start-up rule (no auth → loopback only)

For the events engine: `may_read(principal, resource)` and `subscriber(ctx, subscription)`.
"""

from __future__ import annotations

from gateway.security.context import as_system, current_principal
from gateway.security.principal import ANONYMOUS, Principal, may_read


def subscriber(ctx, subscription: dict) -> Principal | None:
    """Whom a Subscription's notifications are for: its owner (the client that wrote it), or None
    (the gateway itself: auth off, or written before auth was on), which may read everything.

    Deliver a change only when `may_read(subscriber(ctx, sub), resource)`.
    """
    svc = ctx.services.get("security")
    return svc.subscriber(subscription) if svc is not None else None


__all__ = ["ANONYMOUS", "Principal", "as_system", "current_principal", "may_read", "subscriber"]
