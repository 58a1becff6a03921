"""Validate a resource: structure (the gateway's structural validator), then each profile.

For every profile (declared in `meta.profile`, or asked for) the validator walks the compiled
differential of the profile and of each base it knows, over the instance: cardinality, fixed and
pattern values, slices (discriminated by value/pattern, exists or type, e.g. identifier by system
or extension by url), required and extensible bindings, Reference targets, and FHIRPath
invariants. Every issue carries a severity, an IssueType code and the FHIRPath of the element.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

import orjson

from gateway.fhir.structure import type_info
from gateway.fhir.structure.validate import Issue, validate_resource

from .compile import Discriminator, ElementRule
from .fhirpath import Env, FhirPathError, compile_expression
from .fhirpath.evaluate import boolean
from .registry import ProfileRegistry

__all__ = ["Issue", "Validator"]

_REF = re.compile(r"^(?:.*/)?([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?$")
_COND_REF = re.compile(r"^([A-Z][A-Za-z]+)\?")
_SIMPLE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z][A-Za-z0-9]*)*$")


@dataclass
class _Run:
    registry: ProfileRegistry
    root: Any
    out: list[Issue]
    profile: str

    def issue(self, severity: str, code: str, path: str, msg: str) -> None:
        self.out.append(Issue(severity, code, path, msg))


class Validator:
    def __init__(self, registry: ProfileRegistry | None = None) -> None:
        self.registry = registry or ProfileRegistry.from_folder()
        self._known_bytes: tuple[frozenset[str], tuple[bytes, ...]] | None = None

    def validate(self, resource: Any, profiles: Iterable[str] = (), *, structural: bool = True,
                 declared: bool = True, unknown_severity: str = "warning") -> list[Issue]:
        """Issues for `resource` against its structure, its declared profiles and `profiles`."""
        out: list[Issue] = validate_resource(resource) if structural else []
        if not isinstance(resource, dict) or any(i.code == "code-invalid" and i.expression == "resourceType"
                                                 for i in out):
            return out
        urls = list(profiles)
        if declared:
            urls += [p for p in ((resource.get("meta") or {}).get("profile") or ()) if isinstance(p, str)]
        applied: set[str] = set()
        for url in urls:
            out += self.check_profile(resource, url.split("|", 1)[0], unknown_severity, applied)
        self.check_extensions(resource, out)
        return out

    def check_profile(self, resource: dict, url: str, unknown_severity: str = "warning",
                      applied: set[str] | None = None) -> list[Issue]:
        """Issues against one profile and its known bases; `applied` skips levels already checked."""
        applied = set() if applied is None else applied
        if url in applied:
            return []
        chain, unknown_bases = self.registry.chain(url)
        rtype = resource.get("resourceType", "")
        if not chain:
            applied.add(url)
            return [Issue(unknown_severity, "not-supported", rtype,
                          f"Profile {url} is not known to this validator, so the resource was not checked against it")]
        out: list[Issue] = []
        for base in unknown_bases:
            out.append(Issue("information", "informational", rtype,
                             f"Base profile {base} of {url} is not held; only its known constraints were checked"))
        for cp in chain:
            if cp.url in applied:
                continue
            applied.add(cp.url)
            if cp.type != rtype:
                out.append(Issue("error", "invalid", rtype, f"Profile {cp.url} is for {cp.type}, not {rtype}"))
                return out
            for problem in cp.problems:
                out.append(Issue("warning", "processing", rtype, f"Profile {cp.url}: {problem}"))
            _node(cp.root, (resource, rtype), rtype, _Run(self.registry, resource, out, cp.url))
        return out

    def check_extensions(self, resource: dict, out: list[Issue]) -> None:
        """Every extension whose url is a definition we hold is checked against it, wherever it is."""
        known = self.registry.extension_urls()
        if known and self._mentions_any(resource, known):
            self._scan(resource, resource, [(resource.get("resourceType", ""), None)], known, out)

    def _mentions_any(self, resource: dict, known: frozenset[str]) -> bool:
        """Whether any known extension url occurs in the resource at all: one serialisation and a
        few substring searches in C, so most writes (no such extension) skip the Python walk."""
        if self._known_bytes is None or self._known_bytes[0] is not known:
            self._known_bytes = (known, tuple(u.encode() for u in known))
        try:
            raw = orjson.dumps(resource)
        except (TypeError, orjson.JSONEncodeError):
            return True
        return any(u in raw for u in self._known_bytes[1])

    def _scan(self, root: dict, node: dict, keys: list, known: frozenset[str], out: list[Issue]) -> None:
        # The path is built only for an extension we check, from (name, index) pairs.
        for key, value in node.items():
            if type(value) is list:
                is_ext = key == "extension" or key == "modifierExtension"
                for i, v in enumerate(value):
                    if type(v) is dict:
                        keys.append((key, i))
                        if is_ext and v.get("url") in known:
                            where = ".".join(k if i is None else f"{k}[{i}]" for k, i in keys)
                            self._extension(root, v, v["url"], where, out)
                        self._scan(root, v, keys, known, out)
                        keys.pop()
            elif type(value) is dict:
                keys.append((key, None))
                self._scan(root, value, keys, known, out)
                keys.pop()

    def _extension(self, root: dict, ext: dict, url: str, path: str, out: list[Issue]) -> None:
        chain, _ = self.registry.chain(url)
        for cp in chain:
            if cp.type == "Extension":
                _node(cp.root, (ext, "Extension"), path, _Run(self.registry, root, out, cp.url))

# ----------------------------------------------------------------------------- the walk


def _members(value: Any, vtype: str | None, name: str, path: str) -> list[tuple[Any, str | None, str]]:
    """The instance's values for a child element name: [(value, type, FHIRPath)]."""
    if not isinstance(value, dict):
        return []
    key = name
    if name.endswith("[x]"):
        prefix = name[:-3]
        key = next((k for k in value if k.startswith(prefix) and k[len(prefix):len(prefix) + 1].isupper()), "")
        if not key:
            return []
    raw = value.get(key)
    if raw is None:
        return []
    etype = _element_type(vtype, key)
    if raw is None:
        return []
    shown = key if not name.endswith("[x]") else name[:-3]
    if isinstance(raw, list):
        return [(v, _resource_type(v, etype), f"{path}.{shown}[{i}]") for i, v in enumerate(raw) if v is not None]
    return [(raw, _resource_type(raw, etype), f"{path}.{shown}")]


