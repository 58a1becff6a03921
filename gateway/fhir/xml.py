"""FHIR R4 JSON <-> XML conversion driven by the generated type table.

Follows https://hl7.org/fhir/R4/xml.html: namespace ``http://hl7.org/fhir``,
elements in definition order, primitives carry a ``value`` attribute plus an
optional ``id`` attribute and ``extension`` children (the JSON ``_name``
shadow), ``Element.id`` and ``Extension.url`` are attributes, ``Resource.id``
is an element, resources inside ``contained``/``resource`` are wrapped in an
element named after their type, and ``Narrative.div`` is embedded XHTML.

Parsing is hardened: no DTDs, no entities, no network, comments dropped.
"""

from __future__ import annotations

import decimal
import math
import threading
from typing import Any

from lxml import etree

from gateway.fhir import structure
from gateway.fhir.decimals import FhirDecimal, decimal_from_text
from gateway.fhir.structure import TypeInfo, type_info
from gateway.fhir.structure.primitives import (
    CHECKERS,
    DECIMAL_RE,
    INTEGER_RE,
    POSITIVE_RE,
    UNSIGNED_RE,
)

__all__ = ["FHIR_NS", "XHTML_NS", "FhirFormatError", "resource_to_xml", "xml_to_resource"]

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
_XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
_F = "{" + FHIR_NS + "}"
_XDIV = "{" + XHTML_NS + "}div"
_INT_RES = {"integer": INTEGER_RE, "unsignedInt": UNSIGNED_RE, "positiveInt": POSITIVE_RE}


class FhirFormatError(ValueError):
    """Content that is not valid FHIR XML/JSON; ``location`` is a FHIRPath-like path."""

    def __init__(self, message: str, location: str | None = None) -> None:
        super().__init__(message if location is None else f"{message} (at {location})")
        self.message = message
        self.location = location


# ---------------------------------------------------------------- JSON -> XML


def resource_to_xml(resource: dict[str, Any]) -> bytes:
    """Serialise a FHIR JSON resource (parsed dict) as FHIR XML (UTF-8 bytes)."""
    root = _resource_element(resource, "")
    return etree.tostring(root, encoding="UTF-8", xml_declaration=True)


def _resource_element(resource: Any, path: str) -> etree._Element:
    rt = resource.get("resourceType") if isinstance(resource, dict) else None
    if not isinstance(rt, str) or rt not in structure.RESOURCE_TYPES:
        raise FhirFormatError(f"Not a known FHIR resource (resourceType={rt!r})", path or None)
    elem = etree.Element(_F + rt, nsmap={None: FHIR_NS})
    _write_children(elem, resource, _type(rt), path or rt)
    return elem


def _write_children(elem: etree._Element, obj: dict[str, Any], info: TypeInfo, path: str) -> None:
    by_name = info.by_name
    for key in obj:
        is_shadow = key[:1] == "_"
        el = by_name.get(key[1:] if is_shadow else key)
        if el is None or (is_shadow and not el.is_primitive):
            if key != "resourceType" or not info.is_resource:
                raise FhirFormatError(f"Unknown element '{key}' in {info.name}", f"{path}.{key}")
    as_attribute = _attribute_names(info)
    for el in info.elements:
        name = el.name
        value = obj.get(name)
        shadow = obj.get("_" + name) if el.is_primitive else None
        if value is None and shadow is None:
            continue
        where = f"{path}.{name}"
        if name in as_attribute:
            if shadow is not None or not isinstance(value, str):
                raise FhirFormatError(f"'{name}' must be a plain string here", where)
            _set(elem, name, value, where)
        elif el.type == "xhtml":
            elem.append(_parse_div(value, where))
        elif el.is_array:
            values = _as_list(value, where)
            shadows = _as_list(shadow, f"{path}._{name}")
            if values and shadows and len(values) != len(shadows):
                raise FhirFormatError(f"'{name}' and '_{name}' arrays differ in length", where)
            for i in range(max(len(values), len(shadows))):
                item = values[i] if values else None
                ext = shadows[i] if shadows else None
                _write_one(elem, el.type, el.is_primitive, el.is_resource, name, item, ext, f"{where}[{i}]")
        else:
            _write_one(elem, el.type, el.is_primitive, el.is_resource, name, value, shadow, where)


