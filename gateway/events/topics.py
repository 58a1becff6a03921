"""Topics of the R4 topic-based subscriptions backport that this gateway can raise.

R4 has no SubscriptionTopic resource, so the backport names a topic by its canonical URL in
`Subscription.criteria`. Each topic is a resource trigger: the state a resource must be in now
(a search, run by the same engine as the REST API) and a test of the version before it, so a
topic fires when something *becomes* true rather than whenever it is true.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

GATEWAY = "https://fhir.activerecovery.example"
# The CodeSystem the HL7 v2 referral mapping puts on every referral to the Active Recovery service
# (gateway.adapters.hl7v2.mapping.referral.PATHWAY; a test keeps the two equal).
PATHWAY = f"{GATEWAY}/CodeSystem/active-recovery-pathway"


@dataclass(frozen=True)
class Topic:
    url: str
    title: str
    description: str
    resource_type: str
    current: tuple[tuple[str, str], ...]  # search parameters the resource must match now
    passes: Callable[[dict], bool]  # the same test on the changed version itself
    previous_failed: Callable[[dict | None], bool]  # True when the version before did not qualify
    previous_text: str
    interactions: tuple[str, ...] = ("create", "update")

    def to_resource(self) -> dict:
        """The topic as an R4B SubscriptionTopic (what the backport IG publishes for R4 servers)."""
        query = "&".join(f"{k}={v}" for k, v in self.current)
        return {
            "resourceType": "SubscriptionTopic",
            "url": self.url,
            "title": self.title,
            "status": "active",
            "description": self.description,
            "resourceTrigger": [{
                "description": self.description,
                "resource": f"http://hl7.org/fhir/StructureDefinition/{self.resource_type}",
                "supportedInteraction": list(self.interactions),
                "queryCriteria": {
                    "previous": self.previous_text,
                    "resultForCreate": "test-passes",
                    "current": f"{self.resource_type}?{query}",
                    "resultForDelete": "test-fails",
                    "requireBoth": True,
                },
            }],
            "canFilterBy": [
                {"resource": self.resource_type, "filterParameter": p}
                for p in ("patient", "subject", "performer", "requester", "category", "code", "encounter")
            ],
            "notificationShape": [{"resource": self.resource_type, "include": [
                f"{self.resource_type}:patient", f"{self.resource_type}:performer"]}],
        }


def _active_referral(resource: dict) -> bool:
    codings = [c for cat in resource.get("category", []) or [] for c in cat.get("coding", []) or []]
    return resource.get("status") == "active" and any(c.get("system") == PATHWAY for c in codings)


def _not_active(previous: dict | None) -> bool:
    return previous is None or previous.get("status") != "active"


DISCHARGE_TO_ACTIVE_RECOVERY = Topic(
    url=f"{GATEWAY}/SubscriptionTopic/discharge-to-active-recovery",
    title="Discharge into Active Recovery",
    description="A referral (ServiceRequest) to the Active Recovery service becomes active: someone is being "
                "discharged from hospital into reablement, a recovery hub bed or community therapy.",
    resource_type="ServiceRequest",
    current=(("status", "active"), ("category", f"{PATHWAY}|")),
    passes=_active_referral,
    previous_failed=_not_active,
    previous_text="ServiceRequest?status:not=active",
)

TOPICS: dict[str, Topic] = {t.url: t for t in (DISCHARGE_TO_ACTIVE_RECOVERY,)}
