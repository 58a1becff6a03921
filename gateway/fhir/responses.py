"""Shared response shapes: one written or read resource, honouring `Prefer: return=`."""

from __future__ import annotations

from gateway.fhir.outcome import information
from gateway.fhir.request import FhirRequest, FhirResponse
from gateway.store.base import StoredResource


def resource_headers(row: StoredResource, base_url: str, location: bool = False) -> dict[str, str]:
    h = {"ETag": row.etag, "Last-Modified": row.last_modified}
    if location:
        h["Location"] = f"{base_url}/{row.type}/{row.id}/_history/{row.version}"
    return h


def read_response(row: StoredResource, req: FhirRequest) -> FhirResponse:
    return FhirResponse(200, body=row.content, headers=resource_headers(row, req.base_url))


def written_response(row: StoredResource, req: FhirRequest, status: int, message: str) -> FhirResponse:
    headers = resource_headers(row, req.base_url, location=True)
    want = req.prefer("return") or "representation"
    if want == "minimal":
        return FhirResponse(status, headers=headers)
    if want == "OperationOutcome":
        return FhirResponse(status, resource=information(message), headers=headers)
    return FhirResponse(status, body=row.content, headers=headers)
