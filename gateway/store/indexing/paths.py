"""Compiling the simple search-parameter paths of gateway.fhir.search_parameters.

A path such as `participant.individual.where(resolve() is Practitioner)` compiles once into a
tuple of steps; walking JSON with those steps is plain dict/list access, which keeps indexing
cheap on every write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_WHERE_EQ = re.compile(r"where\((\w+)\s*=\s*'([^']*)'\)")
_WHERE_IS = re.compile(r"where\(resolve\(\)\s+is\s+([A-Z]\w*)\)")


@dataclass(frozen=True, slots=True)
class Step:
    key: str
    # Keep only elements whose child `filter_key` equals `filter_value` (`where(system='phone')`).
    filter_key: str | None = None
    filter_value: str | None = None


@dataclass(frozen=True, slots=True)
class CompiledPath:
    steps: tuple[Step, ...]
    # `where(resolve() is T)`: a reference filter the reference emitter applies.
    only_type: str | None = None
    # `@name`: a computed value; the emitter is looked up by this name.
    computed: str | None = None


def _split_dots(path: str) -> list[str]:
    """Split on dots outside parentheses (a where() argument may contain none today, but could)."""
    parts, depth, cur = [], 0, []
    for c in path:
        if c == "." and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        depth += c == "("
        depth -= c == ")"
        cur.append(c)
    parts.append("".join(cur))
    return parts


def compile_path(path: str) -> CompiledPath:
    if path.startswith("@"):
        return CompiledPath((), computed=path[1:])
    steps: list[Step] = []
    only_type: str | None = None
    for part in _split_dots(path):
        if part.startswith("where("):
            if not steps:
                raise ValueError(f"path {path!r}: where() needs an element before it")
            m_is = _WHERE_IS.fullmatch(part)
            m_eq = _WHERE_EQ.fullmatch(part)
            if m_is:
                only_type = m_is.group(1)
            elif m_eq:
                last = steps.pop()
                steps.append(Step(last.key, m_eq.group(1), m_eq.group(2)))
            else:
                raise ValueError(f"path {path!r}: unsupported filter {part!r}")
        elif part.isidentifier():
            if only_type is not None:
                raise ValueError(f"path {path!r}: resolve() filter must come last")
            steps.append(Step(part))
        else:
            raise ValueError(f"path {path!r}: bad element {part!r}")
    if not steps:
        raise ValueError(f"empty path {path!r}")
    return CompiledPath(tuple(steps), only_type)


def walk(nodes: list[Any] | tuple[Any, ...], steps: tuple[Step, ...]) -> list[Any]:
    """All values at `steps` below `nodes`, lists flattened at every level (FHIRPath style)."""
    cur = nodes
    for step in steps:
        nxt: list[Any] = []
        key, fkey, fval = step.key, step.filter_key, step.filter_value
        for n in cur:
            if type(n) is not dict:
                continue
            v = n.get(key)
            if v is None:
                continue
            items = v if type(v) is list else (v,)
            if fkey is None:
                nxt.extend(items)
            else:
                nxt.extend(i for i in items if type(i) is dict and i.get(fkey) == fval)
        if not nxt:
            return nxt
        cur = nxt
    return list(cur)
