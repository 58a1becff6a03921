"""Subscription notifications: how soon a partner hears of a change, and how many a second.

    python bench/bench_events.py            # PostgreSQL (127.0.0.1:5432/test) and Redis (127.0.0.1:6379)
    python bench/bench_events.py --quick    # shorter runs

1. Bare Redis stream round trip on this machine: XADD by a producer, XREADGROUP (blocked) and
   XACK by a consumer on another connection; latency at 200 messages/s and the streaming ceiling.
2. Notification latency, commit -> receiver, at 200 changes/s: one `gateway serve` (PostgreSQL,
   Redis bus, then the in-process bus), a classic rest-hook subscription with the full resource,
   a receiver in its own process. Latency = arrival at the receiver - meta.lastUpdated (the
   server's timestamp of the write, taken just before its commit; millisecond resolution).
3. Sustained deliveries/s with two gateway processes sharing PostgreSQL and Redis: four
   subscriptions (no payload: an empty POST naming the focus) and a backlog written by
   transaction Bundles; rate = notifications received / (last arrival - first arrival).

Everything runs on one machine (gateways, PostgreSQL, Redis, receiver, load driver) and nothing is
pinned to a core, so the figures are what this box does with all of it at once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Server, free_port, table  # noqa: E402

PG_URL = os.environ.get("GATEWAY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS", "redis://127.0.0.1:6379/0")
TAG = "https://fhir.activerecovery.example/bench"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


# -- the receiver (a partner system), run as `bench_events.py --receiver PORT` ----------------------
def run_receiver(port: int) -> None:
    from aiohttp import web

    seen: list = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        updated = None
        if body:
            meta = orjson.loads(body).get("meta", {})
            if meta.get("lastUpdated"):
                updated = datetime.fromisoformat(meta["lastUpdated"]).timestamp()
        seen.append((now, request.headers.get("X-Gateway-Event"), request.headers.get("X-Gateway-Focus"), updated))
        return web.Response(status=200)

    async def stats(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(seen), content_type="application/json")

    async def reset(request: web.Request) -> web.Response:
        seen.clear()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    app.router.add_route("*", "/{tail:.*}", hook)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def receiver() -> Server:
    port = free_port()
    return Server([sys.executable, str(Path(__file__).resolve()), "--receiver", str(port)], port, "/stats",
                  cpu=None, name="receiver")


# -- helpers --------------------------------------------------------------------------------------
def schema_url() -> tuple[str, str]:
    schema = f"bench_events_{uuid.uuid4().hex[:8]}"
    return f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}", schema


def drop_schema(schema: str) -> None:
    from gateway.store import postgres

    asyncio.run(postgres.drop_schema(f"{PG_URL.split('?')[0]}?schema={schema}"))


def drop_keys(prefix: str) -> None:
    """Remove a run's Redis keys (streams, leases, counters) once it is over."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()


def gateway(url: str, env: dict) -> Server:
    """`gateway serve` as an operator runs it, not pinned to a core (see the docstring)."""
    port = free_port()
    exe = shutil.which("gateway") or str(Path(sys.executable).with_name("gateway"))
    args = [exe, "serve", "--port", str(port), "--database-url", url, "--log-level", "warning"]
    return Server(args, port, "/fhir/metadata", env=env, cpu=None, timeout=120, name="gateway")


def subscribe(base: str, endpoint: str, run: str, payload: bool) -> str:
    channel = {"type": "rest-hook", "endpoint": endpoint, **({"payload": "application/fhir+json"} if payload else {})}
    sub = {"resourceType": "Subscription", "status": "requested", "reason": "bench", "channel": channel,
           "criteria": f"Patient?_tag={TAG}|{run}"}
    sid = httpx.post(f"{base}/Subscription", json=sub, timeout=30).json()["id"]
    deadline = time.time() + 30
    while time.time() < deadline:
        if httpx.get(f"{base}/Subscription/{sid}", timeout=30).json()["status"] == "active":
            return sid
        time.sleep(0.1)
    raise RuntimeError("subscription never became active")


def patient(run: str, n: int) -> dict:
    return {"resourceType": "Patient", "meta": {"tag": [{"system": TAG, "code": run}]},
            "name": [{"family": f"Bench{n}"}], "birthDate": "1941-03-02"}


def received(rec: Server) -> list:
    return httpx.get(rec.base + "/stats", timeout=30).json()


