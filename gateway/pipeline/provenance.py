"""Provenance: who said what, when, and through which inbox entry."""

from __future__ import annotations

from gateway.store.base import instant_iso
from gateway.store.sql import now_us

INBOX_SYSTEM = "https://fhir.activerecovery.example/Id/inbox"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"


def provenance_for(targets: list[str], inbox_id: int, description: str, sender_ods: str | None,
                   sender_name: str, activity: str = "UPDATE") -> dict:
    """A Provenance naming every resource version one inbound message wrote."""
    who: dict = {"display": sender_name}
    if sender_ods:
        who["identifier"] = {"system": ODS_SYSTEM, "value": sender_ods}
    return {
        "resourceType": "Provenance",
        "target": [{"reference": t} for t in targets],
        "recorded": instant_iso(now_us()),
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": activity}]},
        "agent": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                 "code": "author"}]},
            "who": who,
        }],
        "entity": [{
            "role": "source",
            "what": {"identifier": {"system": INBOX_SYSTEM, "value": str(inbox_id)}, "display": description},
        }],
    }
