"""A column spec: one source file layout, as data (`mappings/<source>-<layout>.json`).

A second council whose extract names its columns differently, writes dates another way or
exports in Windows-1252 is onboarded with a new spec file, not new code: the adapters read named
targets (`event_start`, `nhs_number`), never header names.

Spec JSON::

    {
      "resourceType": "ColumnSpec",          # not a FHIR resource: the ConceptMap loader skips it
      "id": "council-cld", "title": "...", "adapter": "council",
      "encoding": "utf-8-sig", "delimiter": ",", "nullValues": ["NULL"],
      "rowKind": {"target": "event_type",
                  "values": {"request": ["Request", "Referral"], "service": ["Service"], ...}},
      "eventKey": {"request": ["event_reference"], ...},             # the event's own reference
      "eventKeyFallback": {"request": ["person_id", "event_start", "route_of_access"], ...},
      "settings": {...},                                              # adapter-specific constants
      "conceptMaps": {"outcome-status": "https://.../ConceptMap/council-event-outcome-status"},
                                                                      # tables the adapter uses by name
      "columns": [
        {"name": "Event_Start_Date", "target": "event_start", "type": "date",
         "formats": ["%Y-%m-%d", "%d/%m/%Y"], "required": true,
         "element": "ServiceRequest.authoredOn | Encounter.period.start | CarePlan.period.start"},
        {"name": "Request_Route_of_Access", "target": "route_of_access", "type": "code",
         "conceptMap": "https://fhir.activerecovery.example/ConceptMap/council-route-of-access",
         "requiredFor": ["request"]},
        ...
      ]
    }

Column keys: `name` (header, matched case-insensitively), `target` (the named field the adapter
reads), `type` (string, date, time, code, integer, decimal, nhs-number, postcode), `required`
(the column must be in the header and every row must have a value), `requiredFor` (row kinds that
must have a value), `formats` (date/time, strptime), `conceptMap` (code), `pattern` and
`maxLength` (string), `min`/`max` (integer, decimal), `onInvalid` (`reject`, the default: a bad
value rejects the row; `warn`: the value is dropped with a warning), `element` (documentation:
where the value lands in FHIR).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.adapters.hl7v2.mapping.codes import load_concept_maps

from .codes import CodeTable, normalise_code

TYPES = frozenset({"string", "date", "time", "code", "integer", "decimal", "nhs-number", "postcode"})
_DEFAULT_FORMATS = {"date": ("%Y-%m-%d",), "time": ("%H:%M", "%H:%M:%S")}


@dataclass(frozen=True)
class Column:
    name: str
    target: str
    type: str = "string"
    required: bool = False
    required_for: frozenset[str] = frozenset()
    formats: tuple[str, ...] = ()
    concept_map: str | None = None
    pattern: re.Pattern | None = None
    max_length: int | None = None
    min: float | None = None
    max: float | None = None
    on_invalid: str = "reject"
    element: str | None = None


@dataclass(frozen=True)
class RowKind:
    """The column that says what a row is (CLD `Event_Type`), and its accepted spellings."""

    target: str
    kinds: dict[str, str]  # normalised spelling -> kind
    labels: tuple[str, ...]  # the spellings, for messages

    def classify(self, value: str | None) -> str | None:
        return self.kinds.get(normalise_code(value)) if value else None


@dataclass(frozen=True)
class ColumnSpec:
    id: str
    title: str
    adapter: str
    columns: tuple[Column, ...]
    row_kind: RowKind | None
    event_key: dict[str, tuple[str, ...]]
    event_key_fallback: dict[str, tuple[str, ...]]
    settings: dict[str, Any]
    codes: dict[str, CodeTable]  # ConceptMap url -> table (code columns)
    tables: dict[str, CodeTable]  # name -> table, for the adapter's own lookups ("conceptMaps")
    encoding: str = "utf-8-sig"
    delimiter: str = ","
    null_values: frozenset[str] = frozenset()
    path: Path | None = None
    by_target: dict[str, Column] = field(default_factory=dict)

    def setting(self, name: str, default: Any = None) -> Any:
        return self.settings.get(name, default)

    def table(self, name: str) -> CodeTable:
        return self.tables[name]


def load_spec(path: str | Path, concept_maps: dict[str, dict] | None = None) -> ColumnSpec:
    """Read and check a spec. ConceptMaps come from `concept_maps` (url -> ConceptMap), else from
    the spec file's folder. Every mistake fails here, at start, not on row 40,000."""
    path = Path(path)
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read column spec ({exc})") from exc
    if concept_maps is None:
        concept_maps = load_concept_maps(path.parent)
    return spec_from_dict(data, concept_maps, path)


