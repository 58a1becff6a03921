"""Conformance resources the gateway serves from its own store, loaded at start.

ConceptMaps from `mappings/` are written with a conditional update on their canonical url, so a
restart (or many workers starting at once) leaves exactly one copy of each, updated only when the
file changed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import orjson

from gateway.fhir.request import FhirRequest

log = logging.getLogger("gateway.startup")


def conformance_files(ctx) -> list[Path]:
    mappings = ctx.settings.effective_mappings_dir
    profiles = mappings.parent / "profiles"
    files = []
    for folder in (mappings, profiles):
        if folder.is_dir():
            files += sorted(folder.rglob("*.json"))
    return files


async def load_conformance_resources(ctx) -> int:
    loaded = 0
    for path in conformance_files(ctx):
        try:
            resource = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError:
            log.warning("skipping %s: not JSON", path)
            continue
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        if rtype not in ("ConceptMap", "StructureDefinition", "ValueSet", "CodeSystem", "SearchParameter") or not resource.get("url"):
            continue
        ctx.concept_maps[resource["url"]] = resource if rtype == "ConceptMap" else ctx.concept_maps.get(resource["url"])
        req = FhirRequest("PUT", rtype, [("url", resource["url"])], body=resource, base_url="")
        await ctx.router.dispatch(req)
        loaded += 1
    ctx.concept_maps = {k: v for k, v in ctx.concept_maps.items() if v is not None}
    return loaded
