"""The small parts of gateway/events on their own: signing, backoff, Subscription parsing, topics,
store locks (on both back ends) and the documentation of the settings."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import ROOT, drop_pg_schema, pg_schema_url
from gateway.events.delivery import backoff_s
from gateway.events.signing import signature, verify
from gateway.events.subscriptions import parse
from gateway.events.topics import DISCHARGE_TO_ACTIVE_RECOVERY, PATHWAY

TZ = ZoneInfo("Europe/London")


def test_signature_is_hmac_sha256_over_timestamp_and_body():
    import hashlib
    import hmac

    sig = signature("s3cret", b'{"a":1}', t=1700000000)
    assert sig == "t=1700000000,v1=" + hmac.new(b"s3cret", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert verify("s3cret", sig, b'{"a":1}', now=1700000100)
    assert not verify("s3cret", sig, b'{"a":2}', now=1700000100)  # body changed
    assert not verify("other", sig, b'{"a":1}', now=1700000100)  # wrong secret
    assert not verify("s3cret", sig, b'{"a":1}', now=1700000000 + 301)  # too old: a replay
    assert not verify("s3cret", sig.replace("t=1700000000", "t=1700000100"), b'{"a":1}', now=1700000100)
    assert not verify("s3cret", "garbage", b"")


def test_backoff_doubles_with_jitter_and_a_cap():
    for attempt, full in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 30.0)):
        values = [backoff_s(attempt, 1000, 30_000) for _ in range(200)]
        assert all(full / 2 <= v <= full for v in values), (attempt, min(values), max(values))
        assert max(values) - min(values) > full / 10  # jittered, not fixed


def _sub(**kw) -> dict:
    base = {"resourceType": "Subscription", "id": "s1", "status": "requested", "reason": "r",
            "criteria": "Patient?family=smith", "channel": {"type": "rest-hook", "endpoint": "https://partner.example/hook"}}
    base.update(kw)
    return base


def test_parse_classic_and_topic_subscriptions():
    spec = parse(_sub(channel={"type": "rest-hook", "endpoint": "https://p.example/h", "payload": "application/fhir+json",
                               "header": ["Authorization: Bearer x", "Host: evil", "X-Partner: a:b"]}), 3, TZ)
    assert spec.problem is None and spec.kind == "classic" and spec.resource_type == "Patient"
    assert spec.content == "full-resource" and spec.version == 3
    assert spec.headers == [("Authorization", "Bearer x"), ("X-Partner", "a:b")]  # Host may not be set
    assert "idx_string" in spec.compiled.where

    topic = parse(_sub(criteria=DISCHARGE_TO_ACTIVE_RECOVERY.url, _criteria={"extension": [{
        "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria",
        "valueString": "ServiceRequest?performer=Organization/abc"}]}), 1, TZ)
    assert topic.problem is None and topic.kind == "topic" and topic.resource_type == "ServiceRequest"
    assert ("performer", "Organization/abc") in topic.filters and ("status", "active") in topic.filters
    assert topic.content == "empty"


@pytest.mark.parametrize("change, words", [
    ({"criteria": "Patient?bogus=1"}, "bogus"),
    ({"criteria": "Nonsense?x=1"}, "searchable resource type"),
    ({"criteria": "Patient?birthdate=notadate"}, "criteria cannot be used"),
    ({"criteria": "https://example.org/topic/unknown"}, "not offered"),
    ({"channel": {"type": "websocket"}}, "not supported"),
    ({"channel": {"type": "rest-hook", "endpoint": "ftp://x"}}, "not an http(s) URL"),
    ({"channel": {"type": "rest-hook", "endpoint": "https://x", "payload": "text/csv"}}, "text/csv"),
    ({"end": "yesterday"}, "FHIR instant"),
    ({"channel": {"type": "rest-hook", "endpoint": "https://x", "header": ["X-A: 1\r\nX-Injected: 2"]}}, "line breaks"),
])
def test_parse_reports_what_cannot_be_served(change, words):
    assert words in (parse(_sub(**change), 1, TZ).problem or "")


def test_topic_fires_when_a_referral_becomes_active():
    topic = DISCHARGE_TO_ACTIVE_RECOVERY
    referral = {"resourceType": "ServiceRequest", "status": "active", "category": [{"coding": [{"system": PATHWAY, "code": "x"}]}]}
    assert topic.passes(referral)
    assert not topic.passes({**referral, "status": "draft"})
    assert not topic.passes({**referral, "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "x"}]}]})
    assert topic.previous_failed(None) and topic.previous_failed({**referral, "status": "draft"})
    assert not topic.previous_failed(referral)
    shape = topic.to_resource()
    assert shape["resourceType"] == "SubscriptionTopic" and shape["url"] == topic.url


def test_topic_uses_the_referral_mappings_codesystem():
    from gateway.adapters.hl7v2.mapping.referral import PATHWAY as MAPPING_PATHWAY

    assert PATHWAY == MAPPING_PATHWAY


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    from gateway.config import Settings
    from gateway.store import open_store

    url = f"sqlite:///{tmp_path / 'g.db'}" if request.param == "sqlite" else pg_schema_url()
    s = open_store(Settings(database_url=url))
    yield s
    if request.param == "postgres":
        asyncio.run(drop_pg_schema(url))


async def test_store_lock_excludes_other_holders_and_dies_with_them(store):
    from gateway.events.coordination import StoreLock
    from gateway.store import open_store
    from gateway.config import Settings

    await store.open()
    url = f"sqlite:///{store.path}" if store.dialect_name == "sqlite" else None
    other_store = store if url is None else open_store(Settings(database_url=url))
    one, two = StoreLock(store, "test-lock"), StoreLock(other_store, "test-lock")
    try:
        assert await one.try_acquire()
        assert not await two.try_acquire()  # a second connection / file handle: another "process"
        assert not await two.acquire(timeout=0.1)
        assert await one.still_held()
        await one.close()  # the holder goes away: the lock goes with it
        assert await two.acquire(timeout=2)
        assert await StoreLock(store, "another-name").try_acquire()
    finally:
        await one.close()
        await two.close()
        await store.close()


async def test_outbox_claim_reads_in_seq_order_and_deletes(store):
    await store.open()
    try:
        async with store.session(write=True) as s:
            for n in range(3):
                await s.create({"resourceType": "Basic", "code": {"text": str(n)}})
        async with store.session(write=True) as s:
            rows = await s.outbox_batch(1000)
            mine = [r for r in rows if r.type == "Basic"]
            assert [r.seq for r in mine] == sorted(r.seq for r in mine) and len(mine) == 3
            assert all(r.method == "POST" and r.version == 1 for r in mine)
            await s.outbox_delete([r.seq for r in rows])
        async with store.session() as s:
            assert await s.outbox_batch(10) == []
    finally:
        await store.close()


def test_readme_documents_the_event_settings():
    from gateway.config import SETTINGS

    readme = (ROOT / "README.md").read_text()
    for name in ("redis_prefix", "subscription_lanes", "delivery_max_attempts", "delivery_backoff_ms",
                 "delivery_backoff_max_ms", "delivery_timeout_ms", "events_lease_ms", "events_poll_ms",
                 "rate_limit", "rate_limit_burst", "rate_limit_client_header", "cache_ttl"):
        assert name in SETTINGS
        assert re.search(rf"^\| `GATEWAY_{name.upper()}` \|", readme, re.M), f"README lacks GATEWAY_{name.upper()}"
    assert "## Subscriptions and scale-out" in readme
    assert Path(ROOT / "docker-compose.yml").exists()


@pytest.mark.parametrize("rtype, params", [
    ("Patient", [("family", "smi"), ("family:exact", "Smith"), ("family:contains", "mit")]),
    ("Patient", [("identifier", "https://fhir.nhs.uk/Id/nhs-number|9434765919"), ("gender:not", "male"),
                 ("_tag", "https://x|y"), ("identifier:of-type", "http://t|MR|1")]),
    ("Patient", [("birthdate", "ge1940"), ("birthdate:missing", "true"), ("general-practitioner:missing", "false")]),
    ("Patient", [("address-postalcode", "LS11AA"), ("organization", "Organization/1"), ("_profile", "http://p")]),
    ("Patient", [("_has:Encounter:subject:status", "finished"), ("_has:Encounter:subject:class", "IMP")]),
    ("Encounter", [("subject:Patient.family", "smith"), ("subject:Patient.identifier", "http://s|1"),
                   ("participant:Practitioner.name", "x")]),
    ("Observation", [("subject.name", "smith"), ("performer.identifier", "http://s|1")]),  # an arm per target type
    ("Observation", [("value-quantity", "gt5"), ("code", "http://loinc.org|1234-5"), ("subject", "Patient/1")]),
])
def test_per_row_matching_ties_every_subquery(rtype, params):
    """If the search compiler's SQL changes shape, matching stays correct but would scale with the
    record: this notices."""
    from gateway.events.matching import per_row, subqueries
    from gateway.store.search_sql import compile_search

    where = compile_search(rtype, params, tz=TZ).where
    for dialect in ("sqlite", "postgres"):
        rewritten, tied = per_row(where, dialect)
        assert tied == subqueries(where) > 0, (dialect, where)
        assert ("INDEXED BY" in rewritten) == (dialect == "sqlite")
        assert ("OFFSET 0" in rewritten) == (dialect == "postgres")
    from gateway.store.schema import INDEX_TABLES, ddl

    statements = " ".join(ddl("sqlite"))
    for table in INDEX_TABLES:  # the hints name indexes that must exist
        assert f"CREATE INDEX IF NOT EXISTS {table}_pk ON {table} (pk)" in statements
    assert "CREATE INDEX IF NOT EXISTS idx_reference_lookup ON idx_reference (target_id," in statements