def _attribute_names(info: TypeInfo) -> frozenset[str]:
    # Element.id is an attribute everywhere except on resources; Extension.url too.
    if info.is_resource:
        return frozenset()
    return frozenset(("id", "url")) if info.name == "Extension" else frozenset(("id",))


def _as_list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise FhirFormatError("Expected a JSON array", where)
    return value


def _write_one(parent: etree._Element, type_name: str, is_primitive: bool, is_resource: bool,
               name: str, value: Any, shadow: Any, where: str) -> None:
    child = etree.SubElement(parent, _F + name)
    if is_resource:
        child.append(_resource_element(value, where))
    elif is_primitive:
        if value is not None:
            _set(child, "value", _lexical(type_name, value, where), where)
        if shadow is not None:
            if not isinstance(shadow, dict):
                raise FhirFormatError("Primitive extension must be an object", where)
            _write_children(child, shadow, _type("Element"), where)
        if value is None and shadow is None:
            raise FhirFormatError("Array item has neither a value nor an extension", where)
    else:
        if not isinstance(value, dict):
            raise FhirFormatError(f"Expected a JSON object for {type_name}", where)
        _write_children(child, value, _type(type_name), where)


def _set(elem: etree._Element, name: str, value: str, where: str) -> None:
    try:
        elem.set(name, value)
    except ValueError:  # lxml refuses NUL and control characters XML cannot carry
        raise FhirFormatError("Value contains characters that XML cannot represent", where) from None


def _lexical(type_name: str, value: Any, where: str) -> str:
    if value is True or value is False:
        if type_name == "boolean":
            return "true" if value else "false"
    elif isinstance(value, str):
        if type_name not in ("boolean", "decimal", "integer", "unsignedInt", "positiveInt"):
            return value
    elif isinstance(value, int):
        if type_name in ("decimal", "integer", "unsignedInt", "positiveInt"):
            return str(value)
    elif isinstance(value, (float, decimal.Decimal)) and type_name == "decimal" and math.isfinite(value):
        # repr() is the shortest text that round-trips the float, or a FhirDecimal's text as it
        # was read; Decimal keeps whatever lexical form it was created from (e.g. "1.50").
        return repr(value) if isinstance(value, float) else str(value)
    raise FhirFormatError(f"Value {value!r} is not a valid JSON {type_name}", where)


def _parse_div(value: Any, where: str) -> etree._Element:
    if not isinstance(value, str) or not value.lstrip().startswith("<div"):
        raise FhirFormatError("Narrative div must be an XHTML <div> string", where)
    text = value.lstrip()
    if XHTML_NS not in text.split(">", 1)[0]:
        # JSON narratives sometimes omit the namespace; XML requires it.
        text = f'<div xmlns="{XHTML_NS}"' + text[4:]
    root = _parse(text.encode("utf-8"), where)
    if root.tag != _XDIV:
        raise FhirFormatError("Narrative must be an XHTML div element", where)
    return root


# ---------------------------------------------------------------- XML -> JSON

_local = threading.local()


def _parser() -> etree.XMLParser:
    # lxml parsers must not be shared between threads.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
            huge_tree=False, remove_comments=True, remove_pis=True,
        )
    return parser


