"""Value set membership from the ValueSets and CodeSystems held as data (profiles/, no server).

A value set's `compose.include` lists codes, whole code systems, or other value sets. Membership
is three-valued: True, False, or None when it cannot be decided here (a value set or code system
we do not hold, a SNOMED CT `filter`) — the validator says "not checked" rather than guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def canonical(url: str) -> str:
    """A canonical reference without its `|version`."""
    return url.split("|", 1)[0]


@dataclass
class _Expansion:
    codes: dict[str, set[str]] = field(default_factory=dict)  # system -> codes
    open_systems: set[str] = field(default_factory=set)  # system included by filter/unknown content
    complete: bool = True  # False when a nested value set is unknown


class Terminology:
    def __init__(self) -> None:
        self.value_sets: dict[str, dict] = {}
        self.code_systems: dict[str, dict] = {}
        self._expansions: dict[str, _Expansion | None] = {}

    def add(self, resource: dict) -> None:
        url = resource.get("url")
        if not isinstance(url, str):
            return
        if resource.get("resourceType") == "ValueSet":
            self.value_sets[url] = resource
        elif resource.get("resourceType") == "CodeSystem":
            self.code_systems[url] = resource
        self._expansions.clear()

    def knows(self, vs_url: str) -> bool:
        return canonical(vs_url) in self.value_sets

    def system_codes(self, system: str) -> set[str] | None:
        cs = self.code_systems.get(system)
        if cs is None or cs.get("content") not in (None, "complete"):
            return None
        out: set[str] = set()
        todo = list(cs.get("concept") or ())
        while todo:
            c = todo.pop()
            out.add(c.get("code"))
            todo.extend(c.get("concept") or ())
        return out

    def display(self, system: str, code: str) -> str | None:
        cs = self.code_systems.get(system)
        todo = list((cs or {}).get("concept") or ())
        while todo:
            c = todo.pop()
            if c.get("code") == code:
                return c.get("display")
            todo.extend(c.get("concept") or ())
        return None

    def _expand(self, url: str, seen: frozenset = frozenset()) -> _Expansion | None:
        url = canonical(url)
        if url in self._expansions:
            return self._expansions[url]
        vs = self.value_sets.get(url)
        if vs is None or url in seen:
            return None
        exp = _Expansion()
        for inc in (vs.get("compose") or {}).get("include") or ():
            system = inc.get("system")
            for nested in inc.get("valueSet") or ():
                sub = self._expand(nested, seen | {url})
                if sub is None:
                    exp.complete = False
                    continue
                for s, codes in sub.codes.items():
                    exp.codes.setdefault(s, set()).update(codes)
                exp.open_systems |= sub.open_systems
                exp.complete &= sub.complete
            if not system:
                continue
            if inc.get("concept"):
                exp.codes.setdefault(system, set()).update(c["code"] for c in inc["concept"])
            elif inc.get("filter"):
                exp.open_systems.add(system)
            else:
                codes = self.system_codes(system)
                if codes is None:
                    exp.open_systems.add(system)
                else:
                    exp.codes.setdefault(system, set()).update(codes)
        for exc in (vs.get("compose") or {}).get("exclude") or ():
            if exc.get("system") in exp.codes:
                exp.codes[exc["system"]] -= {c["code"] for c in exc.get("concept") or ()}
        self._expansions[url] = exp
        return exp

    def contains(self, vs_url: str, system: str | None, code: str) -> bool | None:
        """Is (system, code) in the value set? None when that cannot be known here."""
        exp = self._expand(vs_url)
        if exp is None:
            return None
        if system is None:  # a bare `code` element: any system of the value set
            if any(code in codes for codes in exp.codes.values()):
                return True
            return None if exp.open_systems or not exp.complete else False
        if code in exp.codes.get(system, ()):
            return True
        if system in exp.open_systems:
            return None
        return False if exp.complete else None

    def codes_text(self, vs_url: str, limit: int = 12) -> str:
        """A short list of allowed codes for a diagnostic."""
        exp = self._expand(vs_url)
        if exp is None:
            return ""
        codes = sorted(c for cs in exp.codes.values() for c in cs)
        more = len(codes) - limit
        return ", ".join(codes[:limit]) + (f" (+{more} more)" if more > 0 else "")
