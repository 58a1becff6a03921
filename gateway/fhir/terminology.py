"""FHIR R4 ConceptMaps as data: loading a folder of them, and translating one code.

Generic terminology handling used by `ConceptMap/$translate` (gateway.fhir.operations) and by
every adapter that keeps its code tables in `mappings/` (HL7 v2, council and community layouts):
groups, elements, targets with `equivalence`, and `unmapped` modes `provided` and `fixed`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

Coding = dict[str, str]  # a FHIR Coding: system, code, display (display optional)

# Equivalences that mean "no usable translation" (R4 ConceptMapEquivalence).
NOT_A_MATCH = frozenset({"unmatched", "disjoint"})
# Best first when a code has several targets.
_RANK = {"equal": 0, "equivalent": 1, "wider": 2, "subsumes": 3, "relatedto": 4, "inexact": 5,
         "narrower": 6, "specializes": 7, "unmatched": 8, "disjoint": 9}


def load_concept_maps(directory: str | Path) -> dict[str, dict]:
    """Every ConceptMap JSON file under `directory` (recursively), keyed by canonical url.

    Other JSON files (feed settings, trigger tables, source layouts) are skipped. Two maps with
    one url are a configuration mistake and fail loudly at start rather than translate at random.
    """
    maps: dict[str, dict] = {}
    origin: dict[str, Path] = {}
    for path in sorted(Path(directory).rglob("*.json")):
        try:
            data = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict) or data.get("resourceType") != "ConceptMap":
            continue
        url = data.get("url")
        if not url:
            raise ValueError(f"{path}: ConceptMap without a url")
        if url in maps:
            raise ValueError(f"{path}: ConceptMap url {url} already defined in {origin[url]}")
        maps[url] = data
        origin[url] = path
    return maps


def translate(conceptmap: dict, code: str, system: str | None = None) -> list[dict]:
    """All matches for `code` in one ConceptMap, best first, shaped like `$translate` output.

    Each match is `{"equivalence", "concept": Coding, "source": conceptmap url}` (plus
    `comment` when the map has one). `system` restricts the search to groups whose `source` is
    that code system; without it every group is searched. `unmapped` with mode `provided`
    (the code passes through) or `fixed` (a default target) applies per group; mode `other-map`
    needs a registry and is left to the caller.
    """
    matches: list[dict] = []
    url = conceptmap.get("url", "")
    for group in conceptmap.get("group", []):
        if system is not None and group.get("source") not in (None, system):
            continue
        target_system = group.get("target")
        found = False
        for element in group.get("element", []):
            if element.get("code") != code:
                continue
            found = True
            for target in element.get("target", []):
                match: dict[str, Any] = {
                    "equivalence": target.get("equivalence", "equivalent"),
                    "concept": _coding(target_system, target.get("code"), target.get("display")),
                    "source": url,
                }
                if target.get("comment"):
                    match["comment"] = target["comment"]
                matches.append(match)
        if found:
            continue
        unmapped = group.get("unmapped") or {}
        mode = unmapped.get("mode")
        if mode == "provided":
            matches.append({"equivalence": "equal", "concept": _coding(target_system, code, None), "source": url})
        elif mode == "fixed" and unmapped.get("code"):
            matches.append({"equivalence": "inexact",
                            "concept": _coding(target_system, unmapped["code"], unmapped.get("display")),
                            "source": url})
    matches.sort(key=lambda m: _RANK.get(m["equivalence"], 5))
    return matches


def _coding(system: str | None, code: str | None, display: str | None) -> Coding:
    out: Coding = {}
    if system:
        out["system"] = system
    if code:
        out["code"] = code
    if display:
        out["display"] = display
    return out
