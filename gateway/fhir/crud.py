"""Instance and type interactions: read, vread, create, update, patch, delete (and conditional forms)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import jsonpatch
import orjson

from gateway.fhir import decimals

from gateway.fhir.outcome import (
    FhirError,
    Issue,
    bad_request,
    gone,
    information,
    not_found,
    precondition_failed,
    unprocessable,
    unsupported_media,
)
from gateway.fhir.request import FhirRequest, FhirResponse
from gateway.fhir.responses import read_response, written_response
from gateway.fhir.search import find_matches
from gateway.store.base import VersionConflict


def _if_match(req: FhirRequest) -> int | None:
    value = req.header("if-match")
    if not value:
        return None
    digits = value.strip().removeprefix("W/").strip('"')
    if not digits.isdigit():
        raise bad_request(f"If-Match must be an ETag like W/\"3\", not {value!r}", code="value")
    return int(digits)


async def read(ctx, req: FhirRequest, type: str, id: str) -> FhirResponse:
    async with ctx.store.session() as s:
        row = await s.read(type, id)
    if row is None:
        raise not_found(f"{type}/{id} is not known")
    if row.deleted:
        raise FhirError(410, Issue("error", "deleted", f"{type}/{id} was deleted"), {"ETag": row.etag})
    inm = req.header("if-none-match")
    if inm and inm.strip().removeprefix("W/").strip('"') == str(row.version):
        return FhirResponse(304, headers={"ETag": row.etag})
    return read_response(row, req)


async def vread(ctx, req: FhirRequest, type: str, id: str, vid: str) -> FhirResponse:
    if not vid.isdigit():
        raise not_found(f"{type}/{id} has no version {vid}")
    async with ctx.store.session() as s:
        row = await s.vread(type, id, int(vid))
    if row is None:
        raise not_found(f"{type}/{id} has no version {vid}")
    if row.deleted:
        raise gone(f"Version {vid} of {type}/{id} is a deletion")
    return read_response(row, req)


async def create(ctx, req: FhirRequest, type: str) -> FhirResponse:
    resource = ctx.check_resource(req.body, type, structure_checked=req.prevalidated)
    resource = {k: v for k, v in resource.items() if k != "id"}  # the server assigns ids on create
    criteria = req.header("if-none-exist")
    async with ctx.store.session(write=True) as s:
        if criteria:
            matches = _searched(req, s, type)
            if matches is None:
                await s.lock(criteria_key("create", type, criteria))
                matches = await find_matches(ctx, s, type, criteria)
            if len(matches) > 1:
                raise precondition_failed(f"If-None-Exist {criteria!r} matches {len(matches)} {type} resources")
            if matches:
                return written_response(matches[0], req, 200, f"{type}/{matches[0].id} already exists")
        result = await s.create(resource, req.assigned_id)
    return written_response(result.resource, req, 201, f"Created {type}/{result.resource.id}")


async def update(ctx, req: FhirRequest, type: str, id: str) -> FhirResponse:
    resource = ctx.check_resource(req.body, type, structure_checked=req.prevalidated)
    body_id = resource.get("id")
    if body_id is None:
        raise bad_request(f"The {type} in an update must carry its id ({id})", f"{type}.id", "required")
    if body_id != id:
        raise bad_request(f"The body's id {body_id!r} does not match the URL's {id!r}", f"{type}.id")
    return await _update(ctx, req, resource, id, _if_match(req))


async def _update(ctx, req: FhirRequest, resource: dict, id: str, if_match: int | None) -> FhirResponse:
    try:
        async with ctx.store.session(write=True) as s:
            result = await s.update(resource, id, if_match)
    except VersionConflict as exc:
        raise precondition_failed(
            f"If-Match version {if_match} is not the current version ({exc.current}) of {resource['resourceType']}/{id}"
        ) from None
    status = 201 if result.created else 200
    verb = "Created" if result.created else ("Updated" if result.changed else "No change to")
    return written_response(result.resource, req, status, f"{verb} {resource['resourceType']}/{id}")


async def conditional_update(ctx, req: FhirRequest, type: str) -> FhirResponse:
    resource = ctx.check_resource(req.body, type, structure_checked=req.prevalidated)
    criteria = _criteria(req, "conditional update")
    async with ctx.store.session(write=True) as s:
        matches = _searched(req, s, type)
        if matches is None:
            await s.lock(criteria_key("update", type, criteria))
            matches = await find_matches(ctx, s, type, criteria)
        if len(matches) > 1:
            raise precondition_failed(f"Conditional update {criteria!r} matches {len(matches)} {type} resources")
        if matches:
            target = matches[0].id
            if resource.get("id") not in (None, target):
                raise bad_request(
                    f"The body's id {resource['id']!r} is not the matching resource {target!r}", f"{type}.id"
                )
            return await _update(ctx, req, {**resource, "id": target}, target, _if_match(req))
        if resource.get("id"):
            return await _update(ctx, req, resource, resource["id"], None)
        result = await s.create(resource)
    return written_response(result.resource, req, 201, f"Created {type}/{result.resource.id}")


async def patch(ctx, req: FhirRequest, type: str, id: str) -> FhirResponse:
    ops = _json_patch(req)
    async with ctx.store.session(write=True) as s:
        row = await s.read(type, id)
        if row is None:
            raise not_found(f"{type}/{id} is not known")
        if row.deleted:
            raise gone(f"{type}/{id} was deleted")
        if_match = _if_match(req)
        if if_match is not None and if_match != row.version:
            raise precondition_failed(f"If-Match version {if_match} is not the current version ({row.version})")
        current = decimals.loads(row.content)
        try:
            patched = jsonpatch.JsonPatch(ops).apply(current)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise unprocessable(f"JSON Patch could not be applied: {exc}") from None
        if patched.get("resourceType") != type or patched.get("id") != id:
            raise unprocessable("JSON Patch must not change resourceType or id")
        try:
            ctx.check_resource(patched, type, "patched resource")
        except FhirError as exc:
            raise FhirError(422, exc.issues) from None
        return await _update(ctx, req, patched, id, row.version)


async def conditional_patch(ctx, req: FhirRequest, type: str) -> FhirResponse:
    criteria = _criteria(req, "conditional patch")
    async with ctx.store.session(write=True) as s:
        matches = await find_matches(ctx, s, type, criteria)
        if len(matches) != 1:
            if not matches:
                raise not_found(f"Conditional patch {criteria!r} matches no {type}")
            raise precondition_failed(f"Conditional patch {criteria!r} matches {len(matches)} {type} resources")
        return await patch(ctx, req, type, matches[0].id)


async def delete(ctx, req: FhirRequest, type: str, id: str) -> FhirResponse:
    async with ctx.store.session(write=True) as s:
        row = await s.delete(type, id)
    if row is None:
        return FhirResponse(200, resource=information(f"{type}/{id} did not exist; nothing deleted"))
    return FhirResponse(200, resource=information(f"Deleted {type}/{id}"), headers={"ETag": row.etag})


async def conditional_delete(ctx, req: FhirRequest, type: str) -> FhirResponse:
    criteria = _criteria(req, "conditional delete")
    async with ctx.store.session(write=True) as s:
        matches = await find_matches(ctx, s, type, criteria, limit=2)
        if len(matches) > 1:
            raise precondition_failed(f"Conditional delete {criteria!r} matches more than one {type}")
        for m in matches:
            await s.delete(type, m.id)
    if not matches:
        return FhirResponse(200, resource=information(f"No {type} matched {criteria!r}; nothing deleted"))
    return FhirResponse(200, resource=information(f"Deleted {type}/{matches[0].id}"))


def _criteria(req: FhirRequest, what: str) -> str:
    criteria = "&".join(f"{k}={v}" for k, v in req.params if k not in ("_format", "_pretty"))
    if not criteria:
        raise bad_request(f"A {what} needs search criteria in the URL", code="required")
    return criteria


def _searched(req: FhirRequest, s, rtype: str) -> list | None:
    """The matches a transaction found for this entry's criteria before running it (holding the
    criteria's lock since, so no other conditional writer can have changed the answer), unless a
    resource of the type was written in the session since: then the search is made again."""
    if req.conditional_hits is None:
        return None
    mark, hits = req.conditional_hits
    if len(s.changes) < mark or any(c.type == rtype for c in s.changes[mark:]):
        return None
    return hits


def criteria_key(kind: str, rtype: str, criteria: str) -> str:
    # Same criteria in a different parameter order must take the same lock.
    return f"{kind}:{rtype}?" + "&".join(sorted(f"{k}={v}" for k, v in parse_qsl(criteria, keep_blank_values=True)))


def _json_patch(req: FhirRequest) -> list:
    if "json-patch+json" not in req.content_type:
        raise unsupported_media("PATCH needs Content-Type application/json-patch+json")
    try:
        ops = decimals.loads(req.raw_body or b"")
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"JSON Patch body is not valid JSON: {exc}", code="structure") from None
    if not isinstance(ops, list):
        raise bad_request("A JSON Patch document is an array of operations", code="structure")
    return ops
