"""What Redis carries besides events: per-client rate limits, the hot-read cache and idempotency
keys - each shared by several gateway processes, and each working in-process without Redis."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from conftest import REDIS_URL, GatewayProcess, drop_pg_schema, pg_schema_url
from gateway.events.shared import Shared, connect_redis
from test_events_support import redis_env


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}" if request.param == "sqlite" else pg_schema_url()
    yield url
    if request.param == "postgres":
        asyncio.run(drop_pg_schema(url))


def test_rate_limit_is_one_bucket_per_client_across_processes(store_url, tmp_path):
    env = {**redis_env(), "GATEWAY_RATE_LIMIT": "2", "GATEWAY_RATE_LIMIT_BURST": "6",
           "GATEWAY_RATE_LIMIT_CLIENT_HEADER": "X-Client-Id"}
    a = GatewayProcess(store_url, tmp_path, extra_env=env).start()
    b = GatewayProcess(store_url, tmp_path, extra_env=env).start()
    try:
        with httpx.Client(timeout=10) as client:
            time.sleep(3.1)  # the startup probes (no client id: keyed by address) have refilled
            answers = [client.get(f"{g.base}/Patient", headers={"X-Client-Id": "council"})
                       for g in (a, b) * 6]
            codes = [r.status_code for r in answers]
            assert codes[:6] == [200] * 6 and codes.count(429) >= 5, codes  # one bucket of 6, not two
            throttled = next(r for r in answers if r.status_code == 429)
            assert throttled.headers["retry-after"] == "1"
            outcome = throttled.json()
            assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "throttled"
            # another client has its own bucket
            assert client.get(f"{b.base}/Patient", headers={"X-Client-Id": "trust"}).status_code == 200
            time.sleep(1.1)  # 2 tokens a second come back
            assert client.get(f"{a.base}/Patient", headers={"X-Client-Id": "council"}).status_code == 200
    finally:
        a.stop()
        b.stop()


def test_rate_limit_in_process_without_redis(tmp_path):
    g = GatewayProcess(f"sqlite:///{tmp_path / 'g.db'}", tmp_path,
                       extra_env={"GATEWAY_RATE_LIMIT": "1", "GATEWAY_RATE_LIMIT_BURST": "3"}).start()
    try:
        time.sleep(3.1)
        with httpx.Client(timeout=10) as client:
            codes = [client.get(f"{g.base}/Patient").status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    finally:
        g.stop()


def _translate(g: GatewayProcess, url: str) -> httpx.Response:
    return httpx.get(f"{g.base}/ConceptMap/$translate", params={"url": url, "code": "A", "system": "urn:src"}, timeout=10)


def test_hot_reads_are_shared_and_retired_by_a_write(store_url, tmp_path):
    env = {**redis_env(), "GATEWAY_BASE_URL": "https://gateway.example.org/fhir"}  # one public name
    a = GatewayProcess(store_url, tmp_path, extra_env=env).start()
    b = GatewayProcess(store_url, tmp_path, extra_env=env).start()
    url = f"https://fhir.activerecovery.example/ConceptMap/test-{uuid.uuid4().hex[:8]}"
    cm = {"resourceType": "ConceptMap", "url": url, "status": "active", "group": [{
        "source": "urn:src", "target": "urn:tgt", "element": [{"code": "A", "target": [{"code": "one", "equivalence": "equivalent"}]}]}]}
    try:
        with httpx.Client(timeout=10) as client:
            assert client.post(f"{a.base}/ConceptMap", json=cm).status_code == 201
            first = _translate(a, url)
            assert first.headers["x-gateway-cache"] == "miss"
            second = _translate(b, url)  # filled by a, served to b
            assert second.headers["x-gateway-cache"] == "hit" and second.content == first.content
            codes = lambda r: [p["part"][1]["valueCoding"]["code"] for p in r.json()["parameter"] if p["name"] == "match"]  # noqa: E731
            assert codes(second) == ["one"]
            # a write through b retires every cached ConceptMap read, in both processes
            cm_id = client.get(f"{a.base}/ConceptMap", params={"url": url}).json()["entry"][0]["resource"]["id"]
            cm["id"] = cm_id
            cm["group"][0]["element"][0]["target"][0]["code"] = "two"
            assert client.put(f"{b.base}/ConceptMap/{cm_id}", json=cm).status_code == 200
            assert codes(_translate(b, url)) == ["two"]  # read-your-writes in the writing process
            assert codes(_translate(a, url)) == ["two"]
            meta = client.get(f"{a.base}/metadata")
            assert client.get(f"{b.base}/metadata").headers["x-gateway-cache"] == "hit"
            assert meta.json()["resourceType"] == "CapabilityStatement"
    finally:
        a.stop()
        b.stop()


async def test_first_time_is_shared_by_processes_and_expires():
    prefix = f"gwtest-{uuid.uuid4().hex[:10]}"
    one, two = Shared(connect_redis(REDIS_URL), prefix), Shared(connect_redis(REDIS_URL), prefix)
    try:
        key = "MSH-10|HOSP^RX1|12345"
        assert await one.first_time(key, 1) is True
        assert await two.first_time(key, 1) is False  # another process sees it too
        assert await one.first_time(key, 1) is False
        assert await two.first_time("another", 1) is True
        await asyncio.sleep(1.1)
        assert await two.first_time(key, 1) is True  # the key expired with its ttl
    finally:
        await one.redis.aclose()
        await two.redis.aclose()


async def test_first_time_in_process_fallback():
    from gateway.events import first_time

    key = f"k-{uuid.uuid4().hex}"
    assert await first_time(key, 1) is True
    assert await first_time(key, 1) is False
    local = Shared()
    assert await local.first_time(key, 1) is True  # its own memory: another process would not know
    await asyncio.sleep(1.05)
    assert await first_time(key, 1) is True
    with pytest.raises(ValueError):
        await first_time(key, 0)


def test_hot_reads_without_redis_see_another_process_write(tmp_path):
    """Two single-worker gateways on one SQLite file and no Redis: each caches for itself, and a
    write by either retires both caches (the generation is read from the store)."""
    url = f"sqlite:///{tmp_path / 'g.db'}"
    a = GatewayProcess(url, tmp_path).start()
    b = GatewayProcess(url, tmp_path).start()
    cm_url = f"https://fhir.activerecovery.example/ConceptMap/test-{uuid.uuid4().hex[:8]}"
    cm = {"resourceType": "ConceptMap", "url": cm_url, "status": "active", "group": [{
        "source": "urn:src", "target": "urn:tgt", "element": [{"code": "A", "target": [{"code": "one", "equivalence": "equivalent"}]}]}]}
    codes = lambda r: [p["part"][1]["valueCoding"]["code"] for p in r.json()["parameter"] if p["name"] == "match"]  # noqa: E731
    try:
        with httpx.Client(timeout=10) as client:
            created = client.post(f"{a.base}/ConceptMap", json=cm).json()
            assert _translate(a, cm_url).headers["x-gateway-cache"] == "miss"
            hit = _translate(a, cm_url)
            assert hit.headers["x-gateway-cache"] == "hit" and codes(hit) == ["one"]
            cm["id"] = created["id"]
            cm["group"][0]["element"][0]["target"][0]["code"] = "two"
            assert client.put(f"{b.base}/ConceptMap/{created['id']}", json=cm).status_code == 200
            assert codes(_translate(a, cm_url)) == ["two"]
    finally:
        a.stop()
        b.stop()
