"""Which partner said it: hospital, council or community, read from the record itself.

Three signals, strongest first, all of them FHIR data any client could read:

1. `meta.tag` `.../CodeSystem/source-layout` (the column spec that wrote a council or community row);
2. identifier systems: the gateway's source-scoped `.../Id/<hl7v2|council|community|adw>/...`, the
   hospital referral key, and the trust systems declared per feed in `mappings/hl7v2-feeds.json`;
3. `Provenance`: an inbox entry (HL7 v2 or ADW message) or a council / community file row.

The page shows every source a resource has (a Patient usually has several), never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import orjson

GATEWAY = "https://fhir.activerecovery.example"
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
SOURCE_TAG_SYSTEM = f"{GATEWAY}/CodeSystem/source-layout"
REVIEW_TAG_SYSTEM = f"{GATEWAY}/CodeSystem/identity-review"
INBOX_SYSTEM = f"{GATEWAY}/Id/inbox"
INGEST_FILE_SYSTEM = f"{GATEWAY}/Id/ingest-file"

HOSPITAL, COUNCIL, COMMUNITY, ADW = "hospital", "council", "community", "adw"
ORDER = (HOSPITAL, ADW, COUNCIL, COMMUNITY)
LABELS = {
    HOSPITAL: "Hospital",
    ADW: "Hospital notice",
    COUNCIL: "Council",
    COMMUNITY: "Community",
}
DESCRIPTIONS = {
    HOSPITAL: "Hospital patient administration system (HL7 v2 ADT)",
    ADW: "Hospital assessment and discharge notice (NHS ADW)",
    COUNCIL: "Council adult social care record (CLD extract)",
    COMMUNITY: "Community health services record (CSDS extract)",
}
# `.../Id/<partner>/...`: the gateway's own source-scoped identifier systems
_SCOPED = re.compile(re.escape(GATEWAY) + r"/Id/(hl7v2|council|community|adw)(?:/|-)")
_FIXED = {
    f"{GATEWAY}/Id/discharge-referral": HOSPITAL,
    f"{GATEWAY}/Id/hl7v2-diagnosis": HOSPITAL,
    f"{GATEWAY}/Id/adw-referral": ADW,
}
_PARTNER = {"hl7v2": HOSPITAL, "council": COUNCIL, "community": COMMUNITY, "adw": ADW}


@lru_cache(maxsize=4)
def hospital_systems(feeds_file: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(exact systems, prefixes) the hospital feeds use, from the feed settings file.

    Templated systems (`.../{authority}/mrn`) become prefixes up to the first placeholder.
    """
    path = Path(feeds_file)
    if not path.is_file():
        return (), ()
    data = orjson.loads(path.read_bytes())
    values: list[str] = []
    for feed in [data.get("defaults", {}), *data.get("feeds", [])]:
        for key, value in feed.items():
            if key.endswith("_system") and isinstance(value, str):
                values.append(value)
            elif key == "identifier_systems" and isinstance(value, dict):
                values += [v for v in value.values() if isinstance(v, str)]
    exact = tuple(sorted({v for v in values if "{" not in v}))
    prefixes = tuple(sorted({v.split("{", 1)[0] for v in values if "{" in v}))
    return exact, prefixes


@dataclass
class SourceIndex:
    """Source look-ups for one page: identifier systems, tags and the Provenances in a Bundle."""

    exact: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    # "Type/id" -> [(source, what the Provenance says, when recorded)]
    provenance: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)

    @classmethod
    def for_settings(cls, settings) -> "SourceIndex":
        exact, prefixes = hospital_systems(str(settings.effective_mappings_dir / "hl7v2-feeds.json"))
        return cls(exact, prefixes)

    def add_provenance(self, prov: dict) -> None:
        source = provenance_source(prov)
        if source is None:
            return
        what = ((prov.get("entity") or [{}])[0].get("what") or {}).get("display") or ""
        for target in prov.get("target", []):
            ref = target.get("reference") or ""
            key = "/".join(ref.split("/")[:2])  # Type/id/_history/n -> Type/id
            self.provenance.setdefault(key, []).append((source, what, prov.get("recorded", "")))

    def of_system(self, system: str | None) -> str | None:
        if not system:
            return None
        m = _SCOPED.match(system)
        if m:
            return _PARTNER[m.group(1)]
        if system in _FIXED:
            return _FIXED[system]
        if system in self.exact or any(system.startswith(p) for p in self.prefixes):
            return HOSPITAL
        return None

    def of_resource(self, resource: dict) -> list[str]:
        """Every source a resource came from, strongest signal first, without repeats."""
        found: list[str] = []
        for tag in (resource.get("meta") or {}).get("tag", []):
            if tag.get("system") == SOURCE_TAG_SYSTEM:
                code = str(tag.get("code") or "")
                for partner in (COUNCIL, COMMUNITY):
                    if code.startswith(partner):
                        found.append(partner)
        for ident in resource.get("identifier") or []:
            if isinstance(ident, dict):
                src = self.of_system(ident.get("system"))
                if src:
                    found.append(src)
        key = f"{resource.get('resourceType')}/{resource.get('id')}"
        found += [src for src, _, _ in self.provenance.get(key, [])]
        return _unique(found)


def provenance_source(prov: dict) -> str | None:
    """The partner behind a Provenance written by the gateway's pipelines (None if another's)."""
    for entity in prov.get("entity") or []:
        what = entity.get("what") or {}
        system = (what.get("identifier") or {}).get("system")
        display = (what.get("display") or "").lower()
        if system == INBOX_SYSTEM:
            if display.startswith("adw"):
                return ADW
            return HOSPITAL
        if system == INGEST_FILE_SYSTEM:
            for partner in (COUNCIL, COMMUNITY):
                if display.startswith(partner):
                    return partner
    return None


def _unique(items: list[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
