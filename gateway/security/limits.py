"""Body nesting limit: a deeply nested JSON or XML body is refused (400) before any handler walks it.

FHIR resources are a few levels deep (a Bundle entry's resource rarely passes 15); recursive code
further in (validation, XML rendering, JSON Patch) must never meet a body deep enough to exhaust
the interpreter's stack. The walk is iterative and stops at the first container past the limit.
"""

from __future__ import annotations

import orjson

from gateway.fhir.outcome import bad_request


def too_deep(value, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def check_depth(value, limit: int) -> None:
    if isinstance(value, (dict, list)) and limit > 0 and too_deep(value, limit):
        raise bad_request(f"The body is nested more than {limit} levels deep", code="too-costly")


def check_raw_json_depth(raw: bytes, content_type: str, limit: int) -> None:
    """Bodies read by their own handlers (JSON Patch, ADW JSON): the same limit, checked here."""
    if "json" not in content_type or not raw.strip():
        return
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return  # the handler reports unreadable JSON itself
    check_depth(value, limit)