def _parse(data: bytes, where: str | None) -> etree._Element:
    if not isinstance(data, bytes):
        raise FhirFormatError("XML input must be bytes", where)
    # Refuse DTDs before libxml2 sees them: nothing is ever expanded or fetched.
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise FhirFormatError("DOCTYPE/ENTITY declarations are not allowed", where)
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in data[:4]:
        raise FhirFormatError("FHIR XML must be encoded as UTF-8", where)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise FhirFormatError(f"Malformed XML: {exc.msg}", where or f"line {exc.lineno}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise FhirFormatError("DOCTYPE declarations are not allowed", where)
    return root


def xml_to_resource(data: bytes, *, exact_decimals: bool = False) -> dict[str, Any]:
    """Parse FHIR XML into the equivalent FHIR JSON dict.

    Decimals become ``int``/``float``; with ``exact_decimals`` a
    ``decimal.Decimal`` is used whenever a float would change the lexical form
    (e.g. ``1.50``) - note orjson cannot serialise Decimal without ``default=``.
    """
    root = _parse(data, None)
    return _Reader(exact_decimals).resource(root, "")


def _type(name: str) -> TypeInfo:
    info = type_info(name)
    if info is None:
        raise FhirFormatError(f"Unknown type {name}")
    return info


class _Reader:
    def __init__(self, exact_decimals: bool) -> None:
        self.exact_decimals = exact_decimals

    def resource(self, elem: etree._Element, path: str) -> dict[str, Any]:
        qname = etree.QName(elem)
        rt = qname.localname
        where = path or rt
        if qname.namespace != FHIR_NS:
            raise FhirFormatError(f"<{rt}> is not in the FHIR namespace {FHIR_NS} (line {elem.sourceline})", where)
        if rt not in structure.RESOURCE_TYPES:
            raise FhirFormatError(f"<{rt}> is not a FHIR resource type (line {elem.sourceline})", where)
        out: dict[str, Any] = {"resourceType": rt}
        self.fill(elem, _type(rt), out, where)
        return out

    def fill(self, elem: etree._Element, info: TypeInfo, out: dict[str, Any], path: str,
             skip_attr: str | None = None) -> None:
        attributes = _attribute_names(info)
        for attr, value in elem.attrib.items():
            if attr in attributes:
                out[attr] = value
            elif attr != skip_attr and not attr.startswith("{" + _XSI_NS + "}"):
                # xsi:schemaLocation is tolerated; anything else is not FHIR.
                raise FhirFormatError(f"Unexpected attribute '{_plain(attr)}' (line {elem.sourceline})", path)
        _no_text(elem.text, elem, path)
        counts: dict[str, int] = {}
        arrays: dict[str, tuple[list[Any], list[Any]]] = {}
        for child in elem:
            if not isinstance(child.tag, str):  # entity reference etc.
                raise FhirFormatError(f"Unexpected XML node (line {child.sourceline})", path)
            _no_text(child.tail, elem, path)
            tag = child.tag
            name = tag[len(_F):] if tag.startswith(_F) else ("div" if tag == _XDIV else None)
            el = info.by_name.get(name) if name else None
            if el is None or name in attributes or (el.type == "xhtml") != (tag == _XDIV):
                hint = " (the narrative div must be in the XHTML namespace)" if name == "div" else ""
                raise FhirFormatError(f"Unknown element <{_plain(tag)}> in {info.name}{hint} "
                                      f"(line {child.sourceline})", f"{path}.{name or _plain(tag)}")
            index = counts.get(name, 0)
            counts[name] = index + 1
            where = f"{path}.{name}[{index}]" if el.is_array else f"{path}.{name}"
            if index and not el.is_array:
                raise FhirFormatError(f"'{name}' may only appear once (line {child.sourceline})", where)
            if el.is_primitive:
                value, shadow = self.primitive(child, el.type, where)
                if el.is_array:
                    values, shadows = arrays.setdefault(name, ([], []))
                    values.append(value)
                    shadows.append(shadow)
                else:
                    if value is not None:
                        out[name] = value
                    if shadow is not None:
                        out["_" + name] = shadow
                continue
            if el.is_resource:
                item: Any = self.wrapped_resource(child, where)
            else:
                item = {}
                self.fill(child, _type(el.type), item, where)
                if not item or list(item) == ["id"]:  # ele-1
                    raise FhirFormatError(f"<{name}> has no content (line {child.sourceline})", where)
            if el.is_array:
                out.setdefault(name, []).append(item)
            else:
                out[name] = item
        for name, (values, shadows) in arrays.items():
            # JSON keeps values and extensions in two aligned arrays; either is
            # left out when it would hold only nulls.
            if any(v is not None for v in values):
                out[name] = values
            if any(s is not None for s in shadows):
                out["_" + name] = shadows

    def wrapped_resource(self, elem: etree._Element, path: str) -> dict[str, Any]:
        if elem.attrib:
            raise FhirFormatError("Resource container elements take no attributes", path)
        _no_text(elem.text, elem, path)
        children = list(elem)
        if len(children) != 1 or not isinstance(children[0].tag, str):
            raise FhirFormatError(f"Expected exactly one resource inside <{_plain(elem.tag)}>", path)
        _no_text(children[0].tail, elem, path)
        return self.resource(children[0], path)

    def primitive(self, elem: etree._Element, type_name: str, path: str) -> tuple[Any, Any]:
        if type_name == "xhtml":
            return _div_text(elem), None
        raw = elem.get("value")
        shadow: dict[str, Any] = {}
        # The primitive's id attribute and extension children form its shadow.
        self.fill(elem, _type("Element"), shadow, path, skip_attr="value")
        if raw is None and not shadow.get("extension"):  # ele-1: an id alone is no content
            raise FhirFormatError(f"<{_plain(elem.tag)}> has no value or extension (line {elem.sourceline})", path)
        value = None if raw is None else self.typed(raw, type_name, path)
        return value, (shadow or None)

    def typed(self, raw: str, type_name: str, path: str) -> Any:
        value: Any = raw
        if type_name == "boolean":
            if raw not in ("true", "false"):
                raise FhirFormatError(f"Invalid boolean '{raw}'", path)
            value = raw == "true"
        elif type_name in _INT_RES:
            if _INT_RES[type_name].fullmatch(raw) is None:
                raise FhirFormatError(f"Invalid {type_name} '{raw}'", path)
            value = int(raw)
        elif type_name == "decimal":
            value = self.decimal(raw, path)
        problem = CHECKERS[type_name](value)
        if problem is not None and problem[0] == "error":
            raise FhirFormatError(problem[2], path)
        return value

    def decimal(self, raw: str, path: str) -> int | float | decimal.Decimal:
        if DECIMAL_RE.fullmatch(raw) is None:
            raise FhirFormatError(f"Invalid decimal '{raw}'", path)
        value = decimal_from_text(raw)  # keeps the written precision (1.50), as JSON bodies do
        if self.exact_decimals and isinstance(value, FhirDecimal):
            return decimal.Decimal(raw)
        return value


def _div_text(elem: etree._Element) -> str:
    if elem.prefix is not None:
        # JSON expects the XHTML namespace as the default one on <div>.
        elem = _default_ns_copy(elem)
    return etree.tostring(elem, encoding="unicode", with_tail=False)


def _default_ns_copy(elem: etree._Element) -> etree._Element:
    copy = etree.Element(elem.tag, dict(elem.attrib), nsmap={None: XHTML_NS})

    def clone(src: etree._Element, dst: etree._Element) -> None:
        dst.text = src.text
        for child in src:
            if isinstance(child.tag, str):
                new = etree.SubElement(dst, child.tag, dict(child.attrib))
                clone(child, new)
                new.tail = child.tail

    clone(elem, copy)
    return copy


def _no_text(text: str | None, elem: etree._Element, path: str) -> None:
    if text and not text.isspace():
        raise FhirFormatError(f"Unexpected text content '{text.strip()[:40]}' (line {elem.sourceline})", path)


def _plain(tag: str) -> str:
    return tag.rpartition("}")[2]
