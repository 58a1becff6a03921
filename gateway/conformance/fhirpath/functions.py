"""The FHIRPath functions the profile invariants and TestScript asserts use.

Arguments come in two kinds: *criteria* (where, select, all, exists, repeat, iif) are evaluated
once per input item with `$this` bound to it; *values* (startsWith('x'), extension(url), take(2))
are evaluated once against the expression's own context, as FHIRPath §5 says.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from functools import lru_cache
from typing import Callable

from .evaluate import Env, Fn, FhirPathError, _b, _child, _distinct, boolean, compile_tree
from .values import Item, equal, is_type, to_string, type_of

_CRITERIA = {"where", "select", "all", "exists", "repeat", "iif", "trace", "sort"}
_Impl = Callable[[list[Item], list, Env], list[Item]]
_FUNCTIONS: dict[str, tuple[_Impl, int, int]] = {}  # name -> (impl, min args, max args)


def _fn(name: str, lo: int = 0, hi: int = 0):
    def register(impl: _Impl) -> _Impl:
        _FUNCTIONS[name] = (impl, lo, hi)
        return impl

    return register


def compile_call(name: str, args: list[tuple]) -> Fn:
    spec = _FUNCTIONS.get(name)
    if spec is None:
        raise FhirPathError(f"Function {name}() is not supported")
    impl, lo, hi = spec
    if not lo <= len(args) <= hi:
        raise FhirPathError(f"{name}() takes {lo}..{hi} arguments, got {len(args)}")
    if name in ("ofType", "is", "as"):
        compiled: list = [_type_arg(a) for a in args]
    else:
        compiled = [compile_tree(a) for a in args]

    def run(focus: list[Item], env: Env) -> list[Item]:
        return impl(focus, compiled, env)

    return run


def _type_arg(node: tuple) -> str:
    if node[0] == "id":
        return node[1]
    if node[0] == "dot":
        return _type_arg(node[1]) + "." + _type_arg(node[2])
    raise FhirPathError("Expected a type name")


def _value(arg: Fn, env: Env) -> list[Item]:
    """A value argument, evaluated against the context of the whole expression."""
    return arg([env.this] if env.this is not None else env.context, env)


def _one(arg: Fn, env: Env, kind: type | tuple) -> object | None:
    coll = _value(arg, env)
    if not coll:
        return None
    value = coll[0][0]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FhirPathError(f"Expected a {getattr(kind, '__name__', kind)} argument, found {value!r}")
    return value


def _string_input(focus: list[Item], name: str) -> str | None:
    if not focus:
        return None
    if len(focus) > 1:
        raise FhirPathError(f"{name}() needs a single string, found {len(focus)} items")
    s = to_string(focus[0])
    return s


def _each(focus: list[Item], env: Env, crit: Fn) -> list[tuple[Item, list[Item]]]:
    return [(item, crit([item], env.with_this(item, i))) for i, item in enumerate(focus)]


# ----------------------------------------------------------------------------- existence


@_fn("empty")
def _empty(focus, args, env):
    return _b(not focus)


@_fn("exists", 0, 1)
def _exists(focus, args, env):
    if args:
        return _b(any(boolean(r) for _, r in _each(focus, env, args[0])))
    return _b(bool(focus))


@_fn("all", 1, 1)
def _all(focus, args, env):
    return _b(all(boolean(r) for _, r in _each(focus, env, args[0])))


@_fn("allTrue")
def _all_true(focus, args, env):
    return _b(all(v is True for v, _ in focus))


@_fn("anyTrue")
def _any_true(focus, args, env):
    return _b(any(v is True for v, _ in focus))


@_fn("allFalse")
def _all_false(focus, args, env):
    return _b(all(v is False for v, _ in focus))


@_fn("anyFalse")
def _any_false(focus, args, env):
    return _b(any(v is False for v, _ in focus))


@_fn("count")
def _count(focus, args, env):
    return [(len(focus), "System.Integer")]


@_fn("distinct")
def _distinct_fn(focus, args, env):
    return _distinct(focus)


@_fn("isDistinct")
def _is_distinct(focus, args, env):
    return _b(len(_distinct(focus)) == len(focus))


@_fn("hasValue")
def _has_value(focus, args, env):
    return _b(len(focus) == 1 and not isinstance(focus[0][0], (dict, list)))


@_fn("subsetOf", 1, 1)
def _subset_of(focus, args, env):
    other = _value(args[0], env)
    return _b(all(any(equal(a, b) for b in other) for a in focus))


@_fn("supersetOf", 1, 1)
def _superset_of(focus, args, env):
    other = _value(args[0], env)
    return _b(all(any(equal(a, b) for b in focus) for a in other))


# ----------------------------------------------------------------------------- filtering and subsetting


@_fn("where", 1, 1)
def _where(focus, args, env):
    return [item for item, r in _each(focus, env, args[0]) if boolean(r) is True]


@_fn("select", 1, 1)
def _select(focus, args, env):
    return [x for _, r in _each(focus, env, args[0]) for x in r]


@_fn("repeat", 1, 1)
def _repeat(focus, args, env):
    out: list[Item] = []
    todo = list(focus)
    while todo:
        item = todo.pop(0)
        for child in args[0]([item], env.with_this(item, 0)):
            if not any(child[0] is seen[0] for seen in out):
                out.append(child)
                todo.append(child)
    return out


@_fn("ofType", 1, 1)
def _of_type(focus, args, env):
    return [i for i in focus if is_type(i, args[0])]


@_fn("as", 1, 1)
def _as(focus, args, env):
    return [i for i in focus if is_type(i, args[0])]


@_fn("is", 1, 1)
def _is(focus, args, env):
    if not focus:
        return []
    return _b(len(focus) == 1 and is_type(focus[0], args[0]))


@_fn("first")
def _first(focus, args, env):
    return focus[:1]


@_fn("last")
def _last(focus, args, env):
    return focus[-1:]


@_fn("tail")
def _tail(focus, args, env):
    return focus[1:]


@_fn("skip", 1, 1)
def _skip(focus, args, env):
    n = _one(args[0], env, int)
    return focus[max(n or 0, 0):]


@_fn("take", 1, 1)
def _take(focus, args, env):
    n = _one(args[0], env, int)
    return focus[: max(n or 0, 0)]


@_fn("single")
def _single(focus, args, env):
    if len(focus) > 1:
        raise FhirPathError(f"single() found {len(focus)} items")
    return focus


@_fn("union", 1, 1)
def _union(focus, args, env):
    return _distinct(focus + _value(args[0], env))


@_fn("combine", 1, 1)
def _combine(focus, args, env):
    return focus + _value(args[0], env)


@_fn("intersect", 1, 1)
def _intersect(focus, args, env):
    other = _value(args[0], env)
    return _distinct([a for a in focus if any(equal(a, b) for b in other)])


@_fn("exclude", 1, 1)
def _exclude(focus, args, env):
    other = _value(args[0], env)
    return [a for a in focus if not any(equal(a, b) for b in other)]


# ----------------------------------------------------------------------------- logic and utility


@_fn("not")
def _not(focus, args, env):
    b = boolean(focus)
    return [] if b is None else _b(not b)


@_fn("iif", 2, 3)
def _iif(focus, args, env):
    if len(focus) > 1:
        raise FhirPathError("iif() needs an empty or single input")
    this = focus[0] if focus else env.this
    inner = env.with_this(this, 0) if this is not None else env
    start = [this] if this is not None else env.context
    if boolean(args[0](start, inner)) is True:
        return args[1](start, inner)
    return args[2](start, inner) if len(args) == 3 else []


@_fn("trace", 1, 2)
def _trace(focus, args, env):
    return focus


@_fn("today")
def _today(focus, args, env):
    return [(datetime.now(timezone.utc).date().isoformat(), "System.Date")]


@_fn("now")
def _now(focus, args, env):
    return [(datetime.now(timezone.utc).isoformat(timespec="seconds"), "System.DateTime")]


@_fn("children")
def _children(focus, args, env):
    out: list[Item] = []
    for item in focus:
        if isinstance(item[0], dict):
            for key in item[0]:
                if key != "resourceType" and not key.startswith("_"):
                    _child(item, key, out)
    return out


@_fn("descendants")
def _descendants(focus, args, env):
    out: list[Item] = []
    todo = _children(focus, [], env)
    while todo:
        out.extend(todo)
        todo = _children(todo, [], env)
    return out


@_fn("extension", 1, 1)
def _extension(focus, args, env):
    urls = {v for v, _ in _value(args[0], env)}
    out: list[Item] = []
    for item in focus:
        if isinstance(item[0], dict):
            for ext in item[0].get("extension") or ():
                if isinstance(ext, dict) and ext.get("url") in urls:
                    out.append((ext, "Extension"))
    return out


@_fn("resolve")
def _resolve(focus, args, env):
    """Contained (`#id`) references resolve; others only through the caller's resolver, else are skipped."""
    out: list[Item] = []
    for value, typ in focus:
        ref = value.get("reference") if isinstance(value, dict) else value if isinstance(value, str) else None
        if not isinstance(ref, str):
            continue
        found = None
        root = (env.root or env.resource or (None, None))[0]
        if ref.startswith("#") and isinstance(root, dict):
            found = next((c for c in root.get("contained") or () if isinstance(c, dict) and c.get("id") == ref[1:]),
                         None)
        elif env.resolver is not None:
            found = env.resolver(ref)
        if isinstance(found, dict):
            out.append((found, found.get("resourceType")))
    return out


