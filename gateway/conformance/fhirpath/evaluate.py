"""Compile a FHIRPath tree into Python closures and run them over parsed FHIR JSON.

A compiled expression is `fn(focus, env) -> collection`. Compiling once and keeping the closure
is what makes invariants cheap on every write: no parsing and no tree walking at run time.
Navigation follows the FHIR type table, so a choice element (`value`) finds `valueQuantity` and
remembers that it is a Quantity (for `is`, `as` and `ofType`).
"""

from __future__ import annotations

import operator

from dataclasses import dataclass, field
from typing import Any, Callable

from gateway.fhir.structure import type_info

from .values import Item, compare, equal, equivalent, is_type, to_string, type_of

Fn = Callable[[list[Item], "Env"], list[Item]]


class FhirPathError(ValueError):
    """An expression that is well formed but cannot be evaluated (unknown function, bad arguments)."""


@dataclass
class Env:
    resource: Item | None = None  # %resource
    root: Item | None = None  # %rootResource
    context: list[Item] = field(default_factory=list)  # %context
    variables: dict[str, list[Item]] = field(default_factory=dict)  # %name
    this: Item | None = None
    index: int = 0
    total: list[Item] | None = None
    # memberOf(): (item, value set url) -> True/False, or None when the value set is unknown
    member_of: Callable[[Item, str], bool | None] | None = None
    # resolve(): a reference string -> the resource, or None (unresolved references are skipped)
    resolver: Callable[[str], dict | None] | None = None

    def with_this(self, item: Item, index: int) -> "Env":
        env = Env(self.resource, self.root, self.context, self.variables, item, index, self.total,
                  self.member_of, self.resolver)
        return env


def boolean(coll: list[Item]) -> bool | None:
    """Singleton evaluation of a collection as a Boolean (FHIRPath §4.5): empty -> None."""
    if not coll:
        return None
    if len(coll) > 1:
        raise FhirPathError("Expected a single value where a Boolean is needed, found a collection")
    value = coll[0][0]
    return value if isinstance(value, bool) else True


def _b(value: bool | None) -> list[Item]:
    return [] if value is None else [(value, "System.Boolean")]


# ----------------------------------------------------------------------------- navigation


def _child(item: Item, name: str, out: list[Item]) -> None:
    value, typ = item
    if not isinstance(value, dict):
        return
    info = type_info(typ) if typ and not typ.startswith("System.") else None
    if info is None and "resourceType" in value:
        info = type_info(value["resourceType"])
    if info is not None:
        el = info.by_name.get(name)
        if el is not None:
            _extend(value.get(name), el.type, out)
            return
        prefix = name + "[x]"
        for el in info.elements:
            if el.choice == prefix and el.name in value:
                _extend(value[el.name], el.type, out)
                return
        if name in value:
            _extend(value[name], None, out)
        return
    if name in value:
        _extend(value[name], None, out)
        return
    for key in value:  # untyped JSON: a choice element by its prefix
        if key.startswith(name) and key[len(name):len(name) + 1].isupper():
            _extend(value[key], key[len(name)].lower() + key[len(name) + 1:], out)
            return


def _extend(value: Any, typ: str | None, out: list[Item]) -> None:
    if value is None:
        return
    if typ == "Resource":
        typ = None
    if isinstance(value, list):
        out.extend((v, typ if typ else _rt(v)) for v in value if v is not None)
    else:
        out.append((value, typ if typ else _rt(value)))


def _rt(value: Any) -> str | None:
    if isinstance(value, dict):
        rt = value.get("resourceType")
        return rt if isinstance(rt, str) else None
    return None


def _path(name: str) -> Fn:
    def run(focus: list[Item], env: Env) -> list[Item]:
        out: list[Item] = []
        for item in focus:
            _child(item, name, out)
        return out

    return run


def _first_ident(name: str) -> Fn:
    """An identifier at the start of a path: a type name that matches the context, else a member."""
    member = _path(name)

    def run(focus: list[Item], env: Env) -> list[Item]:
        if name[:1].isupper() and focus and all(type_of(i) == name for i in focus):
            return focus
        return member(focus, env)

    return run


# ----------------------------------------------------------------------------- compile


def compile_tree(node: tuple) -> Fn:
    kind = node[0]
    if kind == "lit":
        if node[2] is None:
            return lambda focus, env: []
        item = (node[1], "System." + node[2])
        return lambda focus, env, item=item: [item]
    if kind == "id":
        return _first_ident(node[1])
    if kind == "var":
        return _variable(node[1])
    if kind == "dot":
        left = compile_tree(node[1])
        right = _path(node[2][1]) if node[2][0] == "id" else compile_tree(node[2])
        return lambda focus, env: right(left(focus, env), env)
    if kind == "fn":
        from .functions import compile_call

        return compile_call(node[1], node[2])
    if kind == "index":
        left, index = compile_tree(node[1]), compile_tree(node[2])

        def run_index(focus, env):
            coll = left(focus, env)
            i = index(focus, env)
            if not i or not isinstance(i[0][0], int):
                return []
            n = i[0][0]
            return [coll[n]] if 0 <= n < len(coll) else []

        return run_index
    if kind == "neg":
        inner = compile_tree(node[1])

        def run_neg(focus, env):
            return [(-v, t) for v, t in inner(focus, env) if isinstance(v, (int, float)) and not isinstance(v, bool)]

        return run_neg
    if kind == "type":
        left = compile_tree(node[2])
        name = node[3]
        if node[1] == "is":
            def run_is(focus, env):
                coll = left(focus, env)
                return [] if not coll else _b(is_type(coll[0], name)) if len(coll) == 1 else _too_many("is")
            return run_is

        def run_as(focus, env):
            return [i for i in left(focus, env) if is_type(i, name)]
        return run_as
    if kind == "op":
        return _operator(node[1], compile_tree(node[2]), compile_tree(node[3]))
    raise FhirPathError(f"Cannot compile {node!r}")


