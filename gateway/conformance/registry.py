"""The profiles, value sets and code systems the validator knows, read from `profiles/`.

Files are single FHIR resources (ours, also served by the gateway) or `collection` Bundles of
them (the UK Core digest and the standard FHIR value sets the profiles bind to: data for the
validator, not served, so a UK Core url is never answered with our partial copy). Compiled
profiles are cached per url: a write pays for the walk, never for parsing or compiling.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import orjson

from .compile import CORE_PREFIX, CompiledProfile, ElementRule, compile_profile
from .terminology import Terminology, canonical

log = logging.getLogger("gateway.conformance")

BUNDLED_PROFILES = Path(__file__).resolve().parents[2] / "profiles"


def profiles_dir(settings=None) -> Path:
    """The profiles/ folder beside the mappings folder (the same rule `gateway.startup` follows)."""
    if settings is not None and getattr(settings, "mappings_dir", ""):
        candidate = settings.effective_mappings_dir.parent / "profiles"
        if candidate.is_dir():
            return candidate
    return BUNDLED_PROFILES


class ProfileRegistry:
    def __init__(self) -> None:
        self.structure_definitions: dict[str, dict] = {}
        self.served: set[str] = set()  # urls of profiles loaded from single files (ours)
        self.terminology = Terminology()
        self._chains: dict[str, tuple[list[CompiledProfile], list[str]]] = {}
        self._extension_urls: frozenset[str] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_folder(cls, folder: Path | str | None = None) -> "ProfileRegistry":
        reg = cls()
        root = Path(folder) if folder else BUNDLED_PROFILES
        for path in sorted(root.rglob("*.json")):
            try:
                data = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError:
                log.warning("profiles: %s is not JSON; skipped", path)
                continue
            if isinstance(data, dict):
                reg.add(data, served=data.get("resourceType") != "Bundle")
        return reg

    def add(self, resource: dict, served: bool = False) -> None:
        rtype = resource.get("resourceType")
        if rtype == "Bundle":
            for entry in resource.get("entry") or ():
                if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                    self.add(entry["resource"], served=False)
            return
        url = resource.get("url")
        if not isinstance(url, str):
            return
        if rtype == "StructureDefinition":
            with self._lock:
                self.structure_definitions[url] = resource
                if served:
                    self.served.add(url)
                self._chains.clear()
                self._extension_urls = None
        elif rtype in ("ValueSet", "CodeSystem"):
            self.terminology.add(resource)

    def structure_definition(self, url: str) -> dict | None:
        return self.structure_definitions.get(canonical(url))

    def extension_urls(self) -> frozenset[str]:
        found = self._extension_urls
        if found is None:
            found = self._extension_urls = frozenset(
                u for u, sd in self.structure_definitions.items() if sd.get("type") == "Extension")
        return found

    def knows(self, url: str) -> bool:
        return canonical(url) in self.structure_definitions

    def chain(self, url: str) -> tuple[list[CompiledProfile], list[str]]:
        """The compiled profile and its known bases (most derived first), and unknown non-core bases."""
        url = canonical(url)
        found = self._chains.get(url)
        if found is not None:
            return found
        chain: list[CompiledProfile] = []
        unknown: list[str] = []
        seen: set[str] = set()
        current: str | None = url
        while current and current not in seen:
            seen.add(current)
            sd = self.structure_definitions.get(current)
            if sd is None:
                if current != url and not current.startswith(CORE_PREFIX):
                    unknown.append(current)
                break
            chain.append(compile_profile(sd, self))
            current = canonical(sd["baseDefinition"]) if sd.get("baseDefinition") else None
        for i, cp in enumerate(chain):
            for base in chain[i + 1:]:
                _inherit_slicing(cp.root, base.root)
        with self._lock:
            self._chains[url] = (chain, unknown)
        return chain, unknown

    def served_profiles(self) -> list[tuple[str, str]]:
        """(resource type, url) of our own resource profiles (not extensions or datatypes)."""
        out = []
        for url in sorted(self.served):
            sd = self.structure_definitions[url]
            if sd.get("kind") == "resource" and sd.get("derivation") == "constraint":
                out.append((sd.get("type", ""), url))
        return out


def _inherit_slicing(node: ElementRule, base: ElementRule) -> None:
    """A derived profile may add slices to an element whose slicing only its base declares."""
    if node.slices and node.slicing is None and base.slicing is not None:
        node.slicing = base.slicing
    for name, child in node.children.items():
        other = base.children.get(name)
        if other is not None:
            _inherit_slicing(child, other)
    for s in node.slices:
        other = next((b for b in base.slices if b.slice_name == s.slice_name), None)
        if other is not None:
            if s.base_slice is None:
                s.base_slice = other
            _inherit_slicing(s, other)
