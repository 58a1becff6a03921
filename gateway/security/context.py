"""Who the current request is for, carried by a context variable.

The HTTP edge sets it for every FHIR request and HTML page (gateway.security.edge), so anything
that runs for that request, including in-process dispatches by the pages and Bundle entries, sees
the same caller. Work the gateway does on its own behalf (pipelines after an inbound channel was
allowed, start-up loading, background tasks) runs with no caller, which means "the gateway itself".
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, field

from gateway.security.principal import Principal


@dataclass
class Caller:
    principal: Principal
    address: str = ""  # client IP as the HTTP server saw it
    # Bundle entries report here instead of writing one AuditEvent each (see gateway.security.guard)
    entries: list | None = field(default=None)


_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("gateway_caller", default=None)


def current() -> Caller | None:
    return _caller.get()


def current_principal() -> Principal | None:
    c = _caller.get()
    return c.principal if c is not None else None


@contextmanager
def acting_as(caller: Caller | None):
    token = _caller.set(caller)
    try:
        yield caller
    finally:
        _caller.reset(token)


def as_system():
    """Run the enclosed block as the gateway itself (no caller: no scope checks, no audit)."""
    return acting_as(None)
