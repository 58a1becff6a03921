"""Structural validation of FHIR R4 JSON resources against the type table.

One recursive walk over the parsed JSON, driven by per-type lookup dicts that
are compiled once from ``r4b.json``; no pydantic at runtime.  Issue codes are
FHIR ``IssueType`` codes: ``structure`` (unknown element, wrong JSON kind,
array-ness, empty arrays/objects, nulls), ``required``, ``value`` (primitive
format/range), ``too-long``, ``invariant`` (ele-1, ext-1, dom-2),
``code-invalid`` (unknown resourceType).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import _load, type_info
from .primitives import CHECKERS

__all__ = ["Issue", "validate_resource"]

MAX_DEPTH = 100  # deeper JSON is hostile or broken; stop before RecursionError

_PRIM, _COMPLEX, _RESOURCE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Issue:
    severity: str  # "error" | "warning"
    code: str  # FHIR IssueType code
    expression: str  # FHIRPath of the offending element
    diagnostics: str


# (kind, target, is_array, choice group): target is the primitive checker,
# the child _CType, or None for elements holding a whole resource.
_Spec = tuple[int, Any, bool, "str | None"]


class _CType:
    """Per-type lookup tables, compiled on first use.

    Shells are created for child types and filled only when an instance is
    walked, so specs can point at child objects directly (no name lookups
    in the hot loop) without compiling all 600+ types up front.
    """

    __slots__ = ("name", "fields", "required", "req_choices", "is_resource", "is_extension", "post",
                 "needs_content")

    def __init__(self, name: str) -> None:
        self.name = name
        self.fields: dict[str, _Spec] | None = None

    def compile(self) -> dict[str, _Spec]:
        info = type_info(self.name)
        if info is None:
            raise KeyError(self.name)
        self.is_resource = info.is_resource
        self.is_extension = self.name == "Extension"
        # ele-1: a datatype needs content besides its id (a primitive's shadow
        # is exempt because the primitive value itself is the content).
        self.needs_content = not info.is_resource and self.name != "Element"
        fields: dict[str, _Spec] = {}
        groups: dict[str, list[str]] = {}
        for el in info.elements:
            if el.is_resource:
                fields[el.name] = (_RESOURCE, None, el.is_array, el.choice)
            elif el.is_primitive:
                fields[el.name] = (_PRIM, CHECKERS[el.type], el.is_array, el.choice)
            else:
                fields[el.name] = (_COMPLEX, _ctype(el.type), el.is_array, el.choice)
            if el.choice:
                groups.setdefault(el.choice, []).append(el.name)
        # (name, is_primitive): a required primitive may be carried by its
        # ``_name`` shadow alone (e.g. a data-absent-reason extension).
        self.required = tuple(
            (el.name, el.is_primitive) for el in info.elements if el.min > 0 and not el.choice
        )
        self.req_choices = tuple((g, tuple(groups[g])) for g in info.required_choices)
        self.post = bool(self.required or self.req_choices or self.is_extension)
        self.fields = fields  # set last: a non-None value marks the type compiled
        return fields


_compiled: dict[str, _CType] = {}


def _ctype(name: str) -> _CType:
    ct = _compiled.get(name)
    if ct is None:
        ct = _compiled[name] = _CType(name)
    return ct


def _err(out: list[Issue], code: str, expr: str, msg: str) -> None:
    out.append(Issue("error", code, expr, msg))


def _bad_container(out: list[Issue], val: Any, expr: str, what: str) -> None:
    """Report why ``val`` is not a usable non-empty JSON object."""
    if val is None:
        _err(out, "structure", expr, "Null is not allowed; omit the element instead")
    elif type(val) is dict:
        _err(out, "structure", expr, "Empty objects are not allowed; omit the element instead")
    elif type(val) is list:
        _err(out, "structure", expr, f"Expected a single {what} object but found an array")
    else:
        _err(out, "structure", expr, f"Expected a {what} object but found {type(val).__name__}")


def validate_resource(resource: Any) -> list[Issue]:
    """Validate one FHIR R4 resource (parsed JSON); returns all issues found."""
    out: list[Issue] = []
    _resource(resource, "", out, 0, False)
    return out


def _resource(val: Any, path: str, out: list[Issue], depth: int, contained: bool) -> None:
    where = path or "Resource"
    if type(val) is not dict or not val:
        _bad_container(out, val, where, "resource")
        return
    rt = val.get("resourceType")
    if rt is None:
        _err(out, "required", where, "Resource has no resourceType")
        return
    if type(rt) is not str or rt not in _load().resources:
        _err(out, "code-invalid", f"{path}.resourceType" if path else "resourceType",
             f"Unknown resourceType {rt!r}")
        return
    if contained and "contained" in val:
        _err(out, "invariant", f"{path}.contained",
             "dom-2: a contained resource SHALL NOT contain nested resources")
    _walk(val, _ctype(rt), path or rt, out, depth)


def _walk(obj: dict[str, Any], ct: _CType, path: str, out: list[Issue], depth: int) -> None:
    if depth > MAX_DEPTH:
        _err(out, "structure", path, f"Content nested deeper than {MAX_DEPTH} levels")
        return
    depth += 1
    fields = ct.fields or ct.compile()
    if len(obj) == 1 and "id" in obj and ct.needs_content:
        _err(out, "invariant", path, "ele-1: an element must have a value or children besides its id")
    choices: dict[str, str] | None = None
    for key, val in obj.items():
        spec = fields.get(key)
        if spec is None:
            if key[:1] == "_":
                _shadow(obj, key, val, ct, path, out, depth)
            elif key != "resourceType" or not ct.is_resource:
                _err(out, "structure", f"{path}.{key}", f"Unknown element '{key}' in {ct.name}")
            continue
        kind, target, is_array, choice = spec
        if choice is not None:
            if choices is None:
                choices = {choice: key}
            elif choice in choices:
                _err(out, "structure", f"{path}.{key}",
                     f"Only one {choice} is allowed but found {choices[choice]} and {key}")
            else:
                choices[choice] = key
        if is_array:
            if type(val) is not list:
                if val is None:
                    _err(out, "structure", f"{path}.{key}", "Null is not allowed; omit the element instead")
                else:
                    _err(out, "structure", f"{path}.{key}", f"Element '{key}' must be an array")
                continue
            if not val:
                _err(out, "structure", f"{path}.{key}", "Empty arrays are not allowed; omit the element instead")
                continue
            if kind == _COMPLEX:
                for i, item in enumerate(val):
                    if type(item) is dict and item:
                        _walk(item, target, f"{path}.{key}[{i}]", out, depth)
                    else:
                        _bad_container(out, item, f"{path}.{key}[{i}]", target.name)
            elif kind == _PRIM:
                shadow = None
                for i, item in enumerate(val):
                    if item is None:
                        if shadow is None:
                            shadow = obj.get("_" + key)
                        if type(shadow) is not list or i >= len(shadow) or shadow[i] is None:
                            _err(out, "structure", f"{path}.{key}[{i}]",
                                 "Null is only allowed where the _ array carries an extension")
                        continue
                    problem = target(item)
                    if problem is not None:
                        _problem(out, problem, f"{path}.{key}[{i}]")
            else:
                for i, item in enumerate(val):
                    _resource(item, f"{path}.{key}[{i}]", out, depth, key == "contained")
        elif kind == _PRIM:
            problem = target(val)
            if problem is not None:
                _problem(out, problem, f"{path}.{key}")
        elif kind == _COMPLEX:
            if type(val) is dict and val:
                _walk(val, target, f"{path}.{key}", out, depth)
            else:
                _bad_container(out, val, f"{path}.{key}", target.name)
        else:
            _resource(val, f"{path}.{key}", out, depth, False)

    if ct.post:
        _post_checks(obj, ct, path, out, choices is not None)


def _post_checks(obj: dict[str, Any], ct: _CType, path: str, out: list[Issue], has_value: bool) -> None:
    """Cardinality and invariants that need the whole object."""
    for name, is_prim in ct.required:
        if name not in obj and not (is_prim and "_" + name in obj):
            _err(out, "required", f"{path}.{name}", f"Missing required element '{name}' in {ct.name}")
    for group, members in ct.req_choices:
        if not any(m in obj or "_" + m in obj for m in members):
            _err(out, "required", f"{path}.{group[:-3]}",
                 f"One of {', '.join(members)} is required in {ct.name}")
    if ct.is_extension:
        # A value may also be just an extended primitive (``_valueCode``).
        has_value = has_value or any(k[:6] == "_value" for k in obj)
        if ("extension" in obj) == has_value:
            _err(out, "invariant", path,
                 "ext-1: an extension must have either extensions or a value[x], not both")


def _problem(out: list[Issue], problem: tuple[str, str, str], expr: str) -> None:
    out.append(Issue(problem[0], problem[1], expr, problem[2]))


def _shadow(
    obj: dict[str, Any], key: str, val: Any, ct: _CType, path: str, out: list[Issue], depth: int
) -> None:
    """Check a ``_name`` primitive extension shadow (id + extension only)."""
    base = key[1:]
    spec = ct.fields.get(base)
    if spec is None or spec[0] != _PRIM:
        _err(out, "structure", f"{path}.{key}", f"Unknown element '{key}' in {ct.name}")
        return
    element = _ctype("Element")
    expr = f"{path}.{base}"
    if not spec[2]:
        if type(val) is dict and val:
            _walk(val, element, expr, out, depth)
        else:
            _bad_container(out, val, f"{path}.{key}", "primitive extension")
        return
    if type(val) is not list or not val:
        if type(val) is list:
            _err(out, "structure", f"{path}.{key}", "Empty arrays are not allowed; omit the element instead")
        else:
            _err(out, "structure", f"{path}.{key}", f"Element '{key}' must be an array aligned with '{base}'")
        return
    values = obj.get(base)
    if type(values) is list and len(values) != len(val):
        _err(out, "structure", f"{path}.{key}",
             f"Element '{key}' has {len(val)} items but '{base}' has {len(values)}; they must align")
    for i, item in enumerate(val):
        if item is None:
            if type(values) is not list or i >= len(values) or values[i] is None:
                _err(out, "structure", f"{expr}[{i}]", "Neither a value nor an extension is present")
        elif type(item) is dict and item:
            _walk(item, element, f"{expr}[{i}]", out, depth)
        else:
            _bad_container(out, item, f"{path}.{key}[{i}]", "primitive extension")
