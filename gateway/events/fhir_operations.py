"""FHIR operations on Subscription: `$resend` (dead letters) and the backport's `$status`.

Transport-free handlers for the route table, like every other FHIR handler.
"""

from __future__ import annotations

import uuid

import orjson

from gateway.events import deliveries, notify
from gateway.events.subscriptions import parse
from gateway.fhir.bundle_bytes import bundle_bytes, entry_bytes
from gateway.fhir.outcome import FhirError, Issue, bad_request, gone, not_found, unprocessable
from gateway.fhir.request import FhirRequest, FhirResponse


async def _subscription(ctx, id: str):
    async with ctx.store.session() as s:
        row = await s.read("Subscription", id)
    if row is None:
        raise not_found(f"Subscription/{id} is not known")
    if row.deleted:
        raise gone(f"Subscription/{id} was deleted")
    return row


def _event_numbers(req: FhirRequest) -> list[int]:
    raw = [v for k, v in req.params if k == "eventNumber"]
    body = req.body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for p in body.get("parameter", []) or []:
            if p.get("name") == "eventNumber":
                raw += [str(v) for k, v in p.items() if k.startswith("value")]
    numbers = []
    for value in raw:
        for part in str(value).split(","):
            if not part.strip().isdigit():
                raise bad_request(f"eventNumber must be a whole number, not {part!r}", "eventNumber", "value")
            numbers.append(int(part))
    return numbers


async def resend(ctx, req: FhirRequest, id: str) -> FhirResponse:
    """POST Subscription/{id}/$resend[?eventNumber=n[,m]]: dead-lettered events are sent again
    (all of the subscription's dead letters when no eventNumber is given)."""
    await _subscription(ctx, id)
    events = ctx.services.get("events")
    if events is None:
        raise FhirError(503, Issue("error", "transient", "Notifications are not running in this process"))
    numbers = _event_numbers(req)
    revived = await events.resend(id, numbers or None)
    if numbers and not revived:
        raise unprocessable(f"None of events {', '.join(map(str, numbers))} of Subscription/{id} is a dead letter",
                            "eventNumber")
    params = [{"name": "resent", "valueInteger": len(revived)}]
    params += [{"name": "eventNumber", "valueString": str(d.event_number)} for d in revived]
    return FhirResponse(200, resource={"resourceType": "Parameters", "parameter": params})


async def status(ctx, req: FhirRequest, id: str) -> FhirResponse:
    """GET Subscription/{id}/$status: the backport's SubscriptionStatus (R4: Parameters) in a Bundle."""
    row = await _subscription(ctx, id)
    spec = parse(orjson.loads(row.content), row.version, ctx.settings.tz)
    async with ctx.store.session() as s:
        total = await deliveries.events_since_start(s, id)
    params = notify.status_parameters(spec, req.base_url, "query-status", total)
    if spec.resource.get("error"):
        params["parameter"].append({"name": "error", "valueCodeableConcept": {"text": spec.resource["error"]}})
    entry = entry_bytes(f"urn:uuid:{uuid.uuid4()}", orjson.dumps(params), {"search": {"mode": "match"}})
    return FhirResponse(200, body=bundle_bytes("searchset", [entry], 1, [
        {"relation": "self", "url": f"{req.base_url}/Subscription/{id}/$status"}]))
