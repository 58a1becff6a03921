"""End-to-end ADT ingest over MLLP: messages/s with N connections, ACK after durable commit.

Printed beside two ceilings measured in the same run: parse-only (the ER7 parser on the same
messages) and store-only (the same resources written straight through the store, no HL7).

    python bench/bench_mllp.py [--messages 3000] [--connections 8] [--database-url URL] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import drop_pg_schemas  # noqa: E402
from hl7_helpers import admit  # noqa: E402


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def drive(port: int, messages: list[bytes], connections: int) -> float:
    chunks = [messages[i::connections] for i in range(connections)]

    async def one(chunk):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for m in chunk:
            writer.write(b"\x0b" + m + b"\x1c\x0d")
            await writer.drain()
            ack = await reader.readuntil(b"\x1c\x0d")
            assert b"MSA|AA" in ack, ack
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*[one(c) for c in chunks])
    return time.perf_counter() - t0


def parse_ceiling(messages: list[bytes]) -> float:
    from gateway.adapters.hl7v2.er7 import parse_message

    t0 = time.perf_counter()
    for m in messages:
        msg = parse_message(m)
        pid = msg.segment("PID")
        pid.get(3), pid.get(5), pid.get(7), msg.segment("PV1").get(19)
    return len(messages) / (time.perf_counter() - t0)


async def store_ceiling(messages: list[bytes], url: str, connections: int) -> float:
    """The Patient + Encounter + Provenance each message produces, one write session per message,
    `connections` writers at once (as the end-to-end run has), so group commit applies to both."""
    from gateway.config import load_settings
    from gateway.store import open_store

    store = open_store(load_settings(database_url=url))
    await store.open()
    n = len(messages)

    async def one(i: int) -> None:
        async with store.session(write=True) as s:
            p = await s.create({"resourceType": "Patient", "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": str(i)}],
                                "name": [{"family": f"TESTER{i}", "given": ["ALICE"]}], "birthDate": "1940-01-01", "gender": "female"})
            e = await s.create({"resourceType": "Encounter", "status": "in-progress", "class": {"code": "IMP"},
                                "identifier": [{"system": "x", "value": f"SP{i}"}],
                                "subject": {"reference": f"Patient/{p.resource.id}"}, "period": {"start": "2026-04-01T08:15:00+01:00"}})
            await s.create({"resourceType": "Provenance", "target": [{"reference": f"Patient/{p.resource.id}"}, {"reference": f"Encounter/{e.resource.id}"}],
                            "recorded": "2026-04-01T08:15:00+01:00", "agent": [{"who": {"display": "PAS"}}]})

    async def lane(k: int) -> None:
        for i in range(k, n, connections):
            await one(i)

    t0 = time.perf_counter()
    await asyncio.gather(*[lane(k) for k in range(connections)])
    rate = n / (time.perf_counter() - t0)
    await store.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--workers", type=int, default=1, help="gateway processes sharing the MLLP port")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-mllp-"))
    url = args.database_url or f"sqlite:///{tmp / 'gw.db'}"
    store_url = args.database_url.replace("schema=", "schema=store_") if args.database_url else f"sqlite:///{tmp / 'store.db'}"
    asyncio.run(drop_pg_schemas([url, store_url]))  # a kept schema would answer every message as a re-send
    http_port, mllp_port = free_port(), free_port()
    env = {**os.environ, "GATEWAY_DATABASE_URL": url, "GATEWAY_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--port", str(http_port), "--mllp-port", str(mllp_port),
                             "--workers", str(args.workers)], cwd=ROOT, env=env)
    try:
        import httpx

        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/fhir/metadata").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        msgs = [admit(i, control=f"B{i}") for i in range(args.messages)]
        asyncio.run(drive(mllp_port, [admit(10**7 + i, control=f"W{i}") for i in range(200)], args.connections))  # warm-up
        elapsed = asyncio.run(drive(mllp_port, msgs, args.connections))
    finally:
        proc.terminate()
        proc.wait()
    e2e = args.messages / elapsed
    parse = parse_ceiling(msgs)
    store = asyncio.run(store_ceiling(msgs[: min(2000, len(msgs))], store_url, args.connections))
    backend = "postgres" if url.startswith("postgres") else "sqlite"
    print(f"backend={backend} messages={args.messages} connections={args.connections} workers={args.workers}")
    print(f"{'end-to-end MLLP ingest':32s} {e2e:10.0f} msg/s")
    print(f"{'ceiling: parse only':32s} {parse:10.0f} msg/s   (e2e is {e2e / parse:.1%})")
    print(f"{'ceiling: store only (3 writes)':32s} {store:10.0f} msg/s   (e2e is {e2e / store:.1%})")
    asyncio.run(drop_pg_schemas([url, store_url]))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
