"""What a TestScript run holds and produces: fixtures, exchanges, and results per action and test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Exchange:
    """One HTTP request and its response, as the asserts see them."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: Any
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: Any = None  # parsed JSON when the response was JSON, else the text
    error: str = ""  # transport failure (no response at all)

    @property
    def location_id(self) -> tuple[str | None, str | None]:
        """(id, version) from the Location / Content-Location header, else from the body."""
        loc = self.headers.get("location") or self.headers.get("content-location") or ""
        parts = loc.split("?")[0].rstrip("/").split("/")
        if "_history" in parts:
            i = parts.index("_history")
            if i >= 1:
                return parts[i - 1], parts[i + 1] if i + 1 < len(parts) else None
        if len(parts) >= 2 and loc:
            return parts[-1], None
        if isinstance(self.body, dict) and self.body.get("id"):
            return self.body["id"], (self.body.get("meta") or {}).get("versionId")
        return None, None


@dataclass
class Fixture:
    id: str
    body: Any = None  # the resource (a fixture) or the response body (a responseId)
    exchange: Exchange | None = None  # set for responses, and for fixtures the script created
    server_id: str | None = None  # the id the server gave a created fixture
    version: str | None = None

    def resource_type(self) -> str | None:
        return self.body.get("resourceType") if isinstance(self.body, dict) else None


@dataclass
class ActionResult:
    kind: str  # "operation" | "assert"
    label: str
    passed: bool
    message: str = ""
    warning_only: bool = False
    skipped: bool = False


@dataclass
class TestResult:
    __test__ = False  # not a pytest class

    name: str
    description: str = ""
    actions: list[ActionResult] = field(default_factory=list)
    skipped: bool = False
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.skipped and all(a.passed or a.warning_only for a in self.actions)

    @property
    def failures(self) -> list[ActionResult]:
        return [a for a in self.actions if not a.passed and not a.warning_only]


@dataclass
class ScriptResult:
    name: str
    url: str
    source: str  # the file it came from
    setup: TestResult | None = None
    tests: list[TestResult] = field(default_factory=list)
    teardown: TestResult | None = None
    error: str = ""  # the script could not be run at all
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        phases = [p for p in (self.setup, *self.tests) if p is not None]
        return not self.error and all(p.passed for p in phases)

    def counts(self) -> tuple[int, int]:
        """(tests passed, tests failed), counting a failed setup as one failure."""
        passed = sum(1 for t in self.tests if t.passed)
        failed = len(self.tests) - passed
        if self.error or (self.setup is not None and not self.setup.passed):
            failed += 1
        return passed, failed
