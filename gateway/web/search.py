"""What a search box query means, as FHIR Patient search parameters.

One box for the ward: an NHS number (spaces allowed), a postcode (whole or the outward part),
a partner's own identifier (MRN, council or community id), or a name (each word must match).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.pipeline.identity import is_valid_nhs_number
from gateway.web.sources import NHS_NUMBER_SYSTEM, REVIEW_TAG_SYSTEM

_POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?(?: ?[0-9][A-Z]{2})?$")
_NAME_WORD = re.compile(r"[^\W\d_][\w'\-]*", re.UNICODE)
MAX_QUERY = 100


@dataclass
class Query:
    kind: str  # nhs-number | postcode | identifier | name | review | empty
    params: list[tuple[str, str]]
    explain: str


def interpret(q: str) -> Query:
    q = " ".join(q.split())[:MAX_QUERY]
    base = [("_count", "50"), ("_sort", "family,given")]
    if not q:
        return Query("review", [("_tag", f"{REVIEW_TAG_SYSTEM}|possible-duplicate"), *base],
                     "people whose records are listed for identity review")
    digits = re.sub(r"[\s-]", "", q)
    if digits.isdigit() and len(digits) == 10:
        label = "NHS number" + ("" if is_valid_nhs_number(digits) else " (this number fails the NHS number check)")
        return Query("nhs-number", [("identifier", f"{NHS_NUMBER_SYSTEM}|{digits}"), *base], label)
    upper = q.upper()
    if _POSTCODE.match(upper) and any(c.isdigit() for c in upper):
        return Query("postcode", [("address-postalcode", upper), *base], "postcode")
    if " " not in q and any(c.isdigit() for c in q):
        return Query("identifier", [("identifier", q.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,")
                                     .replace("$", "\\$")), *base], "hospital, council or community identifier")
    words = _NAME_WORD.findall(q)
    if not words:
        return Query("empty", [], "")
    return Query("name", [*(("name", w) for w in words[:4]), *base], "name")