def _too_many(what: str):
    raise FhirPathError(f"'{what}' needs a single item, found a collection")


def _variable(name: str) -> Fn:
    if name == "$this":
        return lambda focus, env: [env.this] if env.this is not None else focus
    if name == "$index":
        return lambda focus, env: [(env.index, "System.Integer")]
    if name == "$total":
        return lambda focus, env: env.total or []
    key = name[1:]
    constants = {"ucum": "http://unitsofmeasure.org", "sct": "http://snomed.info/sct", "loinc": "http://loinc.org"}
    if key in constants:
        value = [(constants[key], "System.String")]
        return lambda focus, env: value
    if key == "resource":
        return lambda focus, env: [env.resource] if env.resource is not None else []
    if key == "rootResource":
        return lambda focus, env: [env.root or env.resource] if (env.root or env.resource) else []
    if key == "context":
        return lambda focus, env: env.context
    if key.startswith("vs-"):
        value = [(f"http://hl7.org/fhir/ValueSet/{key[3:]}", "System.String")]
        return lambda focus, env: value
    if key.startswith("ext-"):
        value = [(f"http://hl7.org/fhir/StructureDefinition/{key[4:]}", "System.String")]
        return lambda focus, env: value

    def run(focus, env):
        if key not in env.variables:
            raise FhirPathError(f"Unknown variable %{key}")
        return env.variables[key]

    return run


def _operator(op: str, left: Fn, right: Fn) -> Fn:
    if op in ("and", "or", "xor", "implies"):
        return _logic(op, left, right)
    if op == "|":
        def union(focus, env):
            return _distinct(left(focus, env) + right(focus, env))
        return union
    if op in ("=", "!="):
        def eq(focus, env):
            a, b = left(focus, env), right(focus, env)
            if not a or not b:
                return []
            if len(a) != len(b):
                result: bool | None = False
            else:
                result = True
                for x, y in zip(a, b):
                    r = equal(x, y)
                    if r is None:
                        result = None if result else result
                    elif not r:
                        result = False
                        break
            if result is None:
                return []
            return _b(result if op == "=" else not result)
        return eq
    if op in ("~", "!~"):
        def eqv(focus, env):
            a, b = left(focus, env), right(focus, env)
            result = len(a) == len(b) and all(
                any(equivalent(x, y) for y in b) for x in a)
            return _b(result if op == "~" else not result)
        return eqv
    if op in ("<", ">", "<=", ">="):
        def cmp(focus, env):
            a, b = left(focus, env), right(focus, env)
            if not a or not b:
                return []
            if len(a) > 1 or len(b) > 1:
                raise FhirPathError(f"'{op}' needs single items on both sides")
            c = compare(a[0], b[0])
            if c is None:
                return []
            return _b({"<": c < 0, ">": c > 0, "<=": c <= 0, ">=": c >= 0}[op])
        return cmp
    if op in ("in", "contains"):
        def member(focus, env):
            a, b = left(focus, env), right(focus, env)
            item, coll = (a, b) if op == "in" else (b, a)
            if not item:
                return []
            if len(item) > 1:
                raise FhirPathError(f"'{op}' needs a single item")
            return _b(any(equal(item[0], x) for x in coll))
        return member
    if op == "&":
        def concat(focus, env):
            a, b = left(focus, env), right(focus, env)
            return [((to_string(a[0]) or "" if a else "") + (to_string(b[0]) or "" if b else ""), "System.String")]
        return concat
    return _arithmetic(op, left, right)


def _logic(op: str, left: Fn, right: Fn) -> Fn:
    def run(focus, env):
        a = boolean(left(focus, env))
        if op == "and" and a is False:
            return _b(False)
        if op == "or" and a is True:
            return _b(True)
        if op == "implies" and a is False:
            return _b(True)
        b = boolean(right(focus, env))
        if op == "and":
            return _b(False if b is False else (True if a and b else None))
        if op == "or":
            return _b(True if b is True else (False if a is False and b is False else None))
        if op == "xor":
            return _b(None if a is None or b is None else a != b)
        # implies, a is True or empty
        if a is True:
            return _b(b)
        return _b(True if b is True else None)

    return run


_ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
               "div": lambda x, y: int(x // y), "mod": operator.mod}


def _arithmetic(op: str, left: Fn, right: Fn) -> Fn:
    apply = _ARITHMETIC[op]  # chosen once, at compile time: invariants run on every write
    by_zero_empty = op in ("/", "div", "mod")

    def run(focus, env):
        a, b = left(focus, env), right(focus, env)
        if not a or not b:
            return []
        x, y = a[0][0], b[0][0]
        if op == "+" and isinstance(x, str) and isinstance(y, str):
            return [(x + y, "System.String")]
        if type(x) is bool or type(y) is bool or not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
            raise FhirPathError(f"'{op}' needs numbers")
        if by_zero_empty and y == 0:
            return []
        value = apply(x, y)
        return [(value, "System.Decimal" if isinstance(value, float) else "System.Integer")]

    return run


def _distinct(coll: list[Item]) -> list[Item]:
    out: list[Item] = []
    for item in coll:
        if not any(equal(item, seen) for seen in out):
            out.append(item)
    return out
