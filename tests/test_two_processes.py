"""Two gateway processes on one store: conditional creates from two clients stay duplicate-free."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from conftest import GatewayProcess, drop_pg_schema, pg_schema_url


@pytest.fixture(params=["sqlite", "postgres"])
def two_gateways(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}" if request.param == "sqlite" else pg_schema_url()
    a = GatewayProcess(url, tmp_path).start()
    b = GatewayProcess(url, tmp_path).start()
    yield a, b
    a.stop()
    b.stop()
    if request.param == "postgres":
        asyncio.run(drop_pg_schema(url))


async def test_conditional_create_race_across_processes(two_gateways):
    a, b = two_gateways
    rounds = 15
    async with httpx.AsyncClient(timeout=30) as client:
        for n in range(rounds):
            ident = f"https://fhir.example.org/Id/race|p{n}"
            body = {"resourceType": "Patient", "identifier": [{"system": "https://fhir.example.org/Id/race", "value": f"p{n}"}]}
            results = await asyncio.gather(*[
                client.post(f"{g.base}/Patient", json=body, headers={"If-None-Exist": f"identifier={ident}"})
                for g in (a, b, a, b)
            ])
            assert [r.status_code for r in results].count(201) == 1, [r.text for r in results]
        for n in range(rounds):
            found = await client.get(f"{a.base}/Patient", params={"identifier": f"https://fhir.example.org/Id/race|p{n}"})
            assert found.json()["total"] == 1


async def test_transactions_racing_on_a_conditional_create_reference_the_one_resource(two_gateways):
    """Transactions from two processes, each a conditional create of the same Patient and an
    Encounter pointing at it by fullUrl: one Patient, and every Encounter points at it (the id a
    transaction gives the fullUrl is the one its entry then writes, not one that never exists)."""
    a, b = two_gateways
    system = "https://fhir.example.org/Id/tx-race"
    async with httpx.AsyncClient(timeout=30) as client:
        for n in range(10):
            def bundle(k: int) -> dict:
                return {"resourceType": "Bundle", "type": "transaction", "entry": [
                    {"fullUrl": "urn:uuid:4b0c3a5e-7d0b-4a51-9d5c-000000000001",
                     "resource": {"resourceType": "Patient", "identifier": [{"system": system, "value": f"t{n}"}]},
                     "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={system}|t{n}"}},
                    {"resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "IMP"},
                                  "identifier": [{"system": system, "value": f"t{n}-{k}"}],
                                  "subject": {"reference": "urn:uuid:4b0c3a5e-7d0b-4a51-9d5c-000000000001"}},
                     "request": {"method": "POST", "url": "Encounter"}}]}
            results = await asyncio.gather(*[client.post(f"{g.base}/", json=bundle(k))
                                             for k, g in enumerate((a, b, a, b))])
            assert all(r.status_code == 200 for r in results), [r.text for r in results]
            patients = (await client.get(f"{a.base}/Patient", params={"identifier": f"{system}|t{n}"})).json()
            assert patients["total"] == 1
            pid = patients["entry"][0]["resource"]["id"]
            for k in range(4):
                enc = (await client.get(f"{b.base}/Encounter", params={"identifier": f"{system}|t{n}-{k}"})).json()
                assert enc["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{pid}"


async def test_transactions_naming_the_same_criteria_in_opposite_orders_both_commit(two_gateways):
    """Two conditional creates in one transaction, and the same two in the other order in another
    transaction sent at once to the other process: both commit (no deadlock between their locks)
    and each resource exists once."""
    a, b = two_gateways
    system = "https://fhir.example.org/Id/lock-order"

    def entry(value: str) -> dict:
        return {"resource": {"resourceType": "Patient", "identifier": [{"system": system, "value": value}]},
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={system}|{value}"}}

    async with httpx.AsyncClient(timeout=30) as client:
        for n in range(10):
            first, second = entry(f"x{n}"), entry(f"y{n}")
            results = await asyncio.gather(*[
                client.post(f"{g.base}/", json={"resourceType": "Bundle", "type": "transaction", "entry": pair})
                for g, pair in ((a, [first, second]), (b, [second, first]), (a, [second, first]), (b, [first, second]))])
            assert all(r.status_code == 200 for r in results), [r.text for r in results]
            for value in (f"x{n}", f"y{n}"):
                found = await client.get(f"{a.base}/Patient", params={"identifier": f"{system}|{value}"})
                assert found.json()["total"] == 1


async def test_transactions_updating_two_resources_in_opposite_orders_both_succeed(two_gateways):
    """Transactions updating the same two Patients in opposite orders, sent at once to two
    processes. On PostgreSQL they can deadlock on the resources' locks; the one PostgreSQL rolls
    back is run once more, so every client gets its transaction (never a 500)."""
    a, b = two_gateways
    async with httpx.AsyncClient(timeout=30) as client:
        ids = []
        for name in ("Ashworth", "Brierley"):
            r = await client.post(f"{a.base}/Patient", json={"resourceType": "Patient", "name": [{"family": name}]})
            ids.append(r.json()["id"])

        def bundle(order: list[str], given: str) -> dict:
            return {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": {"resourceType": "Patient", "id": pid, "name": [{"family": "X", "given": [given]}]},
                 "request": {"method": "PUT", "url": f"Patient/{pid}"}} for pid in order]}

        for n in range(4):
            results = await asyncio.gather(client.post(f"{a.base}/", json=bundle(ids, f"a{n}")),
                                           client.post(f"{b.base}/", json=bundle(ids[::-1], f"b{n}")))
            assert [r.status_code for r in results] == [200, 200], [r.text for r in results]
        for pid in ids:
            assert (await client.get(f"{a.base}/Patient/{pid}")).json()["meta"]["versionId"] == "9"


def test_total_is_capped_unless_accurate_is_asked(tmp_path):
    g = GatewayProcess(f"sqlite:///{tmp_path / 'cap.db'}", tmp_path, extra_env={"GATEWAY_SEARCH_TOTAL_CAP": "5"}).start()
    try:
        with httpx.Client(base_url=g.base, timeout=30) as c:
            for i in range(7):
                c.post("/Patient", json={"resourceType": "Patient", "gender": "female"})
            c.post("/Patient", json={"resourceType": "Patient", "gender": "male"})
            capped = c.get("/Patient", params={"gender": "female"}).json()
            assert "total" not in capped and len(capped["entry"]) == 7
            assert c.get("/Patient", params={"gender": "female", "_total": "accurate"}).json()["total"] == 7
            assert c.get("/Patient", params={"gender": "male"}).json()["total"] == 1
            assert c.get("/Patient", params={"gender": "female", "_summary": "count"}).json()["total"] == 7
    finally:
        g.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_workers_open_a_new_store_and_share_the_mllp_port(backend, tmp_path):
    """`gateway serve --workers 2 --mllp-port P` on a store that does not exist yet: both workers
    start (one used to fail: the MLLP port was taken, or SQLite's switch to WAL said "locked"), and
    messages over eight connections are each acknowledged and stored once."""
    import time

    from conftest import free_port
    from gateway.transport.mllp import mllp_exchange
    from hl7_helpers import admit

    url = f"sqlite:///{tmp_path / 'new.db'}" if backend == "sqlite" else pg_schema_url()
    port = free_port()
    g = GatewayProcess(url, tmp_path, args=["--workers", "2", "--mllp-port", str(port)]).start()
    try:
        deadline = time.time() + 30
        while g.log.read_text().count("Application startup complete") < 2:
            assert g.proc.poll() is None and time.time() < deadline, g.log.read_text()[-3000:]
            time.sleep(0.1)
        messages = [admit(8100 + i, control=f"WRK{i}") for i in range(24)]

        async def send_all():
            return await asyncio.gather(*[mllp_exchange("127.0.0.1", port, messages[k::8]) for k in range(8)])

        acks = [a for chunk in asyncio.run(send_all()) for a in chunk]
        assert len(acks) == 24 and all(b"MSA|AA|WRK" in a for a in acks), acks
        stored = httpx.get(g.base.replace("/fhir", "/inbox"), params={"status": "stored", "_count": 500}).json()
        assert sorted(e["controlId"] for e in stored["entries"]) == sorted(f"WRK{i}" for i in range(24))
        assert g.proc.poll() is None
    finally:
        g.stop()
        if backend == "postgres":
            asyncio.run(drop_pg_schema(url))
