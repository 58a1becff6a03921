"""A StructureDefinition differential -> a tree of element rules the validator walks.

Only differentials are held (no snapshots), so each profile in a baseDefinition chain is compiled
on its own and the validator applies every level's rules: a derived profile can only tighten its
base, so checking both is the same as checking the merged snapshot. Element ids
(`Patient.identifier:nhsNumber.system`) give the tree shape; elements the differential skips are
pass-through nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .fhirpath import compile_expression

CORE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"


@dataclass
class Constraint:
    key: str
    severity: str  # error | warning
    human: str
    expression: str
    fn: Any  # compiled FHIRPath


@dataclass
class Discriminator:
    type: str  # value | pattern | exists | type | profile
    path: str


@dataclass
class ElementRule:
    name: str  # JSON member ("identifier", "value[x]", "valueCodeableConcept"); "" for the root
    id: str = ""  # element id in the profile, for diagnostics
    min: int | None = None
    max: int | None = None  # None: no upper limit stated
    fixed: Any = None
    has_fixed: bool = False
    pattern: Any = None
    has_pattern: bool = False
    binding: tuple[str, str] | None = None  # (strength, value set url)
    constraints: list[Constraint] = field(default_factory=list)
    max_length: int | None = None
    types: tuple[str, ...] = ()  # allowed type codes (for choice elements and Reference checks)
    target_types: frozenset[str] | None = None  # resource types a Reference may point at
    profiles: tuple[str, ...] = ()  # type.profile (extension definitions, datatype profiles)
    children: dict[str, "ElementRule"] = field(default_factory=dict)
    slicing: tuple[tuple[Discriminator, ...], str] | None = None  # (discriminators, rules)
    slices: list["ElementRule"] = field(default_factory=list)
    slice_name: str = ""
    base_slice: "ElementRule | None" = None  # the same slice in a base profile (for its discriminator values)
    checks: bool = False  # any check on the value itself (else the node only leads to its children)

    def child(self, name: str) -> "ElementRule":
        rule = self.children.get(name)
        if rule is None:
            rule = self.children[name] = ElementRule(name)
        return rule

    def slice(self, name: str) -> "ElementRule":
        for s in self.slices:
            if s.slice_name == name:
                return s
        s = ElementRule(self.name, slice_name=name)
        self.slices.append(s)
        return s


@dataclass
class CompiledProfile:
    url: str
    type: str
    name: str
    base: str | None
    root: ElementRule
    problems: list[str]  # what could not be compiled (reported as warnings when used)


def split_id(element_id: str) -> list[tuple[str, str]]:
    """`Patient.identifier:nhsNumber.system` -> [(Patient, ''), (identifier, nhsNumber), (system, '')]."""
    parts: list[tuple[str, str]] = []
    for seg in element_id.split("."):
        name, _, slice_name = seg.partition(":")
        parts.append((name, slice_name))
    return parts


def _value_x(ed: dict, prefix: str) -> tuple[bool, Any]:
    for key, value in ed.items():
        if key.startswith(prefix) and key[len(prefix):len(prefix) + 1].isupper():
            return True, value
    return False, None


def _target_type(url: str, registry) -> str | None:
    url = url.split("|", 1)[0]
    if url.startswith(CORE_PREFIX):
        return url[len(CORE_PREFIX):]
    sd = registry.structure_definition(url) if registry is not None else None
    return sd.get("type") if sd else None


def compile_profile(sd: dict, registry=None) -> CompiledProfile:
    rtype = sd.get("type", "")
    root = ElementRule("", id=rtype)
    problems: list[str] = []
    for ed in (sd.get("differential") or {}).get("element") or ():
        element_id = ed.get("id") or ed.get("path", "")
        parts = split_id(element_id)
        if not parts or parts[0][0] != rtype:
            problems.append(f"element {element_id!r} is not under {rtype}")
            continue
        node = root
        for name, slice_name in parts[1:]:
            if slice_name and name.endswith("[x]") and slice_name.startswith(name[:-3]):
                node = node.child(slice_name)  # a type slice: value[x]:valueQuantity is valueQuantity
                continue
            node = node.child(name)
            if slice_name:
                node = node.slice(slice_name)
        node.id = element_id
        try:
            _apply(node, ed, registry)
        except Exception as exc:  # a bad invariant must not take the whole profile down
            problems.append(f"{element_id}: {exc}")
    return CompiledProfile(sd.get("url", ""), rtype, sd.get("name") or sd.get("id") or "", sd.get("baseDefinition"),
                           root, problems)


def _apply(node: ElementRule, ed: dict, registry) -> None:
    if "min" in ed:
        node.min = int(ed["min"])
    if "max" in ed:
        node.max = None if ed["max"] == "*" else int(ed["max"])
    node.has_fixed, node.fixed = _value_x(ed, "fixed")
    node.has_pattern, node.pattern = _value_x(ed, "pattern")
    binding = ed.get("binding")
    if binding and binding.get("valueSet") and binding.get("strength") in ("required", "extensible"):
        node.binding = (binding["strength"], binding["valueSet"].split("|", 1)[0])
    if "maxLength" in ed:
        node.max_length = int(ed["maxLength"])
    types = ed.get("type") or ()
    if types:
        node.types = tuple(t.get("code", "") for t in types)
        profiles = [p for t in types for p in t.get("profile") or ()]
        node.profiles = tuple(profiles)
        targets = [p for t in types for p in t.get("targetProfile") or ()]
        if targets:
            resolved = {_target_type(p, registry) for p in targets}
            node.target_types = None if None in resolved or "Resource" in resolved else frozenset(resolved)
    for c in ed.get("constraint") or ():
        expr = c.get("expression")
        if not expr:
            continue
        node.constraints.append(Constraint(c.get("key", ""), c.get("severity", "error"), c.get("human", ""),
                                           expr, compile_expression(expr)))
    node.checks = bool(node.types or node.has_fixed or node.has_pattern or node.max_length is not None
                       or node.binding or node.target_types is not None or node.constraints)
    slicing = ed.get("slicing")
    if slicing:
        discs = tuple(Discriminator(d.get("type", "value"), d.get("path", "$this"))
                      for d in slicing.get("discriminator") or ())
        node.slicing = (discs, slicing.get("rules", "open"))
