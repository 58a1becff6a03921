"""Fuzzing the HTTP API from its OpenAPI description (schemathesis), and hostile XML bodies.

The document is generated from the route table (gateway.security.openapi). Requests go to a real
`gateway serve` with auth on, as a partner whose view is filtered (so the scope checks and the
visibility filter are exercised too), and as an unauthenticated caller. Whatever is sent: no 5xx,
no stack trace or SQL in the body. Bounded: a few examples per operation, well under two minutes.
"""

from __future__ import annotations

import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from gateway.security.openapi import openapi_document
from test_security import World

EXAMPLES = 12
LEAKS = ("Traceback", "File \"", "SELECT ", "INSERT INTO", "sqlite3.", "asyncpg.")


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    w = World(tmp, f"sqlite:///{tmp / 'gateway.db'}")
    w.server.start()
    yield w
    w.server.stop()
    w.jwks_server.close()


def _operations():
    schema = schemathesis.openapi.from_dict(openapi_document())
    return [r.ok() for r in schema.get_all_operations()]


OPERATIONS = _operations()


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_no_server_errors(secured, operation):
    headers = {"Authorization": f"Bearer {secured.token('hospital')}", "Accept": "application/fhir+json"}
    failures: list[str] = []
    statuses: list[int] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case):
        for h in (headers, {}):
            resp = case.call(base_url=secured.origin, headers=h, timeout=30)
            text = resp.text
            statuses.append(resp.status_code)
            if resp.status_code >= 500 or any(leak in text for leak in LEAKS):
                failures.append(f"{case.method} {case.formatted_path} {case.query} -> {resp.status_code}: {text[:300]}")

    started = time.time()
    run()
    assert not failures, "\n".join(failures[:5])
    assert len(statuses) >= 2 and (401 in statuses or "metadata" in operation.label or "token" in operation.label)
    assert time.time() - started < 60


def test_hostile_xml_bodies_are_refused(secured):
    headers = {"Authorization": f"Bearer {secured.token('council')}", "Content-Type": "application/fhir+xml",
               "Accept": "application/fhir+json"}
    laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
              + b']><Patient xmlns="http://hl7.org/fhir"><name><family value="&lol9;"/></name></Patient>')
    external = (b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
                b'<Patient xmlns="http://hl7.org/fhir"><name><family value="&xxe;"/></name></Patient>')
    remote = (b'<?xml version="1.0"?><!DOCTYPE p SYSTEM "http://127.0.0.1:9/evil.dtd">'
              b'<Patient xmlns="http://hl7.org/fhir"/>')
    parameter = (b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY % x SYSTEM "http://127.0.0.1:9/x"> %x;]>'
                 b'<Patient xmlns="http://hl7.org/fhir"/>')
    for body in (laughs, external, remote, parameter):
        t0 = time.perf_counter()
        r = httpx.post(f"{secured.base}/Patient", content=body, headers=headers, timeout=30)
        assert r.status_code == 400, r.text
        assert "root:" not in r.text and time.perf_counter() - t0 < 5
    deep = b'<Patient xmlns="http://hl7.org/fhir">' + b"<contact>" * 5000 + b"</contact>" * 5000 + b"</Patient>"
    r = httpx.post(f"{secured.base}/Patient", content=deep, headers=headers, timeout=30)
    assert r.status_code == 400


def test_deep_json_at_every_entry_point(secured):
    token = secured.token("council")
    deep = b'{"resourceType":"Patient","a":' + b"[" * 3000 + b"]" * 3000 + b"}"
    for method, path, ctype in (("POST", "/Patient", "application/fhir+json"), ("PUT", "/Patient/x", "application/fhir+json"),
                                ("PATCH", "/Patient/x", "application/json-patch+json"), ("POST", "", "application/fhir+json")):
        r = httpx.request(method, secured.base + path, content=deep, timeout=30,
                          headers={"Authorization": f"Bearer {token}", "Content-Type": ctype})
        assert r.status_code == 400, (method, path, r.status_code, r.text[:200])
