"""FHIR R4 (4.0.1) standard search parameters for the resource types the gateway stores.

The definitions live in `search_parameters.json` beside this module: they are data from the
standard, and keeping them out of code makes them easy to review against the spec. Each path is a
dotted element path with choice types spelled out (`effectiveDateTime`, `effectivePeriod`), so the
indexer never needs type information to follow it. Two FHIRPath filters are allowed at any step:

* `telecom.where(system='phone')`: keep only elements whose child equals a literal, and
* `subject.where(resolve() is Patient)`: keep only references to one resource type.

A path starting with `@` names a value computed in code (see gateway.store.indexing.extract).
Composite parameters, `near` and `phonetic` are left out: the store has no index for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PARAM_TYPES = frozenset({"string", "token", "reference", "date", "number", "quantity", "uri"})


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One search parameter of one resource type.

    `targets` lists the resource types a reference parameter may point at; an empty tuple on a
    reference parameter means any type (e.g. Provenance.target).
    """

    name: str
    type: str
    paths: tuple[str, ...]
    targets: tuple[str, ...] = ()


# The R4 Patient CompartmentDefinition, restricted to the types above: which reference
# parameters of a resource put it in a patient's compartment. Types the standard lists as never
# in the compartment (Organization, Practitioner, Location, ConceptMap, Task, ...) are absent.
PATIENT_COMPARTMENT: dict[str, tuple[str, ...]] = {
    "AuditEvent": ("patient",),
    "CarePlan": ("patient", "performer"),
    "CareTeam": ("patient", "participant"),
    "Condition": ("patient", "asserter"),
    "Encounter": ("patient",),
    "EpisodeOfCare": ("patient",),
    "Goal": ("patient",),
    "Observation": ("subject", "performer"),
    "Patient": ("link",),
    "Procedure": ("patient", "performer"),
    "Provenance": ("patient",),
    "ServiceRequest": ("subject", "performer"),
}

_DATA_FILE = Path(__file__).with_name("search_parameters.json")


def _parse_entry(name: str, entry: list[str]) -> SearchParam:
    kind, paths = entry[0], tuple(p.strip() for p in entry[1].split(" | "))
    if kind not in PARAM_TYPES:
        raise ValueError(f"search parameter {name!r}: unknown type {kind!r}")
    targets: tuple[str, ...] = ()
    if kind == "reference":
        # A reference without a target list is a data error, so '*' spells "any" explicitly.
        if len(entry) < 3:
            raise ValueError(f"reference search parameter {name!r} has no targets")
        targets = () if entry[2] == "*" else tuple(entry[2].split())
    return SearchParam(name, kind, paths, targets)


@cache
def _load() -> dict[str, dict[str, SearchParam]]:
    raw = json.loads(_DATA_FILE.read_text(encoding="utf-8"))
    common = {n: _parse_entry(n, e) for n, e in raw.pop("Resource").items()}
    raw.pop("_comment", None)
    table: dict[str, dict[str, SearchParam]] = {"Resource": common}
    for rtype, entries in raw.items():
        params = dict(common)
        params.update((n, _parse_entry(n, e)) for n, e in entries.items())
        table[rtype] = params
    return table


def params_table(resource_type: str) -> dict[str, SearchParam]:
    """The shared (do not mutate) parameter table of a type; common parameters for other types.

    Used on hot paths (indexing, compiling) to avoid copying; `search_params_for` is the safe API.
    """
    table = _load()
    return table.get(resource_type) or table["Resource"]


def search_params_for(resource_type: str) -> dict[str, SearchParam]:
    """Search parameters of `resource_type`, including the common `_id`, `_lastUpdated`, ...

    An unknown type gets only the common parameters, which every resource has.
    """
    return dict(params_table(resource_type))


def all_search_types() -> tuple[str, ...]:
    """The resource types with standard search parameters defined here, sorted."""
    return tuple(sorted(t for t in _load() if t != "Resource"))


def param_base_name(name: str) -> str:
    """The parameter part of a query name: `subject:Patient.name` -> `subject`."""
    return name.split(".", 1)[0].split(":", 1)[0]
