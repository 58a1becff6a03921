"""Transport-free request and response: what a handler sees and returns.

An HTTP request, a Bundle entry and an internal call from an adapter all become a `FhirRequest`;
handlers return a `FhirResponse` and never touch HTTP objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import orjson

from gateway.fhir import decimals


@dataclass(slots=True)
class FhirRequest:
    method: str
    path: str  # relative to the FHIR base, no leading slash: "Patient/123/_history/2"
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: dict | None = None
    raw_body: bytes | None = None  # non-FHIR bodies (JSON Patch)
    content_type: str = ""
    base_url: str = ""
    # Set by the Bundle processors: entries share their session and skip per-entry audit
    in_bundle: bool = False
    # The body was validated structurally inside its Bundle: entries skip the repeat walk
    prevalidated: bool = False
    # A transaction decides the id of a created resource before it runs (urn:uuid rewriting)
    assigned_id: str | None = None
    # A transaction searched this entry's conditional criteria already, holding their lock:
    # (len(session.changes) at the search, the matches); see gateway.fhir.crud._searched
    conditional_hits: tuple[int, list] | None = None
    # Who asks (gateway.security.Principal); None = the caller of the current HTTP request, or the
    # gateway itself when there is none (pipelines, start-up)
    principal: object | None = None

    def param(self, name: str) -> str | None:
        for k, v in self.params:
            if k == name:
                return v
        return None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def prefer(self, key: str) -> str | None:
        """`Prefer: return=minimal, handling=lenient` → prefer('return') == 'minimal'."""
        value = self.headers.get("prefer")
        if not value:
            return None
        for part in value.split(","):
            k, _, v = part.strip().partition("=")
            if k.strip() == key:
                return v.strip().strip('"')
        return None

    @classmethod
    def from_url(cls, method: str, url: str, **kw) -> "FhirRequest":
        path, _, query = url.partition("?")
        return cls(method=method.upper(), path=path.strip("/"), params=parse_qsl(query, keep_blank_values=True), **kw)


@dataclass(slots=True)
class FhirResponse:
    status: int = 200
    resource: dict | None = None
    body: bytes | None = None  # JSON bytes served as stored, without re-serialising
    headers: dict[str, str] = field(default_factory=dict)

    def json_bytes(self) -> bytes | None:
        if self.body is not None:
            return self.body
        if self.resource is not None:
            return decimals.dumps(self.resource)
        return None

    def as_dict(self) -> dict | None:
        if self.resource is not None:
            return self.resource
        if self.body is not None:
            return orjson.loads(self.body)
        return None
