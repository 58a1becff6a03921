"""Read an ADW message Bundle (FHIR DSTU2 1.0.2, XML or JSON) into plain dicts.

The result has the shape of DSTU2 JSON (https://hl7.org/fhir/DSTU2/json.html): resources carry
``resourceType``, primitives are values (``_name`` holds a primitive's id/extensions), repeating
elements are lists. XML has no array markers, so repeating elements are recognised from a table
of the DSTU2 elements the ADW profiles use (below); any other element that occurs more than once
becomes a list, once a single value. Readers should still accept either (``as_list``).

XML is parsed defensively: lxml with entity resolution, DTD loading, network access and huge
trees all off, and any DOCTYPE or ENTITY declaration is refused outright, before and after
parsing, so external-entity and entity-expansion ("billion laughs") documents never get in.

`check_message` enforces what every ADW notice needs before mapping: a ``message`` Bundle whose
first entry is a MessageHeader with one of the four notice events (ADW-MessageEvent-1).
"""

from __future__ import annotations

import codecs
import re
from typing import Any

import orjson
from lxml import etree

from .codes import EVENT_DISPLAY, NOTICE_EVENTS, RESPONSE_EVENTS, SNOMED

__all__ = ["AdwError", "MAX_BYTES", "as_list", "check_message", "parse_adw", "parse_adw_json", "parse_adw_xml"]

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
MAX_BYTES = 20 * 1024 * 1024  # ADW notices may embed a PDF; anything bigger is refused

# Elements whose contents are a resource (wrapped in an element named after its type).
_RESOURCE_HOLDERS = frozenset({"resource", "contained"})
# Repeating (0..*) element names wherever they occur (data types and Resource/DomainResource).
_REPEATS_ANYWHERE = frozenset({
    "extension", "modifierExtension", "contained", "coding", "family", "given", "prefix", "suffix", "line",
    "profile", "security", "tag",
})
# Repeating elements by resource type, path relative to the resource (DSTU2 1.0.2).
_REPEATS: dict[str, frozenset[str]] = {
    "Bundle": frozenset({"link", "entry", "entry.link"}),
    "MessageHeader": frozenset({"destination", "data"}),
    "Patient": frozenset({"identifier", "name", "telecom", "address", "photo", "contact", "contact.relationship",
                          "contact.telecom", "communication", "careProvider", "link"}),
    "Practitioner": frozenset({"identifier", "telecom", "address", "photo", "practitionerRole",
                               "practitionerRole.specialty", "practitionerRole.location",
                               "practitionerRole.healthcareService", "qualification", "qualification.identifier",
                               "communication"}),
    "Organization": frozenset({"identifier", "telecom", "address", "contact", "contact.telecom"}),
    "Location": frozenset({"identifier", "telecom"}),
    "Encounter": frozenset({"identifier", "statusHistory", "type", "episodeOfCare", "incomingReferral",
                            "participant", "participant.type", "reason", "indication",
                            "hospitalization.admittingDiagnosis", "hospitalization.dischargeDiagnosis",
                            "hospitalization.dietPreference", "hospitalization.specialCourtesy",
                            "hospitalization.specialArrangement", "location"}),
    "ReferralRequest": frozenset({"identifier", "recipient", "serviceRequested", "supportingInformation"}),
    "Condition": frozenset({"bodySite", "evidence", "evidence.detail", "stage.assessment"}),
    "Composition": frozenset({"author", "attester", "attester.mode", "event", "event.code", "event.detail",
                              "section", "section.entry", "section.section"}),
    "DocumentReference": frozenset({"identifier", "author", "relatesTo", "securityLabel", "content",
                                    "content.format", "context.event", "context.related"}),
    "OperationOutcome": frozenset({"issue", "issue.location"}),
}
_BOOLEANS = frozenset({"valueBoolean", "deceasedBoolean", "multipleBirthBoolean", "active", "preferred",
                       "abatementBoolean", "experimental"})
_INTEGERS = frozenset({"valueInteger", "valuePositiveInt", "valueUnsignedInt", "multipleBirthInteger", "total",
                       "rank", "size"})
_DECIMALS = frozenset({"valueDecimal"})
_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class AdwError(ValueError):
    """Input that cannot be read as an ADW notice. ``location`` is a FHIRPath-like path."""

    def __init__(self, message: str, location: str = "Bundle") -> None:
        super().__init__(f"{message} (at {location})")
        self.message = message
        self.location = location


