"""Helpers for the subscription and event tests: real HTTP receivers standing in for partners.

Not tests themselves (pytest collects this module and finds none). A `Receiver` is a threaded
`http.server` on loopback that records every request (time, method, path, headers, body) and
answers as told: a status code, a delay, or a function of the request.
"""

from __future__ import annotations

import atexit
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import httpx
import redis

from conftest import REDIS_URL


@dataclass
class Received:
    t: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int = 0

    def json(self):
        return json.loads(self.body) if self.body else None

    @property
    def event(self) -> str | None:
        return self.headers.get("x-gateway-event")

    @property
    def focus(self) -> str | None:
        return self.headers.get("x-gateway-focus")

    @property
    def handshake(self) -> bool:
        return self.headers.get("x-gateway-handshake") == "true"


@dataclass
class Receiver:
    status: int = 200
    delay: float = 0.0
    behaviour: Callable[[Received], tuple[int, float]] | None = None
    requests: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                rec = Received(time.time(), self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                               body)
                status, delay = (receiver.behaviour(rec) if receiver.behaviour else (receiver.status, receiver.delay))
                if delay:
                    time.sleep(delay)
                rec.answered = status
                with receiver._lock:
                    receiver.requests.append(rec)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def ok(self) -> list[Received]:
        """Requests answered 2xx (what the partner actually accepted)."""
        return [r for r in self.snapshot() if 200 <= r.answered < 300]

    def notifications(self, accepted_only: bool = True) -> list[Received]:
        rows = self.ok() if accepted_only else self.snapshot()
        return [r for r in rows if not r.handshake]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 20) -> list[Received]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            rows = self.snapshot()
            if predicate(rows):
                return rows
            time.sleep(0.05)
        raise AssertionError(f"receiver: condition not met in {timeout}s; got {len(self.snapshot())} requests: "
                             + "; ".join(f"{r.method} {r.path} {r.event}" for r in self.snapshot()[-10:]))


def wait_until(fn: Callable[[], object], timeout: float = 20, interval: float = 0.1, what: str = "condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s (last: {last!r})")


_PREFIXES: list[str] = []
_TIDY: list = []  # a Redis client made during the run: at exit nothing new can be set up


def redis_env(prefix: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for a gateway on the machine's Redis, under a key prefix of its own (its keys
    are removed when the test run ends)."""
    prefix = prefix or f"gwtest-{uuid.uuid4().hex[:10]}"
    _PREFIXES.append(prefix)
    if not _TIDY:
        _TIDY.append(redis.Redis.from_url(REDIS_URL, socket_timeout=5))
        _TIDY[0].ping()
    return {"GATEWAY_REDIS_URL": REDIS_URL, "GATEWAY_REDIS_PREFIX": prefix, **extra}


@atexit.register
def _drop_test_keys() -> None:
    if not _PREFIXES or not _TIDY:
        return
    try:
        client = _TIDY[0]
        for prefix in _PREFIXES:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])
        client.close()
    except Exception:
        pass  # a test run must not fail on its tidying up


FAST = {  # quick retries for tests: 50 ms doubling, four attempts
    "GATEWAY_DELIVERY_BACKOFF_MS": "50", "GATEWAY_DELIVERY_BACKOFF_MAX_MS": "400",
    "GATEWAY_DELIVERY_MAX_ATTEMPTS": "4", "GATEWAY_DELIVERY_TIMEOUT_MS": "3000",
    "GATEWAY_EVENTS_LEASE_MS": "2000", "GATEWAY_EVENTS_POLL_MS": "100",
}


def subscription(criteria: str, endpoint: str, *, payload: str | None = "application/fhir+json",
                 headers: list[str] | None = None, secret: str | None = None, status: str = "requested",
                 content: str | None = None, filters: list[str] | None = None) -> dict:
    channel: dict = {"type": "rest-hook", "endpoint": endpoint}
    if payload:
        channel["payload"] = payload
    if headers:
        channel["header"] = headers
    if content:
        channel["_payload"] = {"extension": [{
            "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content",
            "valueCode": content}]}
    sub: dict = {"resourceType": "Subscription", "status": status, "reason": "test", "criteria": criteria,
                 "channel": channel}
    if filters:
        sub["_criteria"] = {"extension": [{
            "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria",
            "valueString": f} for f in filters]}
    if secret:
        sub["extension"] = [{"url": "https://fhir.activerecovery.example/StructureDefinition/subscription-signing-secret",
                             "valueString": secret}]
    return sub


def create_active(client: httpx.Client, base: str, sub: dict, timeout: float = 20) -> str:
    """POST a Subscription and wait for the gateway to activate it (handshake done)."""
    r = client.post(f"{base}/Subscription", json=sub)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    wait_until(lambda: client.get(f"{base}/Subscription/{sid}").json()["status"] != "requested", timeout,
               what=f"Subscription/{sid} leaving 'requested'")
    got = client.get(f"{base}/Subscription/{sid}").json()
    assert got["status"] == "active", got
    return sid
