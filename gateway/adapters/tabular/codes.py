"""Code columns: a source value looked up in a FHIR R4 ConceptMap from `mappings/`.

Tabular returns write their code lists as text, and the text drifts: CLD Release 1 wrote
`Short Term Support: ST-Max`, Release 2 `Short term support: ST-Max`, councils type `&` for `and`.
So a value is matched on a normalised key (case, punctuation and `&` ignored) against the source
codes of every group; each group then contributes its best usable target, in group order. A map
with two groups (say CLD wording, then the Interweave code) gives a CodeableConcept with two
codings. Two source codes that normalise alike but translate differently are a configuration
mistake and fail when the map is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Coding = dict[str, str]

# R4 ConceptMapEquivalence values that mean "no usable translation".
_NOT_A_MATCH = frozenset({"unmatched", "disjoint"})
_RANK = {"equal": 0, "equivalent": 1, "wider": 2, "subsumes": 3, "relatedto": 4, "inexact": 5,
         "narrower": 6, "specializes": 7}


def normalise_code(value: str) -> str:
    """The matching key of a code or label: `Physical Support: Access & mobility only` and
    `physical support - access and mobility only` both give `physical support access and mobility only`."""
    text = value.casefold().replace("&", " and ")
    return " ".join(re.findall(r"[0-9a-z]+", text))


@dataclass(frozen=True)
class CodeValue:
    """A translated code column: what the file said, and the codings it stands for."""

    raw: str
    codings: tuple[Coding, ...]

    @property
    def code(self) -> str:
        """The primary (first group's) code."""
        return self.codings[0]["code"]

    @property
    def display(self) -> str:
        return self.codings[0].get("display") or self.raw

    def code_in(self, system: str) -> str | None:
        """The code this value translates to in `system` (one group of the map), if any."""
        return next((c["code"] for c in self.codings if c.get("system") == system), None)

    def concept(self, text: str | None = None) -> dict:
        """As a CodeableConcept. `text` defaults to the value as the source wrote it, or to the
        display when the source sent a bare code (`02` says less than `Assessments`)."""
        if text is None:
            text = self.display if self.raw == self.code else self.raw
        return {"coding": [dict(c) for c in self.codings], "text": text}


class CodeTable:
    """One ConceptMap, indexed for normalised lookup."""

    def __init__(self, conceptmap: dict) -> None:
        self.url: str = conceptmap.get("url", "")
        self.name: str = conceptmap.get("id") or conceptmap.get("name") or self.url
        self._index: dict[str, tuple[Coding, ...]] = {}
        self._memo: dict[str, CodeValue | None] = {}
        found: dict[str, list[Coding]] = {}
        for group in conceptmap.get("group", []):
            for element in group.get("element", []):
                code = element.get("code")
                targets = [t for t in element.get("target", [])
                           if t.get("code") and t.get("equivalence", "equivalent") not in _NOT_A_MATCH]
                if not code or not targets:
                    continue
                best = min(targets, key=lambda t: _RANK.get(t.get("equivalence", "equivalent"), 5))
                coding: Coding = {"system": group.get("target", ""), "code": best["code"]}
                if best.get("display"):
                    coding["display"] = best["display"]
                found.setdefault(code, []).append(coding)
        for code, codings in found.items():
            key = normalise_code(code)
            if key in self._index and self._index[key] != tuple(codings):
                raise ValueError(f"ConceptMap {self.url}: source code {code!r} normalises like another "
                                 f"source code but translates differently")
            self._index[key] = tuple(codings)

    def lookup(self, value: str) -> CodeValue | None:
        """The codings for `value`, or None when the map does not know it."""
        # A file repeats a handful of code values on every row: remember each one's answer
        # (CodeValue is frozen, so sharing it between rows is safe). Bounded like any memo.
        try:
            return self._memo[value]
        except KeyError:
            pass
        codings = self._index.get(normalise_code(value))
        found = CodeValue(value.strip(), codings) if codings else None
        if len(self._memo) >= 10_000:
            self._memo.clear()
        self._memo[value] = found
        return found

    def __len__(self) -> int:
        return len(self._index)
