"""Profile checks on write: which profiles a written resource is held to, and what a failure does.

`GATEWAY_PROFILE_POLICY` is `off`, `warn` (default), `reject`, or the path of a JSON file:

    {"default": "warn",
     "profiles": {"https://fhir.activerecovery.example/StructureDefinition/ActiveRecovery-ServiceRequest": "reject"},
     "apply": {"ServiceRequest": ["https://fhir.activerecovery.example/StructureDefinition/ActiveRecovery-ServiceRequest"]}}

A resource is checked against the profiles it declares in `meta.profile` that the validator
holds, plus those `apply` names for its type. `reject` makes the write fail with 422 and the
issues; `warn` stores it and logs them. A resource with neither is not profile-checked at all,
so the common write pays one dict lookup.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from .registry import ProfileRegistry, profiles_dir
from .validator import Issue, Validator

log = logging.getLogger("gateway.conformance")

POLICIES = ("off", "warn", "reject")


@dataclass
class ProfilePolicy:
    default: str = "warn"
    profiles: dict[str, str] = field(default_factory=dict)  # url -> policy
    apply: dict[str, tuple[str, ...]] = field(default_factory=dict)  # resource type -> profile urls

    @classmethod
    def parse(cls, setting: str) -> "ProfilePolicy":
        setting = (setting or "warn").strip()
        if setting.lower() in POLICIES:
            return cls(default=setting.lower())
        path = Path(setting)
        try:
            data = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"GATEWAY_PROFILE_POLICY: {setting!r} is not off|warn|reject nor a readable JSON "
                             f"file ({exc})") from None
        policy = cls(default=str(data.get("default", "warn")).lower(),
                     profiles={k: str(v).lower() for k, v in (data.get("profiles") or {}).items()},
                     apply={k: tuple(v) for k, v in (data.get("apply") or {}).items()})
        for name in [policy.default, *policy.profiles.values()]:
            if name not in POLICIES:
                raise ValueError(f"GATEWAY_PROFILE_POLICY: unknown policy {name!r} (use off, warn or reject)")
        return policy

    def of(self, url: str) -> str:
        return self.profiles.get(url, self.default)


class WriteChecker:
    """Built once per process (the registry compiles each profile once, on first use)."""

    def __init__(self, policy: ProfilePolicy, validator: Validator) -> None:
        self.policy = policy
        self.validator = validator
        self.active = policy.default != "off" or any(p != "off" for p in policy.profiles.values())

    @classmethod
    def from_settings(cls, settings) -> "WriteChecker":
        registry = ProfileRegistry.from_folder(profiles_dir(settings))
        return cls(ProfilePolicy.parse(getattr(settings, "profile_policy", "warn")), Validator(registry))

    def profiles_for(self, resource: dict) -> list[str]:
        declared = (resource.get("meta") or {}).get("profile") if "meta" in resource else None
        configured = self.policy.apply.get(resource.get("resourceType", ""), ())
        if not declared and not configured:
            return []
        urls: list[str] = []
        for url in [*(declared or ()), *configured]:
            if isinstance(url, str):
                key = url.split("|", 1)[0]
                if key not in urls and self.validator.registry.knows(key):
                    urls.append(key)
        return urls

    def check(self, resource: dict) -> tuple[list[Issue], list[Issue]]:
        """(issues that reject the write, issues to log) for one structurally valid resource."""
        if not self.active:
            return [], []
        checked: list[tuple[str, list[Issue]]] = []
        applied: set[str] = set()
        for url in self.profiles_for(resource):
            policy = self.policy.of(url)
            if policy != "off":
                checked.append((policy, self.validator.check_profile(resource, url, applied=applied)))
        if not checked:
            return [], []
        extensions: list[Issue] = []
        self.validator.check_extensions(resource, extensions)
        checked.append(("reject" if any(p == "reject" for p, _ in checked) else "warn", extensions))
        reject: list[Issue] = []
        warn: list[Issue] = []
        for policy, issues in checked:
            if any(i.severity in ("error", "fatal") for i in issues):
                (reject if policy == "reject" else warn).extend(i for i in issues if i.severity != "information")
        return reject, warn


def checker_for(ctx) -> WriteChecker:
    """The process's checker (its registry is shared with $validate and the CapabilityStatement)."""
    checker = ctx.services.get("profile_checker")
    if checker is None:
        checker = ctx.services["profile_checker"] = WriteChecker.from_settings(ctx.settings)
    return checker


def enforce(ctx, resource: dict) -> None:
    """Called by `GatewayContext.check_resource` after the structural check of every write."""
    checker = checker_for(ctx)
    if not checker.active:
        return
    reject, warn = checker.check(resource)
    if warn:
        rid = f"{resource.get('resourceType')}/{resource.get('id', '(new)')}"
        log.warning("%s does not conform to its profiles (stored; policy warn): %s", rid,
                    "; ".join(f"{i.expression}: {i.diagnostics}" for i in warn if i.severity == "error")[:2000])
    if reject:
        from gateway.fhir.outcome import FhirError
        from gateway.fhir.outcome import Issue as OutcomeIssue

        raise FhirError(422, [OutcomeIssue(i.severity, i.code, i.diagnostics, i.expression) for i in reject])
