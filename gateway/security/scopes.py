"""SMART on FHIR scopes (v2 `system/Encounter.rs`, v1 `user/Patient.read`) as permission letters.

A scope grants some of the five SMART v2 letters on one resource type or on `*`:
c(reate) r(ead) u(pdate) d(elete) s(earch). v1 suffixes map onto them (`read` = rs,
`write` = cud, `*` = cruds). `system/` and `user/` scopes are honoured alike (the gateway has no
end-user login of its own); `patient/` scopes need a launch context the gateway never has, and
scopes with a v2 query (`system/Observation.rs?category=...`) are finer than the gateway enforces,
so both are refused rather than half-obeyed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LETTERS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)$")


@dataclass(frozen=True, slots=True)
class Scope:
    context: str  # system | user | patient
    type: str  # a resource type or "*"
    letters: str  # subset of "cruds", in that order

    def __str__(self) -> str:
        return f"{self.context}/{self.type}.{self.letters}"


def parse_scope(text: str) -> Scope | None:
    """One scope, or None when it is not a resource scope the gateway grants."""
    m = _SCOPE.match(text.strip())
    if not m:
        return None
    context, rtype, suffix = m.groups()
    if context == "patient":
        return None
    if suffix in _V1:
        letters = _V1[suffix]
    else:
        if any(c not in LETTERS for c in suffix) or len(set(suffix)) != len(suffix):
            return None
        # SMART v2 requires the letters in c r u d s order
        if "".join(c for c in LETTERS if c in suffix) != suffix:
            return None
        letters = suffix
    return Scope(context, rtype, letters)


def parse_scopes(text: str | list[str] | None) -> list[Scope]:
    if not text:
        return []
    items = text.split() if isinstance(text, str) else list(text)
    return [s for s in (parse_scope(t) for t in items) if s is not None]


def permissions(scopes: list[Scope]) -> dict[str, frozenset[str]]:
    """{type or '*': letters} merged over every scope."""
    out: dict[str, set[str]] = {}
    for s in scopes:
        out.setdefault(s.type, set()).update(s.letters)
    return {t: frozenset(v) for t, v in out.items()}


def covers(granted: list[Scope], wanted: Scope) -> bool:
    """Whether `wanted` asks for nothing beyond what `granted` allows (context ignored)."""
    perms = permissions(granted)
    have = perms.get(wanted.type, frozenset()) | perms.get("*", frozenset())
    if wanted.type == "*":
        have = perms.get("*", frozenset())
    return set(wanted.letters) <= have


def narrow(requested: list[Scope], allowed: list[Scope]) -> list[Scope]:
    """The requested scopes cut down to what the client may be given.

    A requested scope wider than the allowance (`system/*.cruds` for a client allowed
    `system/Encounter.rs`) is narrowed to the allowed part, per type, rather than refused whole.
    """
    allowed_perms = permissions(allowed)
    out: list[Scope] = []
    for req in requested:
        if req.type == "*":
            for atype, letters in allowed_perms.items():
                keep = "".join(c for c in LETTERS if c in req.letters and c in letters)
                if keep:
                    out.append(Scope(req.context, atype, keep))
            continue
        letters = allowed_perms.get(req.type, frozenset()) | allowed_perms.get("*", frozenset())
        keep = "".join(c for c in LETTERS if c in req.letters and c in letters)
        if keep:
            out.append(Scope(req.context, req.type, keep))
    seen: dict[str, Scope] = {}
    for s in out:
        seen.setdefault(str(s), s)
    return list(seen.values())