def spec_from_dict(data: dict, concept_maps: dict[str, dict], path: Path | None = None) -> ColumnSpec:
    where = str(path or data.get("id") or "column spec")
    if data.get("resourceType") != "ColumnSpec":
        raise ValueError(f"{where}: resourceType must be 'ColumnSpec'")
    columns: list[Column] = []
    tables: dict[str, CodeTable] = {}
    for i, raw in enumerate(data.get("columns") or []):
        columns.append(_column(raw, f"{where}: columns[{i}]", concept_maps, tables))
    if not columns:
        raise ValueError(f"{where}: no columns")
    by_target: dict[str, Column] = {}
    names: set[str] = set()
    for col in columns:
        if col.target in by_target:
            raise ValueError(f"{where}: target {col.target!r} appears twice")
        if col.name.casefold() in names:
            raise ValueError(f"{where}: column {col.name!r} appears twice")
        by_target[col.target] = col
        names.add(col.name.casefold())

    row_kind = None
    if data.get("rowKind"):
        rk = data["rowKind"]
        if rk.get("target") not in by_target:
            raise ValueError(f"{where}: rowKind.target {rk.get('target')!r} is not a column target")
        kinds = {normalise_code(label): kind for kind, labels in rk["values"].items() for label in labels}
        labels = tuple(label for labels in rk["values"].values() for label in labels)
        row_kind = RowKind(rk["target"], kinds, labels)
    all_kinds = set(row_kind.kinds.values()) if row_kind else {"row"}

    def keys(name: str) -> dict[str, tuple[str, ...]]:
        out = {kind: tuple(fields) for kind, fields in (data.get(name) or {}).items()}
        for kind, fields in out.items():
            if kind not in all_kinds:
                raise ValueError(f"{where}: {name} names unknown row kind {kind!r}")
            missing = [f for f in fields if f not in by_target]
            if missing:
                raise ValueError(f"{where}: {name}.{kind} uses unknown targets {missing}")
        return out

    event_key = keys("eventKey")
    if not event_key:
        raise ValueError(f"{where}: eventKey is required (it makes identifiers stable)")
    for col in columns:
        unknown = col.required_for - all_kinds
        if unknown:
            raise ValueError(f"{where}: column {col.name!r} requiredFor unknown kinds {sorted(unknown)}")
    named: dict[str, CodeTable] = {}
    for name, url in (data.get("conceptMaps") or {}).items():
        if url not in concept_maps:
            raise ValueError(f"{where}: conceptMaps.{name}: ConceptMap {url} is not in mappings/")
        named[name] = tables.get(url) or CodeTable(concept_maps[url])
    return ColumnSpec(
        id=data.get("id") or (path.stem if path else "spec"),
        title=data.get("title", ""),
        adapter=data.get("adapter", ""),
        columns=tuple(columns),
        row_kind=row_kind,
        event_key=event_key,
        event_key_fallback=keys("eventKeyFallback"),
        settings=dict(data.get("settings") or {}),
        codes=tables,
        tables=named,
        encoding=data.get("encoding", "utf-8-sig"),
        delimiter=data.get("delimiter", ","),
        null_values=frozenset(v.casefold() for v in data.get("nullValues") or []),
        path=path,
        by_target=by_target,
    )


def _column(raw: dict, where: str, concept_maps: dict[str, dict], tables: dict[str, CodeTable]) -> Column:
    name, target, ctype = raw.get("name"), raw.get("target"), raw.get("type", "string")
    if not name or not target:
        raise ValueError(f"{where}: name and target are required")
    if ctype not in TYPES:
        raise ValueError(f"{where} ({name}): unknown type {ctype!r}; use one of {sorted(TYPES)}")
    url = raw.get("conceptMap")
    if ctype == "code":
        if not url:
            raise ValueError(f"{where} ({name}): a code column needs a conceptMap url")
        if url not in concept_maps:
            raise ValueError(f"{where} ({name}): ConceptMap {url} is not in mappings/")
        if url not in tables:
            tables[url] = CodeTable(concept_maps[url])
    on_invalid = raw.get("onInvalid", "reject")
    if on_invalid not in ("reject", "warn"):
        raise ValueError(f"{where} ({name}): onInvalid must be 'reject' or 'warn'")
    return Column(
        name=name.strip(),
        target=target,
        type=ctype,
        required=bool(raw.get("required")),
        required_for=frozenset(raw.get("requiredFor") or ()),
        formats=tuple(raw.get("formats") or _DEFAULT_FORMATS.get(ctype, ())),
        concept_map=url,
        pattern=re.compile(raw["pattern"]) if raw.get("pattern") else None,
        max_length=raw.get("maxLength"),
        min=raw.get("min"),
        max=raw.get("max"),
        on_invalid=on_invalid,
        element=raw.get("element"),
    )
