"""A FHIRPath (N1) evaluator over parsed FHIR JSON, for profile invariants and TestScript asserts.

    compiled = compile_expression("name.where(use = 'official').exists()")
    evaluate(resource, compiled) -> [True]

Covers paths (choice types by the FHIR type table), indexers, the Boolean, comparison,
membership, union and arithmetic operators, `is`/`as`, `$this`, `%resource`, `%context`, and the
functions in `functions.py`. `resolve()` finds contained resources (and whatever a caller's
resolver supplies); other references are skipped, i.e. return nothing.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .evaluate import Env, Fn, FhirPathError, boolean, compile_tree
from .parse import FhirPathSyntaxError, parse
from .values import Item

__all__ = ["Env", "FhirPathError", "FhirPathSyntaxError", "compile_expression", "evaluate", "values",
           "truthy", "item"]


@lru_cache(maxsize=4096)
def compile_expression(text: str) -> Fn:
    """Parse and compile once; later calls with the same text reuse the closure."""
    from . import functions  # noqa: F401  (registers the functions)

    return compile_tree(parse(text))


def item(value: Any, type_name: str | None = None) -> Item:
    if type_name is None and isinstance(value, dict):
        rt = value.get("resourceType")
        type_name = rt if isinstance(rt, str) else None
    return (value, type_name)


def evaluate(focus: Any, expression: str | Fn, env: Env | None = None, *, type_name: str | None = None,
             resource: Any = None) -> list[Item]:
    """Evaluate `expression` with `focus` (a JSON value) as its context; returns the collection."""
    fn = compile_expression(expression) if isinstance(expression, str) else expression
    start = [item(focus, type_name)] if focus is not None else []
    if env is None:
        env = Env()
    if env.resource is None:
        root = resource if resource is not None else focus
        env.resource = item(root) if root is not None else None
    env.context = start
    return fn(start, env)


def values(collection: list[Item]) -> list[Any]:
    return [v for v, _ in collection]


def truthy(collection: list[Item]) -> bool | None:
    return boolean(collection)