_ETYPES: dict[tuple[str | None, str], str | None] = {}


def _element_type(vtype: str | None, key: str) -> str | None:
    """The FHIR type of member `key` of a `vtype` value, from the type table (memoised)."""
    try:
        return _ETYPES[(vtype, key)]
    except KeyError:
        info = type_info(vtype) if vtype else None
        el = info.by_name.get(key) if info is not None else None
        found = _ETYPES[(vtype, key)] = el.type if el is not None else None
        return found


def _resource_type(value: Any, etype: str | None) -> str | None:
    if etype == "Resource" and isinstance(value, dict):
        return value.get("resourceType")
    return etype


def _node(rule: ElementRule, item: tuple[Any, str | None], path: str, run: _Run) -> None:
    """Checks on one instance value (`item`) that `rule` describes, then its children."""
    value, vtype = item
    if not rule.checks:
        for name, child in rule.children.items():
            _element(child, _members(value, vtype, name, path), f"{path}.{name.removesuffix('[x]')}", run)
        return
    if rule.types and rule.name.endswith("[x]") and vtype is not None:
        allowed = set(rule.types)
        if vtype not in allowed:
            run.issue("error", "structure", path,
                      f"{rule.id}: type {vtype} is not allowed here (allowed: {', '.join(rule.types)})")
    if rule.has_fixed and value != rule.fixed:
        run.issue("error", "value", path, f"{rule.id}: value must be exactly {_show(rule.fixed)}, found {_show(value)}")
    if rule.has_pattern and not _pattern_ok(value, rule.pattern):
        run.issue("error", "value", path, f"{rule.id}: value must match the pattern {_show(rule.pattern)}, "
                                          f"found {_show(value)}")
    if rule.max_length is not None and isinstance(value, str) and len(value) > rule.max_length:
        run.issue("error", "too-long", path, f"{rule.id}: longer than {rule.max_length} characters")
    if rule.binding is not None:
        _binding(rule, value, vtype, path, run)
    if rule.target_types is not None and isinstance(value, dict):
        _reference_target(rule, value, path, run)
    for c in rule.constraints:
        _invariant(c, item, path, run)
    for name, child in rule.children.items():
        _element(child, _members(value, vtype, name, path), f"{path}.{name.removesuffix('[x]')}", run)


