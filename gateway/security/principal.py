"""Who is asking: an authenticated client (or the anonymous caller of a loopback gateway).

`may_read(principal, resource)` is the one rule for "may this caller see this resource": its
type is in the caller's read or search scopes, and every restricted security label it carries
(`meta.security`, e.g. v3-Confidentiality `R`) is one the caller holds. The search SQL applies
the same rule (gateway.security.visibility), so a list, its total and a direct read agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from gateway.security.scopes import Scope

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
Label = tuple[str, str]  # (system, code)
# Who looked at whom is for operators (and clients granted the type by name), not for every
# partner holding `system/*.rs`: AuditEvents sit in the Patient compartment.
OPERATOR_TYPES = frozenset({"AuditEvent"})


def parse_label(text: str) -> Label:
    """`R` (a v3-Confidentiality code) or `system|code`."""
    text = text.strip()
    if "|" in text:
        system, _, code = text.rpartition("|")
        return system, code
    return CONFIDENTIALITY, text


def parse_labels(value: str | list[str] | None) -> frozenset[Label]:
    if not value:
        return frozenset()
    items = value.split(",") if isinstance(value, str) else value
    return frozenset(parse_label(v) for v in items if str(v).strip())


@dataclass(frozen=True)
class Principal:
    client_id: str
    organization: str = ""  # ODS code
    name: str = ""
    scopes: tuple[Scope, ...] = ()
    labels: frozenset[Label] = frozenset()  # restricted labels this caller may see
    channels: frozenset[str] = frozenset()  # inbound channels: hl7v2, adw, ingest-council, ingest-community
    operator: bool = False  # may use the operator views (inbox, delivery log, event service)
    unrestricted: bool = False  # every type, every label (the anonymous caller when auth is off)
    token_id: str = ""
    expires_at: float = 0.0
    perms: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        merged: dict[str, set[str]] = {}
        for s in self.scopes:
            merged.setdefault(s.type, set()).update(s.letters)
        object.__setattr__(self, "perms", {t: frozenset(v) for t, v in merged.items()})

    def allows(self, rtype: str, letter: str) -> bool:
        if self.unrestricted:
            return True
        if rtype in OPERATOR_TYPES and not self.operator:
            return letter in self.perms.get(rtype, ())  # named explicitly, never through `*`
        return letter in self.perms.get(rtype, ()) or letter in self.perms.get("*", ())

    def can_see_type(self, rtype: str) -> bool:
        """Read or search on the type: what makes a resource of it visible in any answer."""
        return self.allows(rtype, "r") or self.allows(rtype, "s")

    @property
    def all_types(self) -> bool:
        return self.unrestricted or bool({"r", "s"} & set(self.perms.get("*", ())))

    def readable_types(self) -> list[str]:
        return sorted(t for t, letters in self.perms.items() if t != "*" and {"r", "s"} & letters)

    def hidden_labels(self, restricted: frozenset[Label]) -> frozenset[Label]:
        """The restricted labels this caller does not hold (resources carrying one are invisible)."""
        if self.unrestricted:
            return frozenset()
        return restricted - self.labels

    @property
    def scope_text(self) -> str:
        return " ".join(str(s) for s in self.scopes)


ANONYMOUS = Principal("anonymous", name="unauthenticated caller (auth off)", unrestricted=True, operator=True,
                      channels=frozenset({"hl7v2", "adw", "ingest-council", "ingest-community"}))


def resource_labels(resource: dict) -> set[Label]:
    meta = resource.get("meta") if isinstance(resource, dict) else None
    out = set()
    for c in (meta or {}).get("security") or []:
        if isinstance(c, dict) and c.get("code"):
            out.add((c.get("system") or "", c["code"]))
    return out


def label_allowed(principal: Principal, resource: dict, restricted: frozenset[Label]) -> bool:
    hidden = principal.hidden_labels(restricted)
    return not hidden or not (resource_labels(resource) & hidden)


def may_read(principal: Principal | None, resource: dict | bytes, restricted: frozenset[Label] | None = None) -> bool:
    """May `principal` see `resource` (a dict or its JSON bytes)?

    None is the gateway itself (pipelines, start-up loading): it sees everything. `restricted` is
    the deployment's list of restricted labels (GATEWAY_RESTRICTED_LABELS); when omitted, the one
    the running security service was configured with. For the events engine: a subscription's
    owner is `gateway.security.subscriber(ctx, subscription)`; send a change only when
    `may_read(owner, resource)`.
    """
    if principal is None or principal.unrestricted:
        return True
    if isinstance(resource, (bytes, bytearray, memoryview)):
        raw = bytes(resource)
        rtype = _type_of(raw)
        if rtype is None or not principal.can_see_type(rtype):
            return False
        if b'"security"' not in raw and rtype != "Subscription":
            return True
        resource = orjson.loads(raw)
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not principal.can_see_type(rtype):
        return False
    if restricted is None:
        from gateway.security.service import configured_labels

        restricted = configured_labels()
    if rtype == "Subscription" and not principal.operator and owner_of(resource) != principal.client_id:
        return False  # a Subscription holds its owner's secrets (signing secret, channel headers)
    return label_allowed(principal, resource, restricted)


SUBSCRIPTION_OWNER = "https://fhir.activerecovery.example/CodeSystem/subscription-owner"


def owner_of(subscription: dict) -> str | None:
    """The client that created a Subscription (tagged by the gateway when it was written)."""
    for t in (subscription.get("meta") or {}).get("tag") or []:
        if isinstance(t, dict) and t.get("system") == SUBSCRIPTION_OWNER:
            return t.get("code")
    return None


def _type_of(raw: bytes) -> str | None:
    # Stored resources begin {"resourceType":"X",...}; anything else is parsed.
    head = b'{"resourceType":"'
    if raw.startswith(head):
        end = raw.find(b'"', len(head))
        if end > 0:
            return raw[len(head):end].decode()
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value.get("resourceType") if isinstance(value, dict) else None