def as_list(value: Any) -> list:
    """A possibly-repeating element as a list (None -> [], a single value -> [value])."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# --------------------------------------------------------------------------- entry point


def parse_adw(data: bytes | str, content_type: str | None = None) -> dict:
    """An ADW message Bundle (DSTU2 XML or JSON) -> dict, after `check_message`.

    The format comes from ``content_type`` when given (DSTU2's ``application/xml+fhir`` /
    ``application/json+fhir`` and the later ``application/fhir+xml|json`` are all accepted),
    else from the first non-blank character.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_BYTES:
        raise AdwError(f"message is larger than {MAX_BYTES} bytes")
    kind = _format(raw, content_type)
    bundle = parse_adw_json(raw) if kind == "json" else parse_adw_xml(raw)
    check_message(bundle)
    return bundle


def _format(raw: bytes, content_type: str | None) -> str:
    if content_type:
        ct = content_type.split(";")[0].strip().lower()
        if "json" in ct:
            return "json"
        if "xml" in ct:
            return "xml"
        raise AdwError(f"unsupported content type {content_type!r}; expected FHIR XML or JSON")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "xml"
    head = raw.lstrip(codecs.BOM_UTF8).lstrip()
    if head.startswith(b"{"):
        return "json"
    if head.startswith(b"<"):
        return "xml"
    raise AdwError("message is neither FHIR XML nor FHIR JSON")


# --------------------------------------------------------------------------- JSON


def parse_adw_json(data: bytes | str) -> dict:
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        bundle = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise AdwError(f"not well-formed JSON: {exc}") from None
    if not isinstance(bundle, dict):
        raise AdwError("JSON message is not an object")
    if bundle.get("resourceType") != "Bundle":
        raise AdwError(f"expected a Bundle, found resourceType {bundle.get('resourceType')!r}", "Bundle.resourceType")
    for i, entry in enumerate(as_list(bundle.get("entry"))):
        res = entry.get("resource") if isinstance(entry, dict) else None
        if res is not None and not (isinstance(res, dict) and isinstance(res.get("resourceType"), str)):
            raise AdwError("entry resource has no resourceType", f"Bundle.entry[{i}].resource")
    return bundle


# --------------------------------------------------------------------------- XML


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           remove_comments=True, remove_pis=True, dtd_validation=False)


