"""Run FHIR R4 TestScript resources against any FHIR server over HTTP (httpx, nothing else).

A script's fixtures (contained, or files beside the script), setup, tests and teardown run in
order; operations build their request from the operation type, `resource`, `params`/`url`,
`sourceId` and `targetId`; variables (`${name}`) come from FHIRPath over a fixture or response,
from a response header, or from their default, and are substituted into URLs, params, headers,
assert values and fixture bodies. The first failing assert ends its test; a failing setup
skips the tests; teardown always runs.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import orjson

from gateway.conformance.fhirpath import evaluate
from gateway.conformance.fhirpath.values import to_string

from . import asserts
from .model import ActionResult, Exchange, Fixture, ScriptResult, TestResult

OPERATION_CODES = "http://terminology.hl7.org/CodeSystem/testscript-operation-codes"
_VAR = re.compile(r"\$\{([A-Za-z0-9_\-]+)\}")
_FORMATS = {"json": "application/fhir+json", "xml": "application/fhir+xml"}
# Operation types with no resource type in their URL
_SYSTEM_LEVEL = {"transaction", "batch", "capabilities", "history-system", "search-system"}


class ScriptError(Exception):
    """The script itself is unusable (a fixture file is missing, an operation cannot be built)."""


class TestScriptRunner:
    __test__ = False  # not a pytest class

    def __init__(self, base_url: str, client: httpx.Client | None = None, *,
                 validate: Callable[[Any, str], list] | None = None, variables: dict[str, str] | None = None,
                 timeout: float = 30.0) -> None:
        self.base = base_url.rstrip("/")
        self.client = client or httpx.Client(timeout=timeout, follow_redirects=False)
        self._validate = validate
        self.overrides = dict(variables or {})

    # ------------------------------------------------------------------ public

    def run(self, script: dict, origin: Path | None = None) -> ScriptResult:
        started = time.perf_counter()
        result = ScriptResult(script.get("name") or script.get("id") or "TestScript", script.get("url", ""),
                              str(origin) if origin else "")
        state = _State(self, script, origin)
        try:
            state.load_fixtures()
        except ScriptError as exc:
            result.error = str(exc)
            result.seconds = time.perf_counter() - started
            return result
        setup_actions = (script.get("setup") or {}).get("action") or []
        setup = TestResult("setup", "autocreate fixtures and setup actions")
        state.autocreate(setup)
        if setup_actions:
            state.run_actions(setup_actions, setup)
        result.setup = setup
        for test in script.get("test") or ():
            tr = TestResult(test.get("name") or f"test {len(result.tests) + 1}", test.get("description", ""))
            t0 = time.perf_counter()
            if not setup.passed:
                tr.skipped = True
                tr.actions.append(ActionResult("assert", "setup", False, "skipped: the setup failed", skipped=True))
            else:
                state.run_actions(test.get("action") or [], tr)
            tr.seconds = time.perf_counter() - t0
            result.tests.append(tr)
        teardown = TestResult("teardown")
        state.run_actions((script.get("teardown") or {}).get("action") or [], teardown, stop_on_fail=False)
        state.autodelete(teardown)
        result.teardown = teardown
        result.seconds = time.perf_counter() - started
        return result

    def validate(self, resource: Any, profile_url: str) -> list:
        if self._validate is not None:
            return self._validate(resource, profile_url)
        from gateway.conformance.registry import ProfileRegistry
        from gateway.conformance.validator import Validator

        if not hasattr(self, "_validator"):
            self._validator = Validator(ProfileRegistry.from_folder())
        registry = self._validator.registry
        if not registry.knows(profile_url):  # a server's own profile: ask it
            try:
                r = self.client.get(f"{self.base}/StructureDefinition", params={"url": profile_url},
                                    headers={"Accept": _FORMATS["json"]})
                for entry in (r.json().get("entry") or []) if r.status_code == 200 else []:
                    registry.add(entry.get("resource") or {})
            except (httpx.HTTPError, ValueError):
                pass
        return self._validator.validate(resource, [profile_url], unknown_severity="error")


class _State:
    """One script's run: fixtures by id, the last exchange, variable definitions."""

    def __init__(self, runner: TestScriptRunner, script: dict, origin: Path | None) -> None:
        self.runner = runner
        self.script = script
        self.folder = origin.parent if origin else Path.cwd()
        self.fixtures: dict[str, Fixture] = {}
        self.last: Exchange | None = None
        self.variables = {v["name"]: v for v in script.get("variable") or () if v.get("name")}
        self.profiles = {p.get("id"): p.get("reference") for p in script.get("profile") or () if p.get("id")}
        self.contained = {c.get("id"): c for c in script.get("contained") or () if isinstance(c, dict)}

    # ------------------------------------------------------------------ fixtures and variables

    def load_fixtures(self) -> None:
        for fx in self.script.get("fixture") or ():
            ref = (fx.get("resource") or {}).get("reference", "")
            if ref.startswith("#"):
                body = self.contained.get(ref[1:])
                if body is None:
                    raise ScriptError(f"fixture {fx.get('id')}: no contained resource {ref}")
            elif ref:
                path = (self.folder / ref).resolve()
                if not path.is_file():
                    raise ScriptError(f"fixture {fx.get('id')}: file {ref} not found beside the script")
                body = _read_resource(path)
            else:
                raise ScriptError(f"fixture {fx.get('id')}: no resource reference")
            self.fixtures[fx["id"]] = Fixture(fx["id"], body)

    def autocreate(self, phase: TestResult) -> None:
        for fx in self.script.get("fixture") or ():
            if fx.get("autocreate"):
                self.operation({"type": {"code": "create"}, "sourceId": fx["id"],
                                "description": f"autocreate {fx['id']}"}, phase)

    def autodelete(self, phase: TestResult) -> None:
        for fx in self.script.get("fixture") or ():
            if fx.get("autodelete") and self.fixtures.get(fx["id"]) and self.fixtures[fx["id"]].server_id:
                self.operation({"type": {"code": "delete"}, "targetId": fx["id"],
                                "description": f"autodelete {fx['id']}"}, phase)

    def variable(self, name: str) -> str | None:
        if name in self.runner.overrides:
            return self.runner.overrides[name]
        v = self.variables.get(name)
        if v is None:
            return None
        source = self.fixtures.get(v["sourceId"]) if v.get("sourceId") else None
        exchange = source.exchange if source else self.last
        if v.get("headerField"):
            found = exchange.headers.get(v["headerField"].lower()) if exchange else None
            if found is not None:
                return found
        elif v.get("expression"):
            body = source.body if source else (self.last.body if self.last else None)
            if body is not None:
                result = evaluate(body, self.substitute(v["expression"]))
                if result:
                    return to_string(result[0])
        return v.get("defaultValue")

    def substitute(self, text: str) -> str:
        def one(m: re.Match) -> str:
            value = self.variable(m.group(1))
            return m.group(0) if value is None else value

        return _VAR.sub(one, text) if "${" in text else text

    def fixture_body(self, fid: str) -> Any:
        fx = self.fixtures.get(fid)
        if fx is None:
            raise ScriptError(f"sourceId {fid!r} names no fixture")
        if fx.body is None:
            return None
        return orjson.loads(self.substitute(orjson.dumps(fx.body).decode()))

    # ------------------------------------------------------------------ actions

    def run_actions(self, actions: list[dict], phase: TestResult, stop_on_fail: bool = True) -> None:
        for action in actions:
            if "operation" in action:
                ok = self.operation(action["operation"], phase)
            elif "assert" in action:
                ok = self.check(action["assert"], phase)
            else:
                continue
            if not ok and stop_on_fail:
                return

    def check(self, a: dict, phase: TestResult) -> bool:
        ctx = asserts.AssertContext(self.last, self.fixtures, self.substitute, self.profiles, self.runner.validate)
        passed, message = asserts.check(a, ctx)
        label = a.get("label") or a.get("description") or _assert_label(a)
        warning_only = bool(a.get("warningOnly"))
        phase.actions.append(ActionResult("assert", label, passed, "" if passed else message, warning_only))
        return passed or warning_only

    def operation(self, op: dict, phase: TestResult) -> bool:
        label = op.get("label") or op.get("description") or (op.get("type") or {}).get("code", "operation")
        try:
            method, url, body, headers = self.build(op)
        except ScriptError as exc:
            phase.actions.append(ActionResult("operation", label, False, str(exc)))
            return False
        exchange = self.send(method, url, body, headers)
        self.last = exchange
        if op.get("responseId"):
            self.fixtures[op["responseId"]] = Fixture(op["responseId"], exchange.body, exchange)
        if op.get("requestId"):
            self.fixtures[op["requestId"]] = Fixture(op["requestId"], body, exchange)
        code = (op.get("type") or {}).get("code")
        if code in ("create", "update", "updateCreate") and op.get("sourceId") and 200 <= exchange.status < 300:
            fx = self.fixtures[op["sourceId"]]
            fx.server_id, fx.version = exchange.location_id
            fx.exchange = exchange
        if exchange.error:
            phase.actions.append(ActionResult("operation", f"{label}: {method} {url}", False, exchange.error))
            return False
        phase.actions.append(ActionResult("operation", f"{label}: {method} {url} -> {exchange.status}", True))
        return True

    def build(self, op: dict) -> tuple[str, str, Any, dict[str, str]]:
        code = (op.get("type") or {}).get("code", "")
        source = op.get("sourceId")
        body = self.fixture_body(source) if source else None
        rtype = op.get("resource") or (body.get("resourceType") if isinstance(body, dict) else None)
        target_id = target_version = None
        if op.get("targetId"):
            target = self.fixtures.get(op["targetId"])
            if target is None:
                raise ScriptError(f"targetId {op['targetId']!r} names no fixture or response")
            target_id, target_version = target.server_id, target.version
            if target_id is None and target.exchange is not None:
                target_id, target_version = target.exchange.location_id
            if target_id is None and isinstance(target.body, dict):
                target_id = target.body.get("id")
            rtype = rtype or target.resource_type()
            if target_version is None and target.exchange is not None:
                etag = target.exchange.headers.get("etag", "")
                target_version = etag.removeprefix("W/").strip('"') or None
        params = self.substitute(op.get("params", ""))
        method = (op.get("method") or "").upper() or _METHODS.get(code, "GET")
        if op.get("url"):
            url = self.substitute(op["url"])
            url = url if url.startswith(("http://", "https://")) else f"{self.runner.base}/{url.lstrip('/')}"
        else:
            url = self._url(code, rtype, target_id, target_version, params)
        if code == "update" and isinstance(body, dict):
            body = {**body, "id": body.get("id") or (url.split("?")[0].rstrip("/").split("/")[-1])}
        if method in ("GET", "DELETE", "HEAD"):
            body = None
        fmt = _FORMATS.get(op.get("accept", "json"), op.get("accept", _FORMATS["json"]))
        headers = {"Accept": fmt}
        if body is not None:
            headers["Content-Type"] = _FORMATS.get(op.get("contentType", "json"), op.get("contentType"))
        for h in op.get("requestHeader") or ():
            headers[h["field"]] = self.substitute(h.get("value", ""))
        return method, url, body, headers

    def _url(self, code: str, rtype: str | None, rid: str | None, vid: str | None, params: str) -> str:
        base = self.runner.base
        if code in _SYSTEM_LEVEL:
            return base + ("/metadata" if code == "capabilities" else "/_history" if code == "history-system"
                           else "") + params
        if not rtype:
            raise ScriptError(f"operation {code!r} needs a resource type (resource, sourceId or targetId)")
        if params.startswith("/"):
            return f"{base}/{rtype}{params}"
        if code in ("read", "update", "delete", "patch"):
            if rid is None and code != "delete":
                raise ScriptError(f"operation {code!r} needs targetId, params or url to name the resource")
            return f"{base}/{rtype}/{rid}{params}" if rid else f"{base}/{rtype}{params}"
        if code == "vread":
            if rid is None or vid is None:
                raise ScriptError("vread needs a targetId whose id and version are known")
            return f"{base}/{rtype}/{rid}/_history/{vid}{params}"
        if code in ("history", "history-instance", "history-type"):
            return f"{base}/{rtype}/{rid}/_history{params}" if rid and code != "history-type" else \
                f"{base}/{rtype}/_history{params}"
        if code == "validate":
            return f"{base}/{rtype}/{rid}/$validate{params}" if rid else f"{base}/{rtype}/$validate{params}"
        if code == "everything":
            return f"{base}/{rtype}/{rid}/$everything{params}" if rid else f"{base}/{rtype}/$everything{params}"
        return f"{base}/{rtype}{params}"

    def send(self, method: str, url: str, body: Any, headers: dict[str, str]) -> Exchange:
        content = None
        if body is not None:
            content = body.encode() if isinstance(body, str) else orjson.dumps(body)
        exchange = Exchange(method, url, {k.lower(): v for k, v in headers.items()}, body)
        try:
            r = self.runner.client.request(method, url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            exchange.error = f"{method} {url} failed: {exc}"
            return exchange
        exchange.status = r.status_code
        exchange.headers = {k.lower(): v for k, v in r.headers.items()}
        ctype = exchange.headers.get("content-type", "")
        if r.content and "json" in ctype:
            try:
                exchange.body = r.json()
            except ValueError:
                exchange.body = r.text
        elif r.content and "xml" in ctype:
            from gateway.fhir.xml import xml_to_resource

            try:
                exchange.body = xml_to_resource(r.content)
            except Exception:  # an unparseable body is still something to assert on
                exchange.body = r.text
        elif r.content:
            exchange.body = r.text
        return exchange


_METHODS = {"create": "POST", "update": "PUT", "updateCreate": "PUT", "delete": "DELETE", "deleteCondSingle": "DELETE",
            "transaction": "POST", "batch": "POST", "validate": "POST", "patch": "PATCH", "search": "GET",
            "read": "GET", "vread": "GET", "history": "GET", "capabilities": "GET", "everything": "GET"}


def _assert_label(a: dict) -> str:
    for key in ("response", "responseCode", "resource", "expression", "headerField", "contentType", "minimumId",
                "validateProfileId", "compareToSourceId"):
        if key in a:
            return f"{key} {a[key]}" + (f" {a.get('operator', '')} {a.get('value', '')}".rstrip()
                                        if "value" in a or "operator" in a else "")
    return "assert"


def _read_resource(path: Path) -> Any:
    data = path.read_bytes()
    if path.suffix.lower() == ".xml":
        from gateway.fhir.xml import xml_to_resource

        return xml_to_resource(data)
    return orjson.loads(data)


def load_scripts(target: Path) -> list[tuple[Path, dict]]:
    """TestScripts in a file or folder (fixtures/ folders and non-TestScript JSON are skipped)."""
    files = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.suffix.lower() in
                                                     (".json", ".xml") and "fixtures" not in p.relative_to(target).parts)
    out = []
    for path in files:
        try:
            resource = _read_resource(path)
        except Exception as exc:  # noqa: BLE001 - reported, not raised: one bad file must not hide others
            raise ScriptError(f"{path}: not a FHIR resource ({exc})") from None
        if isinstance(resource, dict) and resource.get("resourceType") == "TestScript":
            out.append((path, resource))
    return out
