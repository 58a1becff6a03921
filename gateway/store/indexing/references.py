"""Splitting FHIR reference strings into (target_type, target_id, target_url).

Shared by the indexer and the search compiler so a stored reference and a searched one are
always taken apart the same way.
"""

from __future__ import annotations

import re

# Resource type names are PascalCase; ids are [A-Za-z0-9-.]{1,64} in R4.
_TYPE_ID_TAIL = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")

Parsed = tuple[str | None, str | None, str | None]


def parse_reference(ref: str) -> Parsed | None:
    """(target_type, target_id, target_url) of a Reference.reference string.

    * `Patient/1` and `Patient/1/_history/3` -> ("Patient", "1", None): the version is dropped
      because a search on Patient/1 must find references to any version of it.
    * An absolute URL keeps the URL and, when it ends in `/Type/id`, fills type and id too.
    * `urn:uuid:` / `urn:oid:` stay URLs: they only mean something inside a Bundle.
    * Local `#contained` references return None: the standard does not search into them.
    """
    if not ref or ref[0] == "#":
        return None
    if ref.startswith("urn:"):
        return None, None, ref
    if "://" in ref:
        m = _TYPE_ID_TAIL.search(ref)
        return (m.group(1), m.group(2), ref) if m else (None, None, ref)
    m = _TYPE_ID_TAIL.fullmatch(ref)
    if m:
        return m.group(1), m.group(2), None
    return None, None, ref


def parse_canonical(value: str) -> Parsed | None:
    """A canonical URL (`http://x/ValueSet/y|1.0`) as a reference; the `|version` is dropped.

    Searches name a canonical by its URL; dropping the version means any version matches.
    """
    if not value:
        return None
    url = value.split("|", 1)[0]
    m = _TYPE_ID_TAIL.search(url) if "://" in url else None
    return (m.group(1), m.group(2), url) if m else (None, None, url)