def parse_adw_xml(data: bytes | str) -> dict:
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    _refuse_declarations(raw)
    try:
        root = etree.fromstring(raw, _parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise AdwError(f"not well-formed XML: {exc}") from None
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise AdwError("XML with a DOCTYPE is refused")
    if next(root.iter(etree.Entity), None) is not None:
        raise AdwError("XML with entity references is refused")
    if root.tag != f"{{{FHIR_NS}}}Bundle":
        raise AdwError(f"expected a FHIR Bundle (namespace {FHIR_NS}), found <{root.tag}>")
    return _resource(root)


def _refuse_declarations(raw: bytes) -> None:
    probe = raw
    try:
        if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            probe = raw.decode("utf-16").encode("utf-8")
        elif raw[:4] in (b"\x00<\x00?", b"\x00<\x00!"):
            probe = raw.decode("utf-16-be").encode("utf-8")
        elif raw[:4] in (b"<\x00?\x00", b"<\x00!\x00"):
            probe = raw.decode("utf-16-le").encode("utf-8")
    except UnicodeDecodeError:
        raise AdwError("XML is not in a readable encoding") from None
    if _DECLARATION.search(probe):
        raise AdwError("XML with a DOCTYPE or ENTITY declaration is refused")


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return "", tag


def _resource(el: etree._Element) -> dict:
    ns, rtype = _split(el.tag)
    if ns != FHIR_NS or not rtype[:1].isupper():
        raise AdwError(f"<{el.tag}> is not a FHIR resource", rtype or "Bundle")
    out: dict = {"resourceType": rtype}
    out.update(_children(el, rtype, ""))
    return out


def _complex(el: etree._Element, rtype: str, path: str) -> dict:
    out: dict = {}
    if el.get("id") is not None:
        out["id"] = el.get("id")
    if el.get("url") is not None:
        out["url"] = el.get("url")
    out.update(_children(el, rtype, path))
    return out


def _children(el: etree._Element, rtype: str, path: str) -> dict:
    collected: dict[str, list[tuple[Any, dict | None]]] = {}
    for child in el:
        if not isinstance(child.tag, str):
            continue
        ns, name = _split(child.tag)
        cpath = f"{path}.{name}" if path else name
        where = f"{rtype}.{cpath}"
        if name == "div" and ns == XHTML_NS:
            collected.setdefault("div", []).append((etree.tostring(child, encoding="unicode", with_tail=False), None))
            continue
        if ns != FHIR_NS:
            raise AdwError(f"element <{child.tag}> is not in the FHIR namespace", where)
        if child.text and child.text.strip():
            raise AdwError(f"unexpected text in <{name}>", where)
        if name in _RESOURCE_HOLDERS:
            kids = [k for k in child if isinstance(k.tag, str)]
            if len(kids) != 1:
                raise AdwError(f"<{name}> must hold exactly one resource", where)
            collected.setdefault(name, []).append((_resource(kids[0]), None))
        elif child.get("value") is not None:
            shadow: dict = {}
            if child.get("id") is not None:
                shadow["id"] = child.get("id")
            shadow.update(_children(child, rtype, cpath))
            collected.setdefault(name, []).append((_primitive(name, child.get("value"), where), shadow or None))
        else:
            collected.setdefault(name, []).append((_complex(child, rtype, cpath), None))
    out: dict = {}
    for name, items in collected.items():
        cpath = f"{path}.{name}" if path else name
        many = len(items) > 1 or name in _REPEATS_ANYWHERE or cpath in _REPEATS.get(rtype, ()) or (
            rtype == "QuestionnaireResponse" and _qr_repeats(cpath))
        values = [v for v, _ in items]
        shadows = [s for _, s in items]
        out[name] = values if many else values[0]
        if any(s is not None for s in shadows):
            out[f"_{name}"] = shadows if many else shadows[0]
    return out


def _qr_repeats(path: str) -> bool:
    """QuestionnaireResponse.group nests: group.group, group.question, question.answer, answer.group."""
    last = path.rsplit(".", 1)[-1]
    return last in ("question", "answer") or (last == "group" and path != "group")


def _primitive(name: str, value: str, where: str) -> Any:
    if name in _BOOLEANS:
        if value not in ("true", "false"):
            raise AdwError(f"{value!r} is not a boolean", where)
        return value == "true"
    if name in _INTEGERS:
        try:
            return int(value)
        except ValueError:
            raise AdwError(f"{value!r} is not an integer", where) from None
    if name in _DECIMALS:
        try:
            number = float(value)
        except ValueError:
            raise AdwError(f"{value!r} is not a decimal", where) from None
        return int(number) if re.fullmatch(r"-?\d+", value) else number
    return value


# --------------------------------------------------------------------------- message checks


def check_message(bundle: Any) -> tuple[dict, str, str | None]:
    """The MessageHeader, notice kind and withdrawal scope of an ADW notice, or AdwError.

    Rules: a Bundle of type ``message`` (FHIR messaging); the first entry a MessageHeader; its
    ``event`` one of the notice events of ADW-MessageEvent-1 (system SNOMED CT). Accept/reject
    responses are ADW events too, but a hospital sends notices and the council answers, so a
    response arriving here is refused rather than processed.
    """
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise AdwError("not a FHIR Bundle", "Bundle")
    if bundle.get("type") != "message":
        raise AdwError(f"Bundle.type is {bundle.get('type')!r}; an ADW notice is a 'message' Bundle", "Bundle.type")
    entries = as_list(bundle.get("entry"))
    resources = [e.get("resource") if isinstance(e, dict) else None for e in entries]
    if not resources or not isinstance(resources[0], dict) or resources[0].get("resourceType") != "MessageHeader":
        others = [i for i, r in enumerate(resources)
                  if isinstance(r, dict) and r.get("resourceType") == "MessageHeader"]
        if others:
            raise AdwError("the MessageHeader must be the first entry of a message Bundle",
                           f"Bundle.entry[{others[0]}].resource")
        raise AdwError("the message Bundle has no MessageHeader", "Bundle.entry[0].resource")
    header = resources[0]
    event = header.get("event")
    if not isinstance(event, dict) or not event.get("code"):
        raise AdwError("MessageHeader.event is missing", "Bundle.entry[0].resource.event")
    system, code = event.get("system"), str(event.get("code"))
    if system == SNOMED and code in NOTICE_EVENTS:
        kind, scope = NOTICE_EVENTS[code]
        return header, kind, scope
    if system == SNOMED and code in RESPONSE_EVENTS:
        raise AdwError(f"event {code} ({EVENT_DISPLAY[code]}) is a response; the gateway accepts ADW notices only",
                       "Bundle.entry[0].resource.event")
    raise AdwError(f"unknown ADW event {system}|{code}", "Bundle.entry[0].resource.event")
