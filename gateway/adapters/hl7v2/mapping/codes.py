"""Code tables as data: FHIR R4 ConceptMaps read from `mappings/`.

The generic FHIR R4 ConceptMap handling (`load_concept_maps`, `translate`) lives in
gateway.fhir.terminology, shared with `$translate` and the file adapters; `ConceptMaps` is the
convenience the HL7 v2 mappers use: look a map up by url, id or name and get back the single best
Coding, or None.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from gateway.fhir.terminology import NOT_A_MATCH, Coding, load_concept_maps, translate

__all__ = ["Coding", "ConceptMaps", "load_concept_maps", "translate"]


class ConceptMaps:
    """The loaded maps, addressable by canonical url, `id` or `name`."""

    def __init__(self, maps: dict[str, dict]) -> None:
        self.maps = maps
        self._alias: dict[str, str] = {}
        for url, cm in maps.items():
            for alias in (cm.get("id"), cm.get("name")):
                if alias:
                    self._alias.setdefault(alias, url)

    @classmethod
    def load(cls, directory: str | Path) -> "ConceptMaps":
        return cls(load_concept_maps(directory))

    def get(self, name_or_url: str) -> dict:
        url = name_or_url if name_or_url in self.maps else self._alias.get(name_or_url)
        if url is None:
            raise KeyError(f"no ConceptMap {name_or_url!r} loaded")
        return self.maps[url]

    def __contains__(self, name_or_url: str) -> bool:
        return name_or_url in self.maps or name_or_url in self._alias

    def __iter__(self) -> Iterable[str]:
        return iter(self.maps)

    def translate(self, name_or_url: str, code: str, system: str | None = None) -> Coding | None:
        """The best usable target for `code`, or None (no match, or only unmatched/disjoint)."""
        if not code:
            return None
        cm = self.get(name_or_url)
        for candidate in dict.fromkeys((code, code.strip(), code.strip().upper())):
            for match in translate(cm, candidate, system):
                if match["equivalence"] not in NOT_A_MATCH and match["concept"].get("code"):
                    return dict(match["concept"])
        return None
