"""FHIR R4 type table (generated from fhir.resources R4B into ``r4b.json``).

The table is loaded lazily, once, on first use so importing the gateway stays
cheap and fhir.resources is never needed at runtime.  Regenerate with
``python -m gateway.fhir.structure.generate``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "ElementInfo",
    "TypeInfo",
    "PRIMITIVE_TYPES",
    "RESOURCE_TYPES",
    "RESOURCE",
    "type_info",
    "summary_elements",
    "is_primitive",
]

TABLE_PATH = Path(__file__).with_name("r4b.json")
# Element type used for members that hold any resource (contained, entry.resource).
RESOURCE = "Resource"


@dataclass(frozen=True, slots=True)
class ElementInfo:
    name: str  # JSON (and XML) element name, e.g. "valueQuantity"
    type: str  # primitive name, complex/backbone type name, or "Resource"
    is_array: bool
    min: int  # 0 or 1
    choice: str | None  # choice group, e.g. "value[x]"
    is_primitive: bool
    is_resource: bool  # holds a whole resource (needs its own resourceType)


@dataclass(frozen=True, slots=True)
class TypeInfo:
    name: str
    kind: str  # "resource" | "datatype" | "backbone" | "abstract"
    elements: tuple[ElementInfo, ...]  # XML order
    by_name: dict[str, ElementInfo]
    required_choices: tuple[str, ...]

    @property
    def is_resource(self) -> bool:
        return self.kind == "resource"


class _Table:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.primitives = frozenset(raw["primitives"])
        self.resources = frozenset(raw["resources"])
        self.raw_types: dict[str, Any] = raw["types"]
        self.types: dict[str, TypeInfo] = {}

    def get(self, name: str) -> TypeInfo | None:
        info = self.types.get(name)
        if info is None:
            raw = self.raw_types.get(name)
            if raw is None:
                return None
            info = self._build(name, raw)
            self.types[name] = info
        return info

    def _build(self, name: str, raw: dict[str, Any]) -> TypeInfo:
        elements = tuple(
            ElementInfo(
                name=el_name,
                type=el_type,
                is_array=el_max == "*",
                min=el_min,
                choice=choice or None,
                is_primitive=el_type in self.primitives,
                is_resource=el_type == RESOURCE,
            )
            for el_name, el_type, el_min, el_max, choice in raw["elements"]
        )
        return TypeInfo(
            name=name,
            kind=raw["kind"],
            elements=elements,
            by_name={e.name: e for e in elements},
            required_choices=tuple(raw.get("requiredChoices", ())),
        )


_lock = threading.Lock()
_table: _Table | None = None


def _load() -> _Table:
    global _table
    if _table is None:
        with _lock:
            if _table is None:
                _table = _Table(orjson.loads(TABLE_PATH.read_bytes()))
    return _table


def type_info(name: str) -> TypeInfo | None:
    """Structure of a resource, datatype or backbone type; None if unknown."""
    return _load().get(name)


def summary_elements(resource_type: str) -> frozenset[str]:
    """Top-level elements a resource keeps under `_summary=true` (isSummary in the spec)."""
    raw = _load().raw_types.get(resource_type) or {}
    return frozenset(raw.get("summary", ()))


def is_primitive(type_name: str) -> bool:
    return type_name in _load().primitives


def __getattr__(name: str) -> frozenset[str]:
    # PEP 562: the constants are materialised on first access, not on import.
    if name == "RESOURCE_TYPES":
        return _load().resources
    if name == "PRIMITIVE_TYPES":
        return _load().primitives
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