# -- 1. Redis -------------------------------------------------------------------------------------
async def redis_roundtrip(rate: int, seconds: float, burst: int) -> dict:
    import redis.asyncio as aioredis

    prod, cons = aioredis.from_url(REDIS_URL), aioredis.from_url(REDIS_URL)
    key = f"bench-events-{uuid.uuid4().hex[:8]}"
    await cons.xgroup_create(key, "g", id="0", mkstream=True)
    lat: list[float] = []
    done = asyncio.Event()
    total = int(rate * seconds)

    async def consume(expect: int, sink: list | None) -> None:
        got = 0
        while got < expect:
            res = await cons.xreadgroup("g", "c", {key: ">"}, count=100, block=1000)
            for _, entries in res or []:
                now = time.perf_counter()
                await cons.xack(key, "g", *[e[0] for e in entries])
                for _, fields in entries:
                    if sink is not None:
                        sink.append(now - float(fields[b"t"]))
                got += len(entries)
        done.set()

    try:
        task = asyncio.create_task(consume(total, lat))
        t0 = time.perf_counter()
        for i in range(total):
            wait = t0 + i / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            await prod.xadd(key, {"t": repr(time.perf_counter())})
        await asyncio.wait_for(task, 30)
        # ceiling: pipelined producer, one consumer reading 100 at a time and acknowledging them
        task = asyncio.create_task(consume(burst, None))
        t1 = time.perf_counter()
        for i in range(0, burst, 100):
            async with prod.pipeline(transaction=False) as p:
                for _ in range(min(100, burst - i)):
                    p.xadd(key, {"t": "0"})
                await p.execute()
        await asyncio.wait_for(task, 60)
        ceiling = burst / (time.perf_counter() - t1)
    finally:
        await prod.delete(key)
        await prod.aclose()
        await cons.aclose()
    return {"p50": pct(lat, 50) * 1000, "p99": pct(lat, 99) * 1000, "max": max(lat) * 1000, "n": len(lat),
            "ceiling": ceiling}


# -- 2. latency at a steady rate ------------------------------------------------------------------
async def drive(bases: list[str], run: str, rate: int, seconds: float) -> tuple[int, list[float]]:
    total = int(rate * seconds)
    gate = asyncio.Semaphore(64)
    rtts: list[float] = []
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as client:
        async def one(i: int) -> None:
            async with gate:
                t = time.perf_counter()
                for attempt in range(3):  # a keep-alive connection closed under us is not the gateway's fault
                    try:
                        r = await client.post(f"{bases[i % len(bases)]}/Patient", json=patient(run, i))
                        break
                    except httpx.TransportError:
                        if attempt == 2:
                            raise
                r.raise_for_status()
                rtts.append(time.perf_counter() - t)

        tasks = []
        t0 = time.perf_counter()
        for i in range(total):
            wait = t0 + i / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        achieved = total / (time.perf_counter() - t0)
    return int(achieved), rtts


def store_url(store: str) -> tuple[str, str | None]:
    if store == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp(prefix='bench-events-')}/gateway.db", None
    return schema_url()


def latency_run(bus: str, rate: int, seconds: float, store: str = "postgres") -> dict:
    url, schema = store_url(store)
    run = uuid.uuid4().hex[:8]
    env = {"GATEWAY_LOG_LEVEL": "warning"}
    if bus == "redis":
        env.update(GATEWAY_REDIS_URL=REDIS_URL, GATEWAY_REDIS_PREFIX=f"bench-{run}")
    try:
        with receiver() as rec, gateway(url, env) as gw:
            base = gw.base + "/fhir"
            subscribe(base, rec.base + "/hook", run, payload=True)
            asyncio.run(drive([base], run, rate, 2))  # warm-up
            deadline = time.time() + 30
            while len(received(rec)) < rate * 2 + 1 and time.time() < deadline:
                time.sleep(0.2)
            httpx.post(rec.base + "/reset", timeout=10)
            achieved, rtts = asyncio.run(drive([base], run, rate, seconds))
            want = int(rate * seconds)
            deadline = time.time() + 60
            while len(got := received(rec)) < want and time.time() < deadline:
                time.sleep(0.2)
        lat = [(t - updated) * 1000 for t, _, _, updated in got if updated]
        return {"bus": bus, "rate": achieved, "n": len(lat), "want": want, "p50": pct(lat, 50), "p99": pct(lat, 99),
                "max": max(lat), "write_p50": pct(rtts, 50) * 1000}
    finally:
        if schema:
            drop_schema(schema)
        drop_keys(f"bench-{run}")