@_fn("memberOf", 1, 1)
def _member_of(focus, args, env):
    url = _one(args[0], env, str)
    if not focus or env.member_of is None or url is None:
        return []
    if len(focus) > 1:
        raise FhirPathError("memberOf() needs a single item")
    return _b(env.member_of(focus[0], url))


@_fn("conformsTo", 1, 1)
def _conforms_to(focus, args, env):
    return []  # profile checks are the validator's job, not an invariant's


@_fn("htmlChecks")
def _html_checks(focus, args, env):
    return _b(True)


# ----------------------------------------------------------------------------- conversion


@_fn("toString")
def _to_string(focus, args, env):
    s = _string_input(focus, "toString")
    return [] if s is None else [(s, "System.String")]


@_fn("toInteger")
def _to_integer(focus, args, env):
    if not focus:
        return []
    value = focus[0][0]
    if isinstance(value, bool):
        return [(int(value), "System.Integer")]
    if isinstance(value, int):
        return [(value, "System.Integer")]
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value):
        return [(int(value), "System.Integer")]
    return []


@_fn("toDecimal")
def _to_decimal(focus, args, env):
    if not focus:
        return []
    value = focus[0][0]
    try:
        return [(float(value), "System.Decimal")] if not isinstance(value, (dict, list)) else []
    except ValueError:
        return []


