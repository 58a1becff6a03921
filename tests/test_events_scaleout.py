"""Several gateway processes on one store and one Redis: shared delivery, crash recovery, commit
order on PostgreSQL, `--workers N`, and the other things Redis carries (rate limits, hot-read
cache, idempotency keys). Real processes, real Redis, real receivers on loopback.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import httpx
import pytest

from conftest import GatewayProcess, drop_pg_schema, pg_schema_url
from test_events_support import FAST, Receiver, create_active, redis_env, subscription, wait_until

TAG_SYSTEM = "https://fhir.activerecovery.example/test-run"


def store_url(backend: str, tmp) -> str:
    return f"sqlite:///{tmp / 'shared.db'}" if backend == "sqlite" else pg_schema_url()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request):
    return request.param


@pytest.fixture
def cluster(backend, tmp_path):
    """Start gateways on one store and one Redis prefix: `cluster(n, **env)`."""
    url = store_url(backend, tmp_path)
    env = {**FAST, **redis_env()}
    started: list[GatewayProcess] = []

    def start(n: int, **extra: str) -> list[GatewayProcess]:
        for _ in range(n):
            started.append(GatewayProcess(url, tmp_path, extra_env={**env, **extra}).start())
        return started[-n:]

    start.env = env
    start.url = url
    yield start
    for g in started:
        g.stop()
    if backend == "postgres":
        asyncio.run(drop_pg_schema(url))


def status(g: GatewayProcess) -> dict:
    return httpx.get(f"http://127.0.0.1:{g.port}/events", timeout=10).json()


def log_of(g: GatewayProcess, sid: str) -> list[dict]:
    out, before = [], None
    while True:
        params = {"_count": "500", **({"before": before} if before else {})}
        body = httpx.get(f"http://127.0.0.1:{g.port}/subscriptions/{sid}/deliveries", params=params, timeout=10).json()
        out += body["deliveries"]
        if "next" not in body:
            return out
        before = body["deliveries"][-1]["id"]


def patient(tag: str, **extra) -> dict:
    return {"resourceType": "Patient", "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag}]}, **extra}


def test_two_processes_deliver_each_event_exactly_once_and_share_the_work(cluster):
    a, b = cluster(2)
    tag = uuid.uuid4().hex[:10]
    receivers = [Receiver(), Receiver()]
    try:
        with httpx.Client(timeout=30) as client:
            subs = [create_active(client, a.base, subscription(f"Patient?_tag={TAG_SYSTEM}|{tag}", r.url, payload=None))
                    for r in receivers]
            # 2 subscriptions x 4 lanes: each process takes its share
            wait_until(lambda: len(status(a).get("lanes", [])) == 4 and len(status(b).get("lanes", [])) == 4,
                       what="lanes shared 4/4")

            async def write_all() -> list[tuple[str, int]]:
                async with httpx.AsyncClient(timeout=30) as ac:
                    async def one(i: int) -> list[tuple[str, int]]:
                        g = (a, b)[i % 2]
                        r = await ac.post(f"{g.base}/Patient", json=patient(tag))
                        pid = r.json()["id"]
                        g2 = (b, a)[i % 2]  # the update goes through the other process
                        r2 = await ac.put(f"{g2.base}/Patient/{pid}", json={**patient(tag, active=True), "id": pid})
                        assert r2.status_code == 200
                        return [(pid, 1), (pid, 2)]
                    rows = await asyncio.gather(*[one(i) for i in range(40)])
                return [x for pair in rows for x in pair]

            written = asyncio.run(write_all())
            for rec in receivers:
                rec.wait_for(lambda rows: len([r for r in rows if not r.handshake]) >= len(written), 30)
            time.sleep(1.0)  # a duplicate would show up now
            for rec, sid in zip(receivers, subs):
                notes = rec.notifications()
                events = Counter(r.event for r in notes)
                assert len(notes) == len(written) and max(events.values()) == 1, events.most_common(3)
                got = Counter((r.focus.split("/")[1], int(r.focus.rsplit("/", 1)[1])) for r in notes)
                assert got == Counter(written)
                for pid in {p for p, _ in written}:  # per resource: version 1 before version 2
                    versions = [int(r.focus.rsplit("/", 1)[1]) for r in notes if r.focus.split("/")[1] == pid]
                    assert versions == [1, 2], (pid, versions)
                log = wait_until(lambda: (x := [d for d in log_of(a, sid) if d["kind"] == "event"])
                                 and all(d["status"] == "delivered" for d in x) and x, what="all recorded")
                assert len(log) == len(written) and all(d["attempts"] == 1 for d in log)
                assert sorted(d["eventNumber"] for d in log) == list(range(1, len(written) + 1))
                assert len({d["log"][0]["by"] for d in log}) == 2, "only one process delivered"
    finally:
        for rec in receivers:
            rec.close()


def test_a_killed_process_loses_nothing(cluster):
    a, b = cluster(2)
    tag = uuid.uuid4().hex[:10]
    rec = Receiver(behaviour=lambda r: (200, 0 if r.handshake else 0.15))  # slow enough to be caught mid-delivery
    try:
        with httpx.Client(timeout=30) as client:
            sid = create_active(client, b.base, subscription(f"Patient?_tag={TAG_SYSTEM}|{tag}", rec.url, payload=None))
            wait_until(lambda: len(status(a).get("lanes", [])) == 2 and len(status(b).get("lanes", [])) == 2,
                       what="lanes shared 2/2")
            victim_lanes = status(a)["lanes"]
            ids = [client.post(f"{b.base}/Patient", json=patient(tag)).json()["id"] for _ in range(40)]
            # wait until the victim is in the middle of its share, then SIGKILL it
            wait_until(lambda: 3 <= len([d for d in log_of(b, sid) if d["kind"] == "event" and d["status"] == "delivered"
                                         and d["log"][0]["by"] == status(a)["node"]]), 20, 0.02, "victim delivering")
            victim = status(a)["node"]
            a.stop(kill=True)
            # the survivor takes the victim's lanes once their leases lapse (2 s) and finishes the work
            wait_until(lambda: len(status(b).get("lanes", [])) == 4, 15, what="survivor owns every lane")
            rec.wait_for(lambda rows: {r.focus.split("/")[1] for r in rows if r.focus and r.answered == 200} >= set(ids), 40)
            log = wait_until(lambda: (x := [d for d in log_of(b, sid) if d["kind"] == "event"])
                             and all(d["status"] == "delivered" for d in x) and x, what="all recorded")
            assert len(log) == 40
            assert {d["log"][-1]["by"] for d in log} >= {victim, status(b)["node"]}
            # at-least-once across a crash: a notification the victim had sent but not yet recorded may
            # arrive twice (same X-Gateway-Event, so the partner can tell) - at most one per victim lane
            events = Counter(r.event for r in rec.notifications())
            assert set(events) == {f"Subscription/{sid}#{n}" for n in range(1, 41)}
            assert sum(c - 1 for c in events.values()) <= len(victim_lanes)
    finally:
        rec.close()


def test_late_commit_with_a_lower_seq_is_not_skipped_on_postgres(tmp_path):
    """PostgreSQL hands out seq at write time, not commit time: a transaction holding seq n can commit
    after one holding n+1. A seq cursor would skip n; the outbox claim must not."""
    from zoneinfo import ZoneInfo

    from gateway.store.postgres import PostgresStore

    url = pg_schema_url()
    g = GatewayProcess(url, tmp_path, extra_env={**FAST, **redis_env()}).start()
    rec = Receiver()
    tag = uuid.uuid4().hex[:10]

    async def scenario() -> None:
        store = PostgresStore(url, ZoneInfo("Europe/London"))
        await store.open()
        try:
            with httpx.Client(timeout=30) as sync_client:
                await asyncio.to_thread(create_active, sync_client, g.base,
                                        subscription(f"Patient?_tag={TAG_SYSTEM}|{tag}", rec.url, payload=None))
            async with httpx.AsyncClient(timeout=30) as client:
                async with store.session(write=True) as s:
                    early = (await s.create(patient(tag, gender="female"))).resource  # lower seq, commits last
                    later = (await client.post(f"{g.base}/Patient", json=patient(tag, gender="male"))).json()
                    await asyncio.to_thread(rec.wait_for, lambda rows: len(rows) == 2, 10)
                await asyncio.to_thread(rec.wait_for, lambda rows: len(rows) == 3, 10)
            async with store.session() as s:
                later_row = await s.read("Patient", later["id"])
            assert early.seq < later_row.seq  # the scenario really happened
            assert [r.focus.split("/")[1] for r in rec.notifications()] == [later["id"], early.id]
        finally:
            await store.close()

    try:
        asyncio.run(scenario())
    finally:
        g.stop()
        rec.close()
        asyncio.run(drop_pg_schema(url))


def test_serve_workers_runs_n_processes_that_share_delivery(backend, tmp_path):
    url = store_url(backend, tmp_path)
    g = GatewayProcess(url, tmp_path, extra_env={**FAST, **redis_env()}, args=["--workers", "2"]).start()
    rec = Receiver()
    tag = uuid.uuid4().hex[:10]
    try:
        with httpx.Client(timeout=30) as client:
            # each new connection may land on either worker; both must answer and both run the event service
            def two_nodes():
                seen = {status(g)["node"] for _ in range(20)}
                return seen if len(seen) == 2 else None

            nodes = wait_until(two_nodes, what="two worker processes")
            sid = create_active(client, g.base, subscription(f"Patient?_tag={TAG_SYSTEM}|{tag}", rec.url, payload=None))
            for _ in range(30):
                client.post(f"{g.base}/Patient", json=patient(tag))
            rec.wait_for(lambda rows: len([r for r in rows if not r.handshake]) >= 30)
            time.sleep(0.5)
            assert len(rec.notifications()) == 30
            by = {d["log"][0]["by"] for d in log_of(g, sid) if d["kind"] == "event"}
            assert by == nodes, (by, nodes)
    finally:
        g.stop()
        rec.close()
        if backend == "postgres":
            asyncio.run(drop_pg_schema(url))


def test_without_redis_a_killed_leader_is_replaced(cluster_in_process):
    """In-process bus, two processes on one store: one (the leader) delivers. SIGKILL it mid-work;
    the other takes the store's leader lock (released by the kernel / PostgreSQL with the process)
    and delivers everything still owed, from the delivery log."""
    a, b = cluster_in_process
    tag = uuid.uuid4().hex[:10]
    rec = Receiver(behaviour=lambda r: (200, 0 if r.handshake else 0.1))
    try:
        with httpx.Client(timeout=30) as client:
            sid = create_active(client, b.base, subscription(f"Patient?_tag={TAG_SYSTEM}|{tag}", rec.url, payload=None))
            leader, follower = (a, b) if status(a)["dispatching"] else (b, a)
            assert not status(follower)["dispatching"]
            ids = [client.post(f"{follower.base}/Patient", json=patient(tag)).json()["id"] for _ in range(30)]
            rec.wait_for(lambda rows: len(rows) >= 6)
            leader.stop(kill=True)
            wait_until(lambda: status(follower)["dispatching"], 10, what="the follower leads")
            rec.wait_for(lambda rows: {r.focus.split("/")[1] for r in rows if r.focus} >= set(ids), 30)
            events = Counter(r.event for r in rec.notifications())
            assert set(events) == {f"Subscription/{sid}#{n}" for n in range(1, 31)}
            assert sum(c - 1 for c in events.values()) <= 4  # at most the one in flight per lane
    finally:
        rec.close()


@pytest.fixture
def cluster_in_process(backend, tmp_path):
    url = store_url(backend, tmp_path)
    gws = [GatewayProcess(url, tmp_path, extra_env=FAST).start() for _ in range(2)]
    yield gws
    for g in gws:
        g.stop()
    if backend == "postgres":
        asyncio.run(drop_pg_schema(url))


def test_redis_lost_and_back_loses_nothing(backend, tmp_path):
    """Our own redis-server, without persistence: stop it while changes are being written and
    start it again empty. The API keeps working meanwhile, and every notification arrives: what was
    owed is in the delivery log, and `recover` republishes what the empty Redis does not hold."""
    import shutil
    import subprocess

    from conftest import free_port

    if not shutil.which("redis-server"):
        pytest.fail("redis-server is needed to start a private Redis for this test")
    port = free_port()

    def start_redis() -> subprocess.Popen:
        proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip()
                   == b"PONG", 10, what="redis-server up")
        return proc

    redis_proc = start_redis()
    url = store_url(backend, tmp_path)
    g = GatewayProcess(url, tmp_path, extra_env={**FAST, "GATEWAY_REDIS_URL": f"redis://127.0.0.1:{port}/0",
                                                 "GATEWAY_REDIS_PREFIX": "gw"}).start()
    rec = Receiver()
    tag = uuid.uuid4().hex[:10]
    try:
        with httpx.Client(timeout=30) as client:
            sid = create_active(client, g.base, subscription(f"Patient?_tag={TAG_SYSTEM}|{tag}", rec.url, payload=None))
            ids = [client.post(f"{g.base}/Patient", json=patient(tag)).json()["id"] for _ in range(5)]
            rec.wait_for(lambda rows: len(rows) == 6)
            redis_proc.terminate()
            redis_proc.wait(10)
            # Redis is gone: writes still commit (the outbox is in the store)
            ids += [client.post(f"{g.base}/Patient", json=patient(tag)).json()["id"] for _ in range(5)]
            time.sleep(1.0)
            redis_proc = start_redis()  # back, and empty
            ids += [client.post(f"{g.base}/Patient", json=patient(tag)).json()["id"] for _ in range(5)]
            rec.wait_for(lambda rows: {r.focus.split("/")[1] for r in rows if r.focus} >= set(ids), 40)
            events = Counter(r.event for r in rec.notifications())
            assert set(events) == {f"Subscription/{sid}#{n}" for n in range(1, 16)} and max(events.values()) == 1
    finally:
        g.stop()
        rec.close()
        redis_proc.terminate()
        redis_proc.wait(10)
        if backend == "postgres":
            asyncio.run(drop_pg_schema(url))
