"""What every handler may use: settings, the store, code tables, validation, the event hooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.config import Settings
from gateway.fhir.outcome import FhirError, Issue, bad_request
from gateway.fhir.structure import RESOURCE_TYPES
from gateway.fhir.structure.validate import validate_resource


@dataclass
class GatewayContext:
    settings: Settings
    store: Any
    concept_maps: dict[str, dict] = field(default_factory=dict)
    router: Any = None
    services: dict[str, Any] = field(default_factory=dict)

    def check_resource(self, resource: Any, rtype: str | None = None, where: str = "body",
                       structure_checked: bool = False) -> dict:
        """A body is a known resource of the expected type and structurally valid R4 (else 400).

        `structure_checked`: the resource was already validated structurally as part of the Bundle
        that carried it, so the walk is not repeated for each entry.
        """
        if not isinstance(resource, dict):
            raise bad_request(f"The {where} must be a FHIR resource (a JSON object)", code="structure")
        found = resource.get("resourceType")
        if not isinstance(found, str) or found not in RESOURCE_TYPES:
            raise bad_request(f"Unknown or missing resourceType {found!r} in the {where}", "resourceType", "structure")
        if rtype and found != rtype:
            raise bad_request(
                f"The {where} is a {found} but the URL names {rtype}", f"{found}.resourceType", "invalid"
            )
        issues = [] if structure_checked else validate_resource(resource)
        errors = [i for i in issues if i.severity in ("error", "fatal")]
        if errors:
            raise FhirError(400, [Issue(i.severity, i.code, i.diagnostics, i.expression) for i in issues])
        # Declared / configured profiles, with the configured policy (gateway.conformance.policy)
        from gateway.conformance.policy import enforce

        enforce(self, resource)
        return resource
