"""Shared fixtures: a real `gateway serve` process per back end, reached over real HTTP.

PostgreSQL and Redis are required, not optional: if they are unreachable the tests fail, because
CI must prove both back ends. Each run uses its own PostgreSQL schema and is dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

PG_URL = os.environ.get("GATEWAY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GatewayProcess:
    """`gateway serve` in a subprocess, as an operator would run it."""

    def __init__(self, database_url: str, tmp: Path, extra_env: dict | None = None, args: list[str] | None = None):
        self.port = free_port()
        self.database_url = database_url
        self.tmp = tmp
        self.extra_env = extra_env or {}
        self.args = args or []
        self.proc: subprocess.Popen | None = None
        self.log = tmp / f"gateway-{self.port}.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def start(self, timeout: float = 30) -> "GatewayProcess":
        env = {**os.environ, "GATEWAY_DATABASE_URL": self.database_url, "GATEWAY_DATA_DIR": str(self.tmp),
               **self.extra_env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--port", str(self.port), *self.args],
            cwd=ROOT, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(self.base + "/metadata", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway did not start:\n{self.log.read_text()[-4000:]}")

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def pg_schema_url(prefix: str = "gwtest") -> str:
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={schema}"


async def drop_pg_schema(url: str) -> None:
    from gateway.store.postgres import drop_schema

    await drop_schema(url)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def gateway_server(request, tmp_path_factory):
    """A running gateway on each back end (tests using it run twice)."""
    tmp = tmp_path_factory.mktemp(f"gw-{request.param}")
    url = f"sqlite:///{tmp / 'gateway.db'}" if request.param == "sqlite" else pg_schema_url()
    server = GatewayProcess(url, tmp).start()
    server.backend = request.param
    yield server
    server.stop()
    if request.param == "postgres":
        asyncio.run(drop_pg_schema(url))


@pytest.fixture(scope="session")
def base(gateway_server) -> str:
    return gateway_server.base


@pytest.fixture
def http(base):
    with httpx.Client(base_url=base, timeout=30, headers={"Accept": "application/fhir+json"}) as c:
        yield c


@pytest.fixture
def fhir(base):
    from fhirpy import AsyncFHIRClient

    return AsyncFHIRClient(base, extra_headers={"Accept": "application/fhir+json"})


@pytest.fixture
def tag() -> str:
    """A unique value per test so tests sharing one server never see each other's data."""
    return uuid.uuid4().hex[:12]
