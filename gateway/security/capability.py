"""`CapabilityStatement.rest.security`: SMART on FHIR, with where to get a token."""

from __future__ import annotations

import orjson

SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def rest_security(ctx) -> bytes:
    svc = ctx.services.get("security")
    if svc is None or not svc.auth_enabled:
        return b""
    return orjson.dumps({
        "cors": False,
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                 "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}],
                     "text": "OAuth 2.0 bearer tokens with SMART v1/v2 scopes (Backend Services, private_key_jwt)"}],
        "extension": [{"url": SMART_OAUTH_URIS, "extension": [{"url": "token", "valueUri": svc.token_endpoint}]}],
        "description": (f"Bearer tokens from {svc.token_endpoint} (client credentials, private_key_jwt); "
                        f"discovery at /.well-known/smart-configuration. Resources labelled "
                        + ", ".join(f"{s}|{c}" for s, c in sorted(svc.restricted_labels))
                        + " are visible only to clients holding the label."),
    })