def _element(rule: ElementRule, items: list[tuple[Any, str | None, str]], path: str, run: _Run) -> None:
    """An element rule over all the values one parent holds: cardinality, slices, then each value."""
    _cardinality(rule, len(items), path, run, rule.id)
    for value, vtype, where in items:
        _node(rule, (value, vtype), where, run)
    if not rule.slices:
        return
    discs, rules = rule.slicing or (_default_discriminators(rule.name), "open")
    matched: dict[int, list[tuple[Any, str | None, str]]] = {i: [] for i in range(len(rule.slices))}
    for entry in items:
        slot = next((i for i, s in enumerate(rule.slices) if _in_slice(s, discs, entry[0], entry[1])), None)
        if slot is None:
            if rules == "closed":
                run.issue("error", "structure", entry[2],
                          f"{rule.id}: the value matches none of the slices and the slicing is closed")
            continue
        matched[slot].append(entry)
    for i, s in enumerate(rule.slices):
        _cardinality(s, len(matched[i]), path, run, s.id or f"{rule.id}:{s.slice_name}")
        for value, vtype, where in matched[i]:
            _node(s, (value, vtype), where, run)


def _cardinality(rule: ElementRule, count: int, path: str, run: _Run, label: str) -> None:
    if rule.min and count < rule.min:
        run.issue("error", "required", path,
                  f"{label}: minimum required = {rule.min}, but only found {count} (profile {run.profile})")
    if rule.max is not None and count > rule.max:
        run.issue("error", "structure", path,
                  f"{label}: maximum allowed = {rule.max}, but found {count} (profile {run.profile})")


def _default_discriminators(name: str) -> tuple[Discriminator, ...]:
    if name in ("extension", "modifierExtension"):
        return (Discriminator("value", "url"),)
    return ()


def _in_slice(s: ElementRule, discs: tuple[Discriminator, ...], value: Any, vtype: str | None) -> bool:
    if not discs:
        return False
    for d in discs:
        if d.type in ("value", "pattern"):
            target = s if d.path == "$this" else _descend(s, d.path)
            base = s.base_slice
            while (target is None or not (target.has_fixed or target.has_pattern)) and base is not None:
                target = base if d.path == "$this" else _descend(base, d.path)
                base = base.base_slice
            if target is not None and target.has_fixed:
                expected, exact = target.fixed, True
            elif target is not None and target.has_pattern:
                expected, exact = target.pattern, False
            elif d.path == "url" and s.profiles:
                expected, exact = s.profiles[0], True
            else:
                return False
            found = [value] if d.path == "$this" else _path_values(value, vtype, d.path)
            if not any((v == expected) if exact else _pattern_ok(v, expected) for v in found):
                return False
        elif d.type == "exists":
            target = _descend(s, d.path)
            present = bool(_path_values(value, vtype, d.path))
            if target is None or (target.min and not present) or (target.max == 0 and present):
                return False
        elif d.type == "type":
            if not s.types or vtype not in s.types:
                return False
        else:  # profile discriminators are not evaluated: such slices never match
            return False
    return True


