"""An OpenAPI 3 description of the FHIR REST surface, generated from the route table.

FastAPI only knows the catch-all `/fhir/{path}` route, so this builds the document the fuzz tests
(schemathesis) and API tooling need: one path per route-table row, with `{type}` narrowed to the
types asked for, their search parameters, and FHIR JSON bodies. Nothing is hand-listed, so a new
route or parameter shows up here as it does in the CapabilityStatement.
"""

from __future__ import annotations

from gateway.fhir.search import RESULT_PARAMS
from gateway.fhir.search_parameters import search_params_for

_ID = {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"}
_ANY_JSON = {"type": "object", "additionalProperties": True}


def _resource_body(types: list[str]) -> dict:
    return {"required": True, "content": {"application/fhir+json": {"schema": {
        "type": "object", "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string", "enum": types}, "id": _ID,
                       "meta": {"type": "object", "properties": {"security": {"type": "array", "items": {
                           "type": "object", "properties": {"system": {"type": "string"}, "code": {"type": "string"}}}}}},
                       "status": {"type": "string"}, "subject": {"type": "object", "properties": {"reference": {"type": "string"}}},
                       "name": {"type": "array", "items": {"type": "object"}}},
        "additionalProperties": True}}}}


def _search_parameters(rtype: str, limit: int) -> list[dict]:
    params = [{"name": p.name, "in": "query", "required": False, "schema": {"type": "string"}}
              for p in list(search_params_for(rtype).values())[:limit]]
    for name in sorted(RESULT_PARAMS - {"_format", "_pretty", "_contained", "_containedType"}):
        params.append({"name": name, "in": "query", "required": False, "schema": {"type": "string"}})
    params.append({"name": "_has:Encounter:subject:status", "in": "query", "required": False, "schema": {"type": "string"}})
    return params


def openapi_document(types: tuple[str, ...] = ("Patient", "Encounter", "Observation"), params_per_type: int = 12) -> dict:
    from gateway.fhir.router import ROUTES

    paths: dict[str, dict] = {}
    for methods, pattern, _ in ROUTES:
        concrete = [pattern.replace("{type}", t) for t in types] if "{type}" in pattern else [pattern]
        for path in concrete:
            rtype = path.split("/")[0] if path and path[0].isupper() else None
            if rtype is not None and rtype not in types:
                continue
            url = "/fhir" + ("/" + path if path else "")
            item = paths.setdefault(url, {})
            path_params = [{"name": n, "in": "path", "required": True, "schema": _ID}
                           for n in ("id", "vid") if "{" + n + "}" in path]
            for method in methods:
                op: dict = {"operationId": f"{method} {url}", "parameters": list(path_params),
                            "responses": {"default": {"description": "FHIR resource or OperationOutcome",
                                                      "content": {"application/fhir+json": {"schema": _ANY_JSON}}}}}
                if rtype and method == "GET" and "{id}" not in path and "$" not in path and "_history" not in path:
                    op["parameters"] += _search_parameters(rtype, params_per_type)
                if method in ("POST", "PUT") and "$" not in path:
                    op["requestBody"] = _resource_body(list(types) if path != "" else ["Bundle"])
                if method == "PATCH":
                    op["requestBody"] = {"required": True, "content": {"application/json-patch+json": {"schema": {
                        "type": "array", "items": {"type": "object", "properties": {
                            "op": {"type": "string", "enum": ["add", "remove", "replace", "test", "move", "copy"]},
                            "path": {"type": "string"}, "value": {}}}}}}}
                if "$" in path and method == "POST":
                    op["requestBody"] = {"required": False, "content": {"application/fhir+json": {"schema": _ANY_JSON}}}
                item[method.lower()] = op
    paths["/auth/token"] = {"post": {"operationId": "token", "requestBody": {"required": True, "content": {
        "application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": {
            "grant_type": {"type": "string"}, "scope": {"type": "string"},
            "client_assertion_type": {"type": "string"}, "client_assertion": {"type": "string"}}}}}},
        "responses": {"default": {"description": "token or OAuth error"}}}}
    return {"openapi": "3.0.3", "info": {"title": "Active Recovery Gateway FHIR API", "version": "1"},
            "paths": paths}
