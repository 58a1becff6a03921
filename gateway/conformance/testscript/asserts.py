"""TestScript `assert` evaluation: each returns (passed, message), the message saying why.

Supported: response, responseCode, resource, contentType, headerField, expression (FHIRPath),
compareToSourceId (+ compareToSourceExpression), minimumId, validateProfileId, navigationLinks,
requestMethod, requestURL, with the R4 operators (equals, notEquals, in, notIn, greaterThan,
lessThan, empty, notEmpty, contains, notContains, eval). XPath/JSONPath `path` is not supported
and fails saying so, rather than passing silently.
"""

from __future__ import annotations

from typing import Any, Callable

import orjson

from gateway.conformance.fhirpath import FhirPathError, FhirPathSyntaxError, evaluate, values
from gateway.conformance.fhirpath.values import to_string

from .model import Exchange, Fixture

# TestScript assert.response codes (R4 assert-response-code-types) -> HTTP status
RESPONSE_CODES = {
    "okay": 200, "created": 201, "noContent": 204, "notModified": 304, "bad": 400, "forbidden": 403,
    "notFound": 404, "methodNotAllowed": 405, "conflict": 409, "gone": 410, "preconditionFailed": 412,
    "unprocessable": 422,
}
_MIME = {"json": "application/fhir+json", "xml": "application/fhir+xml", "ttl": "text/turtle"}


class AssertContext:
    """What an assert can see: the last exchange, named fixtures/responses, profiles and a validator."""

    def __init__(self, last: Exchange | None, fixtures: dict[str, Fixture], substitute: Callable[[str], str],
                 profiles: dict[str, str], validate: Callable[[Any, str], list]):
        self.last = last
        self.fixtures = fixtures
        self.substitute = substitute
        self.profiles = profiles  # TestScript.profile id -> canonical url
        self.validate = validate


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _outcome_text(body: Any) -> str:
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        diags = [i.get("diagnostics", "") for i in body.get("issue") or () if isinstance(i, dict)]
        return " (OperationOutcome: " + "; ".join(d for d in diags if d)[:300] + ")" if diags else ""
    return ""


def compare(op: str, actual: list[str], expected: str | None) -> tuple[bool, str]:
    """Apply an assert operator to the actual values (as strings) and the expected value."""
    op = op or "equals"
    shown = ", ".join(actual) if actual else "(nothing)"
    if op == "empty":
        return not actual, f"expected nothing, found {shown}"
    if op == "notEmpty":
        return bool(actual), "expected a value, found nothing"
    if expected is None:
        return False, f"operator {op} needs a value"
    if op == "equals":
        return actual == [expected] or (len(actual) > 0 and all(a == expected for a in actual)), \
            f"expected {expected!r}, found {shown}"
    if op == "notEquals":
        return expected not in actual, f"expected anything but {expected!r}, found {shown}"
    if op == "in":
        allowed = [v.strip() for v in expected.split(",")]
        return bool(actual) and all(a in allowed for a in actual), f"expected one of {allowed}, found {shown}"
    if op == "notIn":
        banned = [v.strip() for v in expected.split(",")]
        return not any(a in banned for a in actual), f"expected none of {banned}, found {shown}"
    if op in ("greaterThan", "lessThan"):
        if len(actual) != 1:
            return False, f"{op} needs one value, found {shown}"
        try:
            a, e = float(actual[0]), float(expected)
        except ValueError:
            a, e = actual[0], expected  # type: ignore[assignment]
        ok = a > e if op == "greaterThan" else a < e  # type: ignore[operator]
        return ok, f"expected {op} {expected}, found {shown}"
    if op == "contains":
        return any(expected in a for a in actual), f"expected something containing {expected!r}, found {shown}"
    if op == "notContains":
        return not any(expected in a for a in actual), f"expected nothing containing {expected!r}, found {shown}"
    return False, f"operator {op!r} is not supported"


def _source(a: dict, ctx: AssertContext) -> tuple[Any, Exchange | None, str]:
    """The body and exchange an assert looks at: `sourceId`'s, else the last response (or request)."""
    sid = a.get("sourceId")
    if sid:
        fx = ctx.fixtures.get(sid)
        if fx is None:
            raise LookupError(f"sourceId {sid!r} names no fixture or response")
        return fx.body, fx.exchange, sid
    if ctx.last is None:
        raise LookupError("no operation has run yet")
    if a.get("direction") == "request":
        return ctx.last.request_body, ctx.last, "the last request"
    return ctx.last.body, ctx.last, "the last response"


def _fhirpath_strings(body: Any, expression: str) -> list[str]:
    if body is None:
        return []
    result = evaluate(body, expression)
    return [s for s in (to_string(i) or orjson.dumps(i[0]).decode() for i in result)]


def check(a: dict, ctx: AssertContext) -> tuple[bool, str]:
    """Run one assert; (passed, why it failed or what it checked)."""
    try:
        return _check(a, ctx)
    except (LookupError, FhirPathError, FhirPathSyntaxError) as exc:
        return False, str(exc)


