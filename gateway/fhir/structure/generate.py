"""Generate ``r4b.json``, the FHIR type table, from the fhir.resources R4B models.

Run ``python -m gateway.fhir.structure.generate``.  fhir.resources is only needed
here (it is a test/dev dependency): the gateway loads the generated JSON at
runtime because importing the pydantic models takes seconds.

Output layout (kept compact because the file is committed)::

    {"fhirVersion": "4.3.0", "source": "...",
     "primitives": ["base64Binary", ...],
     "resources": ["Account", ...],                # concrete resource types
     "types": {"Encounter": {"kind": "resource", "base": "DomainResource",
                             "elements": [[name, type, min, max, choice], ...],
                             "requiredChoices": ["value[x]", ...]}}}

``elements`` follow ``elements_sequence()`` (the XML order).  ``type`` is a
primitive name, a complex type / backbone class name, or ``"Resource"`` for
elements holding any resource (``contained``, ``Bundle.entry.resource``...).
``max`` is ``"1"`` or ``"*"``; ``choice`` is ``""`` or e.g. ``"value[x]"``.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import typing
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).with_name("r4b.json")

# fhir_core marks primitives with metadata objects carrying ``__visit_name__``;
# a few have none (bool, UUID) and are mapped by class name instead.
_METADATA_NAMES = {"UuidVersion": "uuid", "EncodedBytes": None}

# Base classes that are never serialised themselves.
_SKIP = {"FHIRResourceModel", "FHIRPrimitiveExtension"}
_ABSTRACT = {"Resource", "DomainResource", "Element", "BackboneElement"}


def _load_classes() -> dict[str, type]:
    import fhir.resources.R4B as pkg
    from fhir_core.fhirabstractmodel import FHIRAbstractModel

    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        for name, obj in vars(mod).items():
            if (
                isinstance(obj, type)
                and issubclass(obj, FHIRAbstractModel)
                and obj.__module__ == mod.__name__
                and name not in _SKIP
            ):
                found[name] = obj
    return found


def _primitive_name(annotated: Any) -> str | None:
    for meta in getattr(annotated, "__metadata__", ()):
        visit = getattr(meta, "__visit_name__", None)
        if visit is None:
            visit = _METADATA_NAMES.get(type(meta).__name__)
        if visit:
            return str(visit)
    return None


def _resolve(annotation: Any) -> tuple[str, bool]:
    """Return (type name, is_array) for a model field annotation."""
    is_array = False
    candidates = [annotation]
    while candidates:
        ann = candidates.pop(0)
        origin = typing.get_origin(ann)
        if ann is type(None):
            continue
        if ann is bool:
            return "boolean", is_array
        if origin is typing.Annotated:
            prim = _primitive_name(ann)
            if prim is None:
                raise ValueError(f"unrecognised primitive {ann!r}")
            return prim, is_array
        if origin in (list, typing.List):
            is_array = True
            candidates = list(typing.get_args(ann))
            continue
        if origin is not None:  # Optional / Union / X | None
            candidates = list(typing.get_args(ann)) + candidates
            continue
        get_klass = getattr(ann, "get_model_klass", None)
        if get_klass is not None:
            return get_klass().__name__, is_array
    raise ValueError(f"cannot resolve annotation {annotation!r}")


def _kind(name: str, cls: type) -> str:
    from fhir.resources.R4B.backboneelement import BackboneElement

    if name in _ABSTRACT:
        return "abstract"
    if cls.has_resource_base():
        return "resource"
    if issubclass(cls, BackboneElement):
        return "backbone"
    return "datatype"


def _describe(name: str, cls: type) -> dict[str, Any]:
    by_alias = {f.alias or n: f for n, f in cls.model_fields.items()}
    elements: list[list[Any]] = []
    required_choices: list[str] = []
    summary: list[str] = []
    for json_name in cls.elements_sequence():
        field = by_alias[json_name]
        extra = field.json_schema_extra or {}
        type_name, is_array = _resolve(field.annotation)
        # Required primitives are Optional in pydantic (the ``_x`` shadow may
        # stand in for the value) and flagged with ``element_required``.
        required = field.is_required() or bool(extra.get("element_required"))
        if extra.get("summary_element_property"):
            summary.append(json_name)
        choice = extra.get("one_of_many")
        choice_name = f"{choice}[x]" if choice else ""
        if choice and extra.get("one_of_many_required"):
            if choice_name not in required_choices:
                required_choices.append(choice_name)
        elements.append(
            [json_name, type_name, 1 if required else 0, "*" if is_array else "1", choice_name]
        )
    bases = [b.__name__ for b in cls.__mro__[1:] if b.__name__ in _ABSTRACT]
    out: dict[str, Any] = {"kind": _kind(name, cls), "elements": elements}
    if bases:
        out["base"] = bases[0]
    if required_choices:
        out["requiredChoices"] = required_choices
    if out["kind"] == "resource":
        out["summary"] = summary  # elements kept by _summary=true
    return out


def build() -> dict[str, Any]:
    import fhir.resources

    classes = _load_classes()
    types = {name: _describe(name, cls) for name, cls in sorted(classes.items())}
    primitives = sorted(
        {el[1] for t in types.values() for el in t["elements"] if el[1][0].islower()}
    )
    resources = sorted(n for n, t in types.items() if t["kind"] == "resource")
    return {
        "fhirVersion": "4.3.0",
        "source": f"fhir.resources {fhir.resources.__version__} R4B",
        "primitives": primitives,
        "resources": resources,
        "types": types,
    }


def _dump(table: dict[str, Any]) -> str:
    # One type per line keeps diffs of the committed file reviewable.
    lines = ["{"]
    for key in ("fhirVersion", "source", "primitives", "resources"):
        lines.append(f"{json.dumps(key)}: {json.dumps(table[key], separators=(',', ':'))},")
    lines.append('"types": {')
    items = list(table["types"].items())
    for i, (name, info) in enumerate(items):
        sep = "," if i < len(items) - 1 else ""
        lines.append(f"{json.dumps(name)}: {json.dumps(info, separators=(',', ':'))}{sep}")
    lines.append("}}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else OUTPUT
    table = build()
    target.write_text(_dump(table), encoding="utf-8")
    print(f"wrote {target}: {len(table['types'])} types, {len(table['resources'])} resources")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
