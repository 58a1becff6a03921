"""Change events, FHIR Subscriptions and what several gateway processes share.

    outbox.py        the dispatcher: committed changes (the outbox) -> owed notifications
    subscriptions.py Subscription resources read into a delivery plan (criteria, channel, secret)
    topics.py        the R4 topic-based backport topics this gateway offers
    deliveries.py    the delivery log (storage only)
    bus.py           the event bus interface and its in-process implementation
    redis_bus.py     the Redis Streams implementation (consumer groups, leases, XAUTOCLAIM)
    delivery.py      one notification's journey: handshake, attempts, backoff, dead letter
    notify.py        what is sent (bodies, headers) and signing.py how it is signed
    shared.py        Redis connection, idempotency keys; cache.py, ratelimit.py, edge.py
    service.py       wiring, started and stopped by the app's lifespan

`first_time(key, ttl)` is the idempotency helper for inbound pipelines.
"""

from gateway.events.shared import first_time

__all__ = ["first_time"]