# -- 3. sustained deliveries with two processes ---------------------------------------------------
def throughput_run(writes: int, subscriptions: int, store: str = "postgres") -> dict:
    url, schema = store_url(store)
    run = uuid.uuid4().hex[:8]
    env = {"GATEWAY_LOG_LEVEL": "warning", "GATEWAY_REDIS_URL": REDIS_URL, "GATEWAY_REDIS_PREFIX": f"bench-{run}",
           "GATEWAY_EVENTS_LEASE_MS": "3000"}
    try:
        with receiver() as rec, gateway(url, env) as a, gateway(url, env) as b:
            bases = [a.base + "/fhir", b.base + "/fhir"]
            for _ in range(subscriptions):
                subscribe(bases[0], rec.base + "/hook", run, payload=False)
            lanes = subscriptions * 4
            deadline = time.time() + 30
            while time.time() < deadline:
                owned = [len(httpx.get(g.base + "/events", timeout=10).json().get("lanes", [])) for g in (a, b)]
                if sum(owned) == lanes and min(owned) >= lanes // 2 - 1:
                    break
                time.sleep(0.2)
            httpx.post(rec.base + "/reset", timeout=10)

            async def backlog() -> float:
                async with httpx.AsyncClient(timeout=60) as client:
                    async def bundle(k: int) -> None:
                        entries = [{"resource": patient(run, k * 100 + j), "request": {"method": "POST", "url": "Patient"}}
                                   for j in range(100)]
                        r = await client.post(bases[k % 2], json={"resourceType": "Bundle", "type": "transaction",
                                                                  "entry": entries})
                        r.raise_for_status()
                    t0 = time.perf_counter()
                    gate = asyncio.Semaphore(4)

                    async def gated(k: int) -> None:
                        async with gate:
                            await bundle(k)
                    await asyncio.gather(*[gated(k) for k in range(writes // 100)])
                    return time.perf_counter() - t0

            write_s = asyncio.run(backlog())
            want = (writes // 100) * 100 * subscriptions
            deadline = time.time() + 300
            while len(got := received(rec)) < want and time.time() < deadline:
                time.sleep(0.5)
            events = [e for _, e, _, _ in got]
        arrivals = sorted(t for t, _, _, _ in got)
        span = arrivals[-1] - arrivals[0]
        return {"writes": (writes // 100) * 100, "write_rate": (writes // 100) * 100 / write_s, "want": want,
                "got": len(got), "distinct": len(set(events)), "rate": len(got) / span if span else float("nan")}
    finally:
        if schema:
            drop_schema(schema)
        drop_keys(f"bench-{run}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="short runs (a smoke test of the benchmark)")
    ap.add_argument("--rate", type=int, default=200, help="changes per second in the latency run")
    ap.add_argument("--store", choices=["postgres", "sqlite"], default="postgres",
                    help="the gateways' store (PostgreSQL at 127.0.0.1:5432/test, or a SQLite file)")
    args = ap.parse_args()
    if args.receiver:
        return run_receiver(args.receiver)
    seconds = 5 if args.quick else 30
    writes = 1000 if args.quick else 4000
    print(f"bench_events: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}")

    r = asyncio.run(redis_roundtrip(args.rate, seconds, 20_000 if args.quick else 100_000))
    print("\n1. Redis stream round trip (XADD -> XREADGROUP -> XACK), same machine")
    print(table(["what", "p50 ms", "p99 ms", "max ms", "n"],
                [[f"one message at a time, {args.rate}/s", r["p50"], r["p99"], r["max"], r["n"]]]))
    print(f"ceiling: {r['ceiling']:.0f} messages/s (pipelined XADD, XREADGROUP COUNT 100 + XACK)")

    rows = []
    for bus in ("redis", "in-process"):
        x = latency_run(bus, args.rate, seconds, args.store)
        rows.append([f"{bus} bus", x["rate"], f"{x['n']}/{x['want']}", x["p50"], x["p99"], x["max"], x["write_p50"]])
    print(f"\n2. Notification latency, commit -> receiver, {args.rate} changes/s for {seconds}s, one gateway, {args.store}")
    print(table(["bus", "changes/s", "notified", "p50 ms", "p99 ms", "max ms", "write p50 ms"], rows))

    t = throughput_run(writes, 4, args.store)
    print(f"\n3. Sustained deliveries, two gateway processes ({args.store} + Redis), 4 subscriptions, no payload")
    print(table(["changes", "written/s", "notifications", "distinct", "deliveries/s"],
                [[t["writes"], t["write_rate"], f"{t['got']}/{t['want']}", t["distinct"], t["rate"]]]))


if __name__ == "__main__":
    main()