def _descend(rule: ElementRule, path: str) -> ElementRule | None:
    node: ElementRule | None = rule
    for name in path.split("."):
        if node is None:
            return None
        node = node.children.get(name) or node.children.get(name + "[x]")
    return node


def _path_values(value: Any, vtype: str | None, path: str) -> list[Any]:
    if _SIMPLE.match(path):
        current = [value]
        for name in path.split("."):
            nxt: list[Any] = []
            for v in current:
                if isinstance(v, dict) and name in v:
                    got = v[name]
                    nxt.extend(got if isinstance(got, list) else [got])
            current = nxt
        return current
    try:
        return [v for v, _ in compile_expression(path)([(value, vtype)], Env(context=[(value, vtype)]))]
    except (FhirPathError, ValueError):
        return []


def _pattern_ok(value: Any, pattern: Any) -> bool:
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(_pattern_ok(value.get(k), p) for k, p in pattern.items())
    if isinstance(pattern, list):
        return isinstance(value, list) and all(any(_pattern_ok(v, p) for v in value) for p in pattern)
    return value == pattern


def _show(value: Any) -> str:
    import orjson

    text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= 160 else text[:157] + "..."


def _binding(rule: ElementRule, value: Any, vtype: str | None, path: str, run: _Run) -> None:
    strength, vs = rule.binding
    term = run.registry.terminology
    if not term.knows(vs):
        run.issue("information", "not-supported", path, f"{rule.id}: value set {vs} is not held; code not checked")
        return
    if isinstance(value, str):
        codings = [(None, value)]
    elif isinstance(value, dict) and (vtype == "CodeableConcept" or "coding" in value or "text" in value):
        codings = [(c.get("system"), c.get("code")) for c in value.get("coding") or () if isinstance(c, dict)]
    elif isinstance(value, dict) and (vtype == "Coding" or "code" in value):
        codings = [(value.get("system"), value.get("code"))]
    else:
        return
    codings = [(s, c) for s, c in codings if isinstance(c, str)]
    if not codings:
        if strength == "required":
            run.issue("error", "code-invalid", path, f"{rule.id}: a code from {vs} is required (found none)")
        return
    results = [term.contains(vs, s, c) for s, c in codings]
    if any(r is not False for r in results):
        return
    shown = ", ".join(f"{s}#{c}" if s else c for s, c in codings)
    allowed = term.codes_text(vs)
    msg = f"{rule.id}: {shown} is not in the value set {vs}" + (f" (allowed: {allowed})" if allowed else "")
    run.issue("error" if strength == "required" else "warning", "code-invalid", path, msg)


def _reference_target(rule: ElementRule, value: dict, path: str, run: _Run) -> None:
    ref = value.get("reference")
    rtype = value.get("type")
    if rtype is None and isinstance(ref, str):
        m = _REF.match(ref) or _COND_REF.match(ref)
        rtype = m.group(1) if m else None
        if rtype is None and ref.startswith("#"):
            contained = next((c for c in run.root.get("contained") or () if isinstance(c, dict)
                              and c.get("id") == ref[1:]), None)
            rtype = contained.get("resourceType") if contained else None
    if rtype is not None and rtype not in rule.target_types:
        run.issue("error", "structure", path,
                  f"{rule.id}: a reference to {rtype} is not allowed here "
                  f"(allowed: {', '.join(sorted(rule.target_types))})")


def _invariant(c, item: tuple[Any, str | None], path: str, run: _Run) -> None:
    env = Env(resource=(run.root, run.root.get("resourceType")), context=[item])
    try:
        result = boolean(c.fn([item], env))
    except (FhirPathError, ValueError, TypeError) as exc:
        run.issue("warning", "processing", path, f"{c.key}: invariant could not be evaluated ({exc}): {c.expression}")
        return
    if result is False:
        severity = "warning" if c.severity == "warning" else "error"
        run.issue(severity, "invariant", path, f"{c.key}: {c.human} [{c.expression}]")
