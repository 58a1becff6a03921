"""JSON and XML on the wire: choosing the format and converting bodies at the HTTP edge only."""

from __future__ import annotations

import orjson

from gateway.fhir import decimals

from gateway.fhir.outcome import bad_request, unsupported_media

JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
XML_TYPES = ("application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir")
_FORMAT_ALIASES = {"json": "json", "xml": "xml", "text/xml": "xml"}


def response_format(format_param: str | None, accept: str | None) -> str:
    if format_param:
        f = format_param.strip().lower()
        if f in _FORMAT_ALIASES:
            return _FORMAT_ALIASES[f]
        if any(f.startswith(t) for t in XML_TYPES):
            return "xml"
        if any(f.startswith(t) for t in JSON_TYPES):
            return "json"
        raise unsupported_media(f"_format={format_param} is not supported; use json or xml")
    if accept and "text/html" in accept and "fhir" not in accept:
        # A person following a link in a browser: JSON they can read, not an XML download
        return "browser"
    if accept and "xml" in accept and "json" not in accept:
        return "xml"
    return "json"


def parse_body(content_type: str, body: bytes) -> dict:
    """A FHIR resource from a JSON or XML body; anything else is a 415."""
    ct = content_type.split(";", 1)[0].strip().lower()
    if ct in XML_TYPES:
        from gateway.fhir.xml import FhirFormatError, xml_to_resource

        try:
            return xml_to_resource(body)
        except FhirFormatError as exc:
            raise bad_request(f"XML body could not be read: {exc}", getattr(exc, "location", None), "structure") from None
    if ct in JSON_TYPES or ct == "":
        try:
            value = decimals.loads(body)
        except orjson.JSONDecodeError as exc:
            raise bad_request(f"JSON body could not be read: {exc}", code="structure") from None
        if not isinstance(value, dict):
            raise bad_request("The body must be a JSON object (a FHIR resource)", code="structure")
        return value
    raise unsupported_media(f"Content-Type {content_type!r} is not supported; send application/fhir+json or application/fhir+xml")


def render(resource_bytes: bytes, fmt: str) -> tuple[bytes, str]:
    if fmt == "xml":
        from gateway.fhir.xml import resource_to_xml

        return resource_to_xml(decimals.loads(resource_bytes)), "application/fhir+xml; charset=utf-8"
    if fmt == "browser":
        # Browsers show application/json inline (and download application/fhir+json)
        return decimals.dumps(decimals.loads(resource_bytes), option=orjson.OPT_INDENT_2), "application/json; charset=utf-8"
    return resource_bytes, "application/fhir+json; charset=utf-8"