def _check(a: dict, ctx: AssertContext) -> tuple[bool, str]:
    body, exchange, where = _source(a, ctx)
    op = a.get("operator") or "equals"
    value = ctx.substitute(a["value"]) if isinstance(a.get("value"), str) else a.get("value")
    status = exchange.status if exchange is not None else None
    tail = _outcome_text(body)

    if "response" in a:
        want = RESPONSE_CODES.get(a["response"])
        if want is None:
            return False, f"unknown response code {a['response']!r}"
        return (status == want,
                f"expected HTTP {want} ({a['response']}) from {where}, got {status}{tail}")
    if "responseCode" in a:
        ok, why = compare(a.get("operator") or ("in" if "," in a["responseCode"] else "equals"), [str(status)],
                          ctx.substitute(a["responseCode"]))
        return ok, f"response code: {why}{tail}"
    if "resource" in a:
        found = body.get("resourceType") if isinstance(body, dict) else None
        ok, why = compare(op, [found] if found else [], a["resource"])
        return ok, f"resource type of {where}: {why}{tail}"
    if "contentType" in a:
        got = (exchange.headers.get("content-type", "") if exchange else "").split(";")[0].strip()
        want = _MIME.get(a["contentType"], a["contentType"])
        return (want in got or got in want and bool(got),
                f"content type of {where}: expected {want}, found {got or '(none)'}")
    if "headerField" in a:
        headers = exchange.request_headers if (exchange and a.get("direction") == "request") else \
            (exchange.headers if exchange else {})
        got = headers.get(a["headerField"].lower())
        ok, why = compare(op if value is not None or op in ("empty", "notEmpty") else "notEmpty",
                          [got] if got is not None else [], value)
        return ok, f"header {a['headerField']} of {where}: {why}"
    if a.get("compareToSourceId"):
        other = ctx.fixtures.get(a["compareToSourceId"])
        if other is None:
            raise LookupError(f"compareToSourceId {a['compareToSourceId']!r} names no fixture")
        expr = a.get("compareToSourceExpression") or a.get("expression")
        if not expr:
            return False, "compareToSourceId needs compareToSourceExpression (compareToSourcePath is not supported)"
        mine, theirs = _fhirpath_strings(body, expr), _fhirpath_strings(other.body, expr)
        if op in ("notEquals",):
            return mine != theirs, f"{expr}: expected {where} to differ from {a['compareToSourceId']}, both {mine}"
        return mine == theirs, f"{expr}: {where} has {mine}, {a['compareToSourceId']} has {theirs}"
    if "expression" in a:
        expr = ctx.substitute(a["expression"])
        if value is None and op in ("equals", "eval"):
            result = evaluate(body, expr) if body is not None else []
            got = values(result)
            return got == [True], f"{expr} on {where}: expected true, found {_short(got)}{tail}"
        got = _fhirpath_strings(body, expr)
        ok, why = compare(op, got, value)
        return ok, f"{expr} on {where}: {why}{tail}"
    if a.get("minimumId"):
        fx = ctx.fixtures.get(a["minimumId"])
        if fx is None:
            raise LookupError(f"minimumId {a['minimumId']!r} names no fixture")
        missing = _missing(fx.body, body, fx.resource_type() or "")
        return not missing, f"{where} lacks what fixture {a['minimumId']} has: {'; '.join(missing[:5])}"
    if a.get("validateProfileId"):
        url = ctx.profiles.get(a["validateProfileId"])
        if url is None:
            return False, f"validateProfileId {a['validateProfileId']!r} is not in TestScript.profile"
        if not isinstance(body, dict):
            return False, f"{where} has no resource to validate"
        errors = [i for i in ctx.validate(body, url) if i.severity in ("error", "fatal")]
        text = "; ".join(f"{i.expression}: {i.diagnostics}" for i in errors[:5])
        return not errors, f"{where} does not conform to {url}: {text}"
    if "navigationLinks" in a:
        links = {l.get("relation") for l in (body or {}).get("link") or ()} if isinstance(body, dict) else set()
        ok = {"first", "last"} <= links if a["navigationLinks"] else True
        return ok, f"{where}: expected first/last links, found {sorted(links)}"
    if "requestMethod" in a:
        got = exchange.method.lower() if exchange else ""
        ok, why = compare(op, [got], a["requestMethod"].lower())
        return ok, f"request method: {why}"
    if "requestURL" in a:
        got = exchange.url if exchange else ""
        ok, why = compare(op if op != "equals" else "contains", [got], ctx.substitute(a["requestURL"]))
        return ok, f"request URL: {why}"
    if "path" in a:
        return False, "XPath/JSONPath 'path' asserts are not supported; use 'expression' (FHIRPath)"
    return False, "the assert checks nothing this runner knows"


def _missing(expected: Any, actual: Any, path: str) -> list[str]:
    """Elements of `expected` (a fixture) that `actual` does not contain, ignoring id and meta."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path} (expected an object)"]
        out: list[str] = []
        for key, value in expected.items():
            if key in ("id", "meta", "text"):
                continue
            out += _missing(value, actual.get(key), f"{path}.{key}")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{path} (expected a list)"]
        out = []
        for i, item in enumerate(expected):
            if not any(not _missing(item, other, path) for other in actual):
                out.append(f"{path}[{i}] = {_short(item, 120)}")
        return out
    return [] if expected == actual else [f"{path}: expected {_short(expected, 80)}, found {_short(actual, 80)}"]
