"""Change events, FHIR Subscriptions and what several gateway processes share.

    outbox.py          the dispatcher: committed changes (the outbox) -> owed notifications
    coordination.py    cross-process locks kept by the store (one dispatcher, one in-process leader)
    subscriptions.py   Subscription resources read into a delivery plan (criteria, channel, secret)
    registry.py        the store's subscriptions, reparsed only when one changed
    topics.py          the R4 topic-based backport topics this gateway offers
    deliveries.py      the delivery log (storage only)
    bus.py             the event bus interface and its in-process implementation
    redis_bus.py       the Redis Streams implementation (consumer groups, leases, XAUTOCLAIM)
    delivery.py        one notification's journey: handshake, attempts, backoff, dead letter
    notify.py          what is sent (bodies, headers); signing.py how it is signed
    shared.py          Redis connection and idempotency keys; cache.py, ratelimit.py, edge.py
    fhir_operations.py Subscription/$resend and $status; routes.py the delivery log over HTTP
    service.py         wiring, started and stopped by the app's lifespan

`first_time(key, ttl)` is the idempotency helper for inbound pipelines.
"""

from gateway.events.shared import first_time

__all__ = ["first_time"]
