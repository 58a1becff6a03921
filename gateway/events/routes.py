"""HTTP views for operators and partners, outside the FHIR API: the delivery log and the topics.

    GET /subscriptions/{id}/deliveries?status=dead&before=<id>&_count=50   newest first
    GET /subscriptions/topics                                              SubscriptionTopics offered
    GET /events                                                            this process's event service
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.events import deliveries
from gateway.events.topics import TOPICS

_STATUSES = ("pending", "delivered", "dead", "failed", "cancelled")


def _json(body, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


async def list_deliveries(request: Request) -> Response:
    ctx = request.app.state.ctx
    sid = request.path_params["subscription_id"]
    status = request.query_params.get("status")
    before = request.query_params.get("before")
    limit = request.query_params.get("_count", "50")
    if status and status not in _STATUSES:
        return JSONResponse({"error": f"status must be one of {', '.join(_STATUSES)}"}, status_code=400)
    if (before and not before.isdigit()) or not limit.isdigit():
        return JSONResponse({"error": "before and _count must be integers"}, status_code=400)
    limit_n = min(int(limit), 500)
    async with ctx.store.session() as s:
        sub = await s.read("Subscription", sid)
        if sub is None:
            return JSONResponse({"error": f"no Subscription/{sid}"}, status_code=404)
        rows = await deliveries.listing(s, sid, status, int(before) if before else None, limit_n)
        counts = await deliveries.counts(s, sid)
        total = await deliveries.events_since_start(s, sid)
    body = {"subscription": f"Subscription/{sid}", "eventsSinceSubscriptionStart": total, "counts": counts,
            "deliveries": [d.to_json() for d in rows]}
    if len(rows) == limit_n and rows:
        body["next"] = f"/subscriptions/{sid}/deliveries?before={rows[-1].id}&_count={limit_n}" + (
            f"&status={status}" if status else "")
    return _json(body)


async def list_topics(request: Request) -> Response:
    return _json({"topics": [t.to_resource() for t in TOPICS.values()]})


async def events_status(request: Request) -> Response:
    events = request.app.state.ctx.services.get("events")
    if events is None:
        return JSONResponse({"error": "the event service is not running"}, status_code=503)
    return _json(events.status())


ROUTES = [
    Route("/subscriptions/topics", list_topics, methods=["GET"]),
    Route("/subscriptions/{subscription_id}/deliveries", list_deliveries, methods=["GET"]),
    Route("/events", events_status, methods=["GET"]),
]
