"""FHIR R4 Subscriptions end to end: a real gateway process, real partner receivers on loopback.

Every test runs on SQLite and PostgreSQL, and on both event buses (in-process and Redis), since
the outbox, the delivery log and the bus each differ between them.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from conftest import GatewayProcess, drop_pg_schema, pg_schema_url
from gateway.events.signing import verify
from test_events_support import FAST, Receiver, create_active, redis_env, subscription, wait_until

TAG_SYSTEM = "https://fhir.activerecovery.example/test-run"
PATHWAY = "https://fhir.activerecovery.example/CodeSystem/active-recovery-pathway"
TOPIC = "https://fhir.activerecovery.example/SubscriptionTopic/discharge-to-active-recovery"
ATTEMPTS = 8  # with 100 ms doubling to 800 ms: 2-4 s of retries before a dead letter
SETTINGS = {**FAST, "GATEWAY_DELIVERY_MAX_ATTEMPTS": str(ATTEMPTS), "GATEWAY_DELIVERY_BACKOFF_MS": "100",
            "GATEWAY_DELIVERY_BACKOFF_MAX_MS": "800"}


@pytest.fixture(scope="module", params=[("sqlite", "in-process"), ("sqlite", "redis"),
                                        ("postgres", "in-process"), ("postgres", "redis")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def gw(request, tmp_path_factory):
    backend, bus = request.param
    tmp = tmp_path_factory.mktemp(f"subs-{backend}-{bus}")
    url = f"sqlite:///{tmp / 'gateway.db'}" if backend == "sqlite" else pg_schema_url()
    env = dict(SETTINGS)
    if bus == "redis":
        env.update(redis_env())
    server = GatewayProcess(url, tmp, extra_env=env).start()
    server.bus = bus
    yield server
    server.stop()
    if backend == "postgres":
        asyncio.run(drop_pg_schema(url))


@pytest.fixture
def client():
    with httpx.Client(timeout=30, headers={"Accept": "application/fhir+json"}) as c:
        yield c


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:12]


def tagged(resource: dict, tag: str) -> dict:
    return {**resource, "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag}]}}


def deliveries(gw, client, sid: str, status: str | None = None) -> dict:
    params = {"status": status} if status else {}
    r = client.get(f"http://127.0.0.1:{gw.port}/subscriptions/{sid}/deliveries", params=params)
    assert r.status_code == 200, r.text
    return r.json()


# -- activation -----------------------------------------------------------------------------------
def test_handshake_activates_and_notifications_are_signed_full_resources(gw, client, receiver, tag):
    secret = "partner-secret-" + tag
    sub = subscription(f"Patient?_tag={TAG_SYSTEM}|{tag}", receiver.url, secret=secret,
                       headers=["Authorization: Bearer council-token"])
    sid = create_active(client, gw.base, sub)
    [hello] = receiver.snapshot()
    assert hello.handshake and hello.method == "POST" and hello.path == "/hook" and hello.body == b""
    assert hello.headers["authorization"] == "Bearer council-token"
    assert verify(secret, hello.headers["x-gateway-signature"], b"")
    assert client.get(f"{gw.base}/Subscription/{sid}").json().get("error") is None

    created = client.post(f"{gw.base}/Patient", json=tagged({"resourceType": "Patient", "name": [{"family": "Ash"}]}, tag)).json()
    rows = receiver.wait_for(lambda rows: len(rows) == 2)
    note = rows[1]
    assert note.method == "PUT" and note.path == f"/hook/Patient/{created['id']}"
    assert note.headers["content-type"].startswith("application/fhir+json")
    assert note.headers["authorization"] == "Bearer council-token"
    assert note.event == f"Subscription/{sid}#1"
    assert note.focus == f"Patient/{created['id']}/_history/1"
    assert note.json() == created  # the version that changed, byte for byte what a read returns
    assert verify(secret, note.headers["x-gateway-signature"], note.body)
    assert not verify("another-secret", note.headers["x-gateway-signature"], note.body)
    assert not verify(secret, note.headers["x-gateway-signature"], note.body + b" ")

    log = wait_until(lambda: (x := deliveries(gw, client, sid))["counts"] == {"delivered": 2} and x,
                     what="both recorded as delivered")
    event = log["deliveries"][0]
    assert event["kind"] == "event" and event["eventNumber"] == 1 and event["attempts"] == 1
    assert event["log"][0]["status"] == 200


def test_no_payload_is_an_empty_post_naming_the_focus(gw, client, receiver, tag):
    sid = create_active(client, gw.base, subscription(f"Patient?_tag={TAG_SYSTEM}|{tag}", receiver.url, payload=None))
    created = client.post(f"{gw.base}/Patient", json=tagged({"resourceType": "Patient"}, tag)).json()
    note = receiver.wait_for(lambda rows: len(rows) == 2)[1]
    assert note.method == "POST" and note.path == "/hook" and note.body == b""
    assert note.focus == f"Patient/{created['id']}/_history/1" and note.event == f"Subscription/{sid}#1"
    assert "x-gateway-signature" not in note.headers  # no secret, no signature


def test_xml_payload(gw, client, receiver, tag):
    create_active(client, gw.base, subscription(f"Patient?_tag={TAG_SYSTEM}|{tag}", receiver.url,
                                                payload="application/fhir+xml"))
    client.post(f"{gw.base}/Patient", json=tagged({"resourceType": "Patient", "gender": "female"}, tag))
    note = receiver.wait_for(lambda rows: len(rows) == 2)[1]
    assert note.headers["content-type"].startswith("application/fhir+xml")
    assert b'<Patient xmlns="http://hl7.org/fhir">' in note.body and b'<gender value="female"/>' in note.body


def test_failed_handshake_puts_the_subscription_in_error(gw, client, receiver, tag):
    receiver.status = 500
    r = client.post(f"{gw.base}/Subscription", json=subscription(f"Patient?_tag={TAG_SYSTEM}|{tag}", receiver.url))
    sid = r.json()["id"]
    sub = wait_until(lambda: (s := client.get(f"{gw.base}/Subscription/{sid}").json())["status"] == "error" and s,
                     what="status error")
    assert "HTTP 500" in sub["error"]
    assert len(receiver.snapshot()) == 1  # one handshake, no retries
    client.post(f"{gw.base}/Patient", json=tagged({"resourceType": "Patient"}, tag))
    time.sleep(0.8)
    assert len(receiver.snapshot()) == 1  # nothing is sent to a subscription in error

    # Asking again (status requested) re-runs the handshake; the receiver is fine now.
    receiver.status = 200
    sub["status"] = "requested"
    sub.pop("error")
    assert client.put(f"{gw.base}/Subscription/{sid}", json=sub).status_code == 200
    wait_until(lambda: client.get(f"{gw.base}/Subscription/{sid}").json()["status"] == "active", what="active")
    assert "error" not in client.get(f"{gw.base}/Subscription/{sid}").json()


def test_unreachable_endpoint_and_bad_criteria_are_errors(gw, client, receiver, tag):
    from conftest import free_port

    dead = client.post(f"{gw.base}/Subscription", json=subscription(
        f"Patient?_tag={TAG_SYSTEM}|{tag}", f"http://127.0.0.1:{free_port()}/nobody")).json()["id"]
    bad = client.post(f"{gw.base}/Subscription", json=subscription(
        "Patient?no-such-parameter=1", receiver.url)).json()["id"]
    unknown_topic = client.post(f"{gw.base}/Subscription", json=subscription(
        "https://example.org/SubscriptionTopic/nope", receiver.url)).json()["id"]
    for sid, words in ((dead, "ConnectError"), (bad, "no-such-parameter"), (unknown_topic, "not offered")):
        sub = wait_until(lambda: (s := client.get(f"{gw.base}/Subscription/{sid}").json())["status"] != "requested"
                         and s, what=f"{sid} settled")
        assert sub["status"] == "error" and words in sub["error"], sub
    assert receiver.snapshot() == []  # a criteria the API would reject never gets a handshake


def test_off_and_deleted_subscriptions_get_nothing_more(gw, client, receiver, tag):
    sid = create_active(client, gw.base, subscription(f"Patient?_tag={TAG_SYSTEM}|{tag}", receiver.url))
    client.post(f"{gw.base}/Patient", json=tagged({"resourceType": "Patient"}, tag))
    receiver.wait_for(lambda rows: len(rows) == 2)
    sub = client.get(f"{gw.base}/Subscription/{sid}").json()
    sub["status"] = "off"
    client.put(f"{gw.base}/Subscription/{sid}", json=sub)
    client.post(f"{gw.base}/Patient", json=tagged({"resourceType": "Patient"}, tag))
    time.sleep(1.0)
    assert len(receiver.snapshot()) == 2
    assert client.delete(f"{gw.base}/Subscription/{sid}").status_code in (200, 204)
    assert client.get(f"http://127.0.0.1:{gw.port}/subscriptions/{sid}/deliveries").status_code == 200


def test_switching_off_stops_retries(gw, client, tag):
    rec = Receiver(behaviour=lambda r: (200 if r.handshake else 500, 0))
    try:
        sid = create_active(client, gw.base, subscription(f"Patient?_tag={TAG_SYSTEM}|{tag}", rec.url, payload=None))
        client.post(f"{gw.base}/Patient", json=tagged({"resourceType": "Patient"}, tag))
        rec.wait_for(lambda rows: len(rows) >= 3)  # the handshake and two failed attempts
        sub = client.get(f"{gw.base}/Subscription/{sid}").json()
        assert client.put(f"{gw.base}/Subscription/{sid}", json={**sub, "status": "off"}).status_code == 200
        wait_until(lambda: deliveries(gw, client, sid)["counts"].get("cancelled") == 1, what="cancelled")
        seen = len(rec.snapshot())
        time.sleep(1.5)  # retries were 100-800 ms apart: another would have come by now
        assert len(rec.snapshot()) <= seen + 1 and len(rec.snapshot()) < ATTEMPTS + 1
    finally:
        rec.close()


# -- criteria: the REST search engine decides ------------------------------------------------------
def test_criteria_use_the_search_engine(gw, client, tag):
    """One subscription per search feature; each must be told about exactly the resources that a
    search with the same criteria finds."""
    t = f"_tag={TAG_SYSTEM}|{tag}"
    post = lambda res: client.post(f"{gw.base}/{res['resourceType']}", json=tagged(res, tag)).json()  # noqa: E731
    ward = post({"resourceType": "Organization", "name": f"Ward {tag}"})
    criteria = {
        "string": f"Patient?{t}&family=asbj",  # starts-with, accent-insensitive
        "exact": f"Patient?{t}&family:exact=Ásbjørnsen",
        "token": f"Patient?{t}&identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919",
        "token-not": f"Patient?{t}&gender:not=male",
        "date": f"Patient?{t}&birthdate=ge1940-01-01&birthdate=lt1950",
        "missing": f"Patient?{t}&birthdate:missing=true",
        "or": f"Patient?{t}&family=smith,jones",
        "reference": f"Patient?{t}&organization=Organization/{ward['id']}",
        "chain": f"Encounter?{t}&status=in-progress&subject:Patient.family=asbj",
        "has": f"Patient?{t}&_has:Encounter:subject:status=finished",
        "postcode": f"Patient?{t}&address-postalcode=LS11AA",
    }
    receivers = {name: Receiver() for name in criteria}
    try:
        subs = {name: create_active(client, gw.base, subscription(c, receivers[name].url))
                for name, c in criteria.items()}
        nhs = {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}
        # Criteria that look at other resources (_has, chains) see them as they are when the change
        # is dispatched, so the Encounter that _has needs exists before the Patient is written.
        pid = f"asb-{tag}"
        enc = post({"resourceType": "Encounter", "status": "finished", "class": {"code": "IMP"},
                    "subject": {"reference": f"Patient/{pid}"}})
        asb_body = tagged({"resourceType": "Patient", "id": pid, "name": [{"family": "Ásbjørnsen"}], "gender": "female",
                           "birthDate": "1941-03-02", "identifier": [nhs],
                           "managingOrganization": {"reference": f"Organization/{ward['id']}"},
                           "address": [{"postalCode": "LS1 1AA"}]}, tag)
        asb = client.put(f"{gw.base}/Patient/{pid}", json=asb_body).json()
        smith = post({"resourceType": "Patient", "name": [{"family": "Smith"}], "gender": "male", "birthDate": "1960"})
        jones = post({"resourceType": "Patient", "name": [{"family": "Jones"}]})
        asbury = post({"resourceType": "Patient", "name": [{"family": "Asbury"}], "gender": "male", "birthDate": "1949-12-31"})
        visit = post({"resourceType": "Encounter", "status": "in-progress", "class": {"code": "IMP"},
                      "subject": {"reference": f"Patient/{pid}"}})
        asb2 = client.put(f"{gw.base}/Patient/{pid}", json={**asb_body, "active": True}).json()
        want = {
            "string": {(pid, 1), (pid, 2)},  # not Asbury: "asbj" is a prefix of Ásbjørnsen only
            "exact": {(pid, 1), (pid, 2)},
            "token": {(pid, 1), (pid, 2)},
            "token-not": {(pid, 1), (jones["id"], 1), (pid, 2)},
            "date": {(pid, 1), (asbury["id"], 1), (pid, 2)},
            "missing": {(jones["id"], 1)},
            "or": {(smith["id"], 1), (jones["id"], 1)},
            "reference": {(pid, 1), (pid, 2)},
            "chain": {(visit["id"], 1)},
            "has": {(pid, 1), (pid, 2)},
            "postcode": {(pid, 1), (pid, 2)},
        }
        assert enc["status"] == "finished" and asb["meta"]["versionId"] == "1"
        assert asb2["meta"]["versionId"] == "2"
        for name, expected in want.items():
            try:
                receivers[name].wait_for(lambda rows: len([r for r in rows if not r.handshake]) >= len(expected), 20)
            except AssertionError as exc:
                raise AssertionError(f"{name}: {criteria[name]}: {exc}") from None
        time.sleep(0.5)  # anything extra would arrive now
        for name, expected in want.items():
            got = {(r.focus.split("/")[1], int(r.focus.rsplit("/", 1)[1])) for r in receivers[name].notifications()}
            assert got == expected, (name, criteria[name], got, expected)
            # ... and the REST search with the same criteria agrees on the current state
            rtype, _, query = criteria[name].partition("?")
            found = {e["resource"]["id"] for e in client.get(f"{gw.base}/{rtype}?{query}").json().get("entry", [])}
            assert found == {i for i, _ in expected}, (name, found)
        assert len(set(subs.values())) == len(criteria)
    finally:
        for rec in receivers.values():
            rec.close()


# -- reliability ------------------------------------------------------------------------------------
def test_receiver_down_then_back_gets_everything_in_order(gw, client, tag):
    down = {"until": float("inf")}
    rec = Receiver(behaviour=lambda r: (503 if time.time() < down["until"] and not r.handshake else 200, 0))
    try:
        sid = create_active(client, gw.base, subscription(f"Patient?_tag={TAG_SYSTEM}|{tag}", rec.url, payload=None))
        ids = [client.post(f"{gw.base}/Patient", json=tagged({"resourceType": "Patient"}, tag)).json()["id"]
               for _ in range(6)]
        for version in range(2, 5):
            for pid in ids:
                client.put(f"{gw.base}/Patient/{pid}", json=tagged({"resourceType": "Patient", "id": pid,
                                                                    "active": version % 2 == 0}, tag))
        down["until"] = time.time() + 0.5  # back half a second after the last change
        rec.wait_for(lambda rows: len([r for r in rows if 200 <= r.answered < 300 and not r.handshake]) >= 24, 30)
        assert any(r.answered == 503 for r in rec.snapshot()), "the receiver was never down?"
        accepted = rec.notifications()
        per_resource: dict[str, list[int]] = {}
        for r in accepted:
            per_resource.setdefault(r.focus.split("/")[1], []).append(int(r.focus.rsplit("/", 1)[1]))
        assert per_resource == {pid: [1, 2, 3, 4] for pid in ids}
        numbers = sorted(int(r.event.rsplit("#", 1)[1]) for r in accepted)
        assert numbers == list(range(1, 25))  # each event once
        # the partner has answered; the gateway records that a moment later
        log = wait_until(lambda: (x := deliveries(gw, client, sid))["counts"] == {"delivered": 25} and x,
                         what="all 25 recorded as delivered")
        assert log["eventsSinceSubscriptionStart"] == 24
        assert any(d["attempts"] > 1 for d in log["deliveries"])
    finally:
        rec.close()


def test_poisoned_receiver_dead_letters_and_resend_delivers(gw, client, tag):
    poisoned = set()
    rec = Receiver(behaviour=lambda r: (500 if r.focus and r.focus.split("/")[1] in poisoned else 200, 0))
    try:
        sid = create_active(client, gw.base, subscription(f"Patient?_tag={TAG_SYSTEM}|{tag}", rec.url, payload=None))
        # Poisoned before it exists (a client id, created by update): its notification may be
        # delivered before the create's response reaches this thread.
        bad = f"poisoned-{uuid.uuid4().hex}"
        poisoned.add(bad)
        r = client.put(f"{gw.base}/Patient/{bad}", json=tagged({"resourceType": "Patient", "id": bad}, tag))
        assert r.status_code == 201, r.text
        good = [client.post(f"{gw.base}/Patient", json=tagged({"resourceType": "Patient"}, tag)).json()["id"]
                for _ in range(8)]
        rec.wait_for(lambda rows: {r.focus.split("/")[1] for r in rows if r.answered == 200 and r.focus} >= set(good))
        dead = wait_until(lambda: deliveries(gw, client, sid, "dead")["deliveries"], what="a dead letter")
        assert [d["focus"] for d in dead] == [f"Patient/{bad}/_history/1"]
        assert dead[0]["attempts"] == ATTEMPTS and dead[0]["lastStatus"] == 500 and len(dead[0]["log"]) == ATTEMPTS
        assert len([r for r in rec.snapshot() if r.focus and bad in r.focus]) == ATTEMPTS
        assert client.get(f"{gw.base}/Subscription/{sid}").json()["status"] == "active"

        r = client.post(f"{gw.base}/Subscription/{sid}/$resend", params={"eventNumber": "999"})
        assert r.status_code == 422 and r.json()["resourceType"] == "OperationOutcome"
        poisoned.clear()
        r = client.post(f"{gw.base}/Subscription/{sid}/$resend", params={"eventNumber": dead[0]["eventNumber"]})
        assert r.status_code == 200, r.text
        assert r.json()["parameter"][0] == {"name": "resent", "valueInteger": 1}
        rec.wait_for(lambda rows: any(x.answered == 200 and x.focus and bad in x.focus for x in rows))
        wait_until(lambda: deliveries(gw, client, sid)["counts"] == {"delivered": 10}, what="all delivered")
        again = [d for d in deliveries(gw, client, sid)["deliveries"] if d["focus"].startswith(f"Patient/{bad}")][0]
        assert again["status"] == "delivered" and again["attempts"] == 1
        assert client.post(f"{gw.base}/Subscription/{sid}/$resend").json()["parameter"] == [
            {"name": "resent", "valueInteger": 0}]
    finally:
        rec.close()


def test_slow_receiver_never_blocks_another_subscription(gw, client, tag):
    slow = Receiver(behaviour=lambda r: (200, 0 if r.handshake else 5.0))  # beyond the 3 s call timeout
    fast = Receiver()
    try:
        slow_id = create_active(client, gw.base, subscription(f"Patient?_tag={TAG_SYSTEM}|{tag}", slow.url, payload=None))
        create_active(client, gw.base, subscription(f"Patient?_tag={TAG_SYSTEM}|{tag}", fast.url, payload=None))
        t0 = time.time()
        for _ in range(4):
            client.post(f"{gw.base}/Patient", json=tagged({"resourceType": "Patient"}, tag))
        fast.wait_for(lambda rows: len([r for r in rows if not r.handshake]) == 4, 10)
        assert time.time() - t0 < 2.5, "the fast partner waited for the slow one"
        log = wait_until(lambda: [d for d in deliveries(gw, client, slow_id)["deliveries"]
                                  if d["kind"] == "event" and d["attempts"] >= 1], 15, what="a timed-out attempt")
        assert "no answer within 3s" in log[0]["log"][0]["error"]
    finally:
        slow.close()
        fast.close()


# -- the R4 topic-based backport: discharge into Active Recovery --------------------------------------
def test_topic_discharge_into_active_recovery(gw, client, tag):
    full, ids_only = Receiver(), Receiver()
    try:
        council = client.post(f"{gw.base}/Organization", json={"resourceType": "Organization", "name": f"Council {tag}"}).json()
        other = client.post(f"{gw.base}/Organization", json={"resourceType": "Organization", "name": f"Trust {tag}"}).json()
        create_active(client, gw.base, subscription(
            TOPIC, full.url, content="full-resource", filters=[f"ServiceRequest?performer=Organization/{council['id']}"]))
        sid2 = create_active(client, gw.base, subscription(
            TOPIC, ids_only.url, content="id-only", filters=[f"ServiceRequest?_tag={TAG_SYSTEM}|{tag}"]))
        hello = full.snapshot()[0].json()
        assert hello["type"] == "history"
        status = {p["name"]: p for p in hello["entry"][0]["resource"]["parameter"]}
        assert status["type"]["valueCode"] == "handshake" and status["topic"]["valueCanonical"] == TOPIC

        def referral(performer: str, status: str) -> dict:
            return tagged({"resourceType": "ServiceRequest", "status": status, "intent": "order",
                           "category": [{"coding": [{"system": PATHWAY, "code": "home-reablement"}]}],
                           "subject": {"reference": "Patient/example"},
                           "performer": [{"reference": f"Organization/{performer}"}]}, tag)

        draft = client.post(f"{gw.base}/ServiceRequest", json=referral(council["id"], "draft")).json()
        active = client.put(f"{gw.base}/ServiceRequest/{draft['id']}", json={**draft, "status": "active"}).json()
        client.put(f"{gw.base}/ServiceRequest/{draft['id']}", json={**active, "note": [{"text": "still active"}]})
        elsewhere = client.post(f"{gw.base}/ServiceRequest", json=referral(other["id"], "active")).json()
        not_ar = client.post(f"{gw.base}/ServiceRequest", json={**referral(council["id"], "active"), "category": [
            {"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}]}]}).json()

        [note] = full.wait_for(lambda rows: len(rows) >= 2)[1:]
        bundle = note.json()
        assert note.method == "POST" and note.path == "/hook" and bundle["type"] == "history"
        params = bundle["entry"][0]["resource"]
        assert params["resourceType"] == "Parameters"
        assert "backport-subscription-status-r4" in params["meta"]["profile"][0]
        status = {p["name"]: p for p in params["parameter"]}
        assert status["type"]["valueCode"] == "event-notification"
        assert status["status"]["valueCode"] == "active"
        assert status["events-since-subscription-start"]["valueString"] == "1"
        event = {p["name"]: p for p in status["notification-event"]["part"]}
        assert event["event-number"]["valueString"] == "1"
        assert event["focus"]["valueReference"]["reference"].endswith(f"/ServiceRequest/{draft['id']}")
        focus = bundle["entry"][1]
        assert focus["resource"]["status"] == "active" and focus["resource"]["meta"]["versionId"] == "2"
        assert focus["request"] == {"method": "PUT", "url": f"ServiceRequest/{draft['id']}"}

        # id-only, no performer filter: both referrals that became active, not the non-Active-Recovery one
        ids_only.wait_for(lambda rows: len(rows) >= 3)
        time.sleep(0.5)
        notes = [r.json() for r in ids_only.snapshot()[1:]]
        focused = [n["entry"][1]["fullUrl"].rsplit("/", 1)[1] for n in notes]
        assert sorted(focused) == sorted([draft["id"], elsewhere["id"]]) and not_ar["id"] not in focused
        assert all("resource" not in n["entry"][1] for n in notes)
        numbers = sorted(int({p["name"]: p for p in n["entry"][0]["resource"]["parameter"]}
                             ["events-since-subscription-start"]["valueString"]) for n in notes)
        assert numbers == [1, 2]
        assert len(full.snapshot()) == 2  # the other performer's referral is filtered out

        st = client.get(f"{gw.base}/Subscription/{sid2}/$status").json()
        params = {p["name"]: p for p in st["entry"][0]["resource"]["parameter"]}
        assert params["type"]["valueCode"] == "query-status"
        assert params["events-since-subscription-start"]["valueString"] == "2"
        topics = client.get(f"http://127.0.0.1:{gw.port}/subscriptions/topics").json()["topics"]
        assert [t["url"] for t in topics] == [TOPIC]
    finally:
        full.close()
        ids_only.close()
