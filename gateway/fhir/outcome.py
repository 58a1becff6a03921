"""Errors as values: a FhirError carries its HTTP status and OperationOutcome issues.

Handlers raise these; the HTTP edge and the Bundle processors turn them into responses, so a
Bundle entry and a plain request fail the same way.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Issue:
    severity: str
    code: str
    diagnostics: str
    expression: str | None = None

    def to_json(self) -> dict:
        out: dict = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = [self.expression]
        return out


def operation_outcome(issues: list[Issue] | tuple[Issue, ...]) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


def information(text: str) -> dict:
    return operation_outcome([Issue("information", "informational", text)])


class FhirError(Exception):
    def __init__(self, status: int, issues: list[Issue] | Issue, headers: dict | None = None):
        self.status = status
        self.issues = [issues] if isinstance(issues, Issue) else list(issues)
        self.headers = headers or {}
        super().__init__("; ".join(i.diagnostics for i in self.issues))

    def outcome(self) -> dict:
        return operation_outcome(self.issues)


def bad_request(msg: str, expression: str | None = None, code: str = "invalid") -> FhirError:
    return FhirError(400, Issue("error", code, msg, expression))


def not_found(msg: str) -> FhirError:
    return FhirError(404, Issue("error", "not-found", msg))


def gone(msg: str) -> FhirError:
    return FhirError(410, Issue("error", "deleted", msg))


def conflict(msg: str) -> FhirError:
    return FhirError(409, Issue("error", "conflict", msg))


def precondition_failed(msg: str) -> FhirError:
    return FhirError(412, Issue("error", "conflict", msg))


def unprocessable(msg: str, expression: str | None = None) -> FhirError:
    return FhirError(422, Issue("error", "processing", msg, expression))


def method_not_allowed(msg: str) -> FhirError:
    return FhirError(405, Issue("error", "not-supported", msg))


def unsupported_media(msg: str) -> FhirError:
    return FhirError(415, Issue("error", "not-supported", msg))


def too_large(msg: str) -> FhirError:
    return FhirError(413, Issue("error", "too-costly", msg))