@_fn("convertsToInteger")
def _converts_to_integer(focus, args, env):
    return [] if not focus else _b(bool(_to_integer(focus, args, env)))


@_fn("toBoolean")
def _to_boolean(focus, args, env):
    if not focus:
        return []
    value = focus[0][0]
    if isinstance(value, bool):
        return [(value, "System.Boolean")]
    text = str(value).lower()
    if text in ("true", "t", "yes", "y", "1", "1.0"):
        return _b(True)
    if text in ("false", "f", "no", "n", "0", "0.0"):
        return _b(False)
    return []


# ----------------------------------------------------------------------------- strings


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.DOTALL)


def _string_fn(name: str, lo: int, hi: int, body: Callable[..., object]) -> None:
    def impl(focus, args, env):
        s = _string_input(focus, name)
        if s is None:
            return []
        values = []
        for a in args:
            coll = _value(a, env)
            if not coll:
                return []
            values.append(coll[0][0])
        result = body(s, *values)
        if result is None:
            return []
        if isinstance(result, bool):
            return _b(result)
        if isinstance(result, int):
            return [(result, "System.Integer")]
        return [(result, "System.String")]

    _FUNCTIONS[name] = (impl, lo, hi)


_string_fn("startsWith", 1, 1, lambda s, p: s.startswith(p))
_string_fn("endsWith", 1, 1, lambda s, p: s.endswith(p))
_string_fn("contains", 1, 1, lambda s, p: p in s)
_string_fn("matches", 1, 1, lambda s, p: _regex(p).search(s) is not None)
_string_fn("replaceMatches", 2, 2, lambda s, p, r: _regex(p).sub(r.replace("$", "\\"), s))
_string_fn("replace", 2, 2, lambda s, p, r: s.replace(p, r))
_string_fn("indexOf", 1, 1, lambda s, p: s.find(p))
_string_fn("substring", 1, 2, lambda s, start, length=None: None if not 0 <= start < len(s) else
           s[start:] if length is None else s[start:start + length])
_string_fn("upper", 0, 0, lambda s: s.upper())
_string_fn("lower", 0, 0, lambda s: s.lower())
_string_fn("trim", 0, 0, lambda s: s.strip())
_string_fn("length", 0, 0, lambda s: len(s))


@_fn("join", 0, 1)
def _join(focus, args, env):
    sep = _one(args[0], env, str) if args else ""
    return [((sep or "").join(to_string(i) or "" for i in focus), "System.String")]


@_fn("split", 1, 1)
def _split(focus, args, env):
    s = _string_input(focus, "split")
    sep = _one(args[0], env, str)
    if s is None or sep is None:
        return []
    return [(part, "System.String") for part in s.split(sep)]


@_fn("getResourceKey")
def _resource_key(focus, args, env):
    return [(f"{type_of(i)}/{i[0].get('id')}", "System.String") for i in focus if isinstance(i[0], dict)]
