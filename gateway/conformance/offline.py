"""`gateway validate FILE...`: partner samples checked offline, with no server and no network."""

from __future__ import annotations

from pathlib import Path

import orjson

from .registry import ProfileRegistry
from .validator import Issue, Validator

_validator: Validator | None = None


def _get_validator() -> Validator:
    global _validator
    if _validator is None:
        from gateway.config import load_settings

        from .registry import profiles_dir

        _validator = Validator(ProfileRegistry.from_folder(profiles_dir(load_settings())))
    return _validator


def read_file(path: Path) -> object:
    data = path.read_bytes()
    if path.suffix.lower() == ".xml" or data.lstrip()[:1] == b"<":
        from gateway.fhir.xml import xml_to_resource

        return xml_to_resource(data)
    return orjson.loads(data)


def validate_resource(resource: object, profiles: list[str]) -> list[Issue]:
    """Structure + profiles of the resource, and of each Bundle entry against its own profiles."""
    v = _get_validator()
    issues = v.validate(resource, profiles)
    if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
        for i, entry in enumerate(resource.get("entry") or ()):
            inner = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(inner, dict) and (inner.get("meta") or {}).get("profile"):
                for issue in v.validate(inner, structural=False):
                    issues.append(Issue(issue.severity, issue.code, f"Bundle.entry[{i}].resource" +
                                        issue.expression.removeprefix(inner.get("resourceType", "")),
                                        issue.diagnostics))
    return issues


def validate_file(name: str, profiles: list[str], show_warnings: bool = True) -> tuple[str, int]:
    """(report text, number of errors) for one file."""
    path = Path(name)
    try:
        resource = read_file(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the finding
        return f"{name}: ERROR cannot be read as FHIR JSON or XML: {exc}", 1
    issues = validate_resource(resource, profiles)
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    shown = issues if show_warnings else errors
    rtype = resource.get("resourceType", "?") if isinstance(resource, dict) else "?"
    head = f"{name}: {rtype} {'INVALID' if errors else 'valid'} ({len(errors)} errors, {len(issues) - len(errors)} other)"
    lines = [head] + [f"  {i.severity:<11} {i.code:<13} {i.expression}: {i.diagnostics}" for i in shown]
    return "\n".join(lines), len(errors)
