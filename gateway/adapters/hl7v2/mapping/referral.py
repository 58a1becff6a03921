"""Discharge -> referral to Active Recovery (a UK Core ServiceRequest), decided by a table.

`mappings/hl7v2-referral-triggers.json` holds the decision as data: ordered rules, each
matching on the discharge destination (NHS DD code, after the feed's PV1-36/37 reading) and/or
field values (e.g. a reablement flag in a ZU1 field agreed with the trust), naming one service:
home reablement, recovery hub bed or community therapy. The first matching rule wins, so one
spell raises at most one referral, identified by the spell so re-sent A03s update, not duplicate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import orjson

from .datatypes import organization_ref, practitioner_ref
from .model import CONDITION_REF, ENCOUNTER_REF, GATEWAY, PATIENT_REF, Context
from .pv1 import discharge_codes

TRIGGERS_FILE = "hl7v2-referral-triggers.json"
PROFILE = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-ServiceRequest"
PATHWAY = f"{GATEWAY}/CodeSystem/active-recovery-pathway"
# "ZU1-14", "PV1-3.1", or "OBX(REF)-5": the OBX whose field 3 (observation identifier) is REF
_FIELD = re.compile(r"^([A-Z][A-Z0-9]{2})(?:\(([^)]+)\))?-(\d+)(?:\.(\d+))?$")


@dataclass(frozen=True)
class Service:
    id: str
    display: str
    code: dict  # SNOMED CT Coding for ServiceRequest.code
    performer_ods: str
    performer_name: str


@dataclass(frozen=True)
class Rule:
    id: str
    service: str
    destinations: frozenset[str] | None  # None: any destination
    # (segment, qualifier on field 3 or "", field, component, accepted values)
    fields: tuple[tuple[str, str, int, int, frozenset[str]], ...]

    def matches(self, msg, destination: str) -> bool:
        if self.destinations is not None and destination not in self.destinations:
            return False
        for seg_name, qualifier, field_no, comp, accepted in self.fields:
            values = set()
            for seg in msg.segments_named(seg_name):
                if qualifier and seg.get(3).strip().upper() != qualifier:
                    continue
                for rep in range(max(seg.repetitions(field_no), 1)):
                    value = seg.get(field_no, rep, comp).strip().upper()
                    if value:
                        values.add(value)
            if not (values & accepted or ("*" in accepted and values)):
                return False
        return True


class ReferralTriggers:
    def __init__(self, services: dict[str, Service], rules: list[Rule]) -> None:
        self.services = services
        self.rules = rules

    @classmethod
    def from_dict(cls, data: dict) -> "ReferralTriggers":
        services = {}
        for sid, s in data.get("services", {}).items():
            services[sid] = Service(sid, s["display"], s["code"], s["performer"]["ods"], s["performer"]["name"])
        rules = []
        for r in data.get("rules", []):
            if r["service"] not in services:
                raise ValueError(f"referral rule {r.get('id')}: unknown service {r['service']!r}")
            when = r.get("when", {})
            fields = []
            for spec, accepted in when.get("fields", {}).items():
                m = _FIELD.match(spec)
                if not m:
                    raise ValueError(f"referral rule {r.get('id')}: field {spec!r} is not like "
                                     "'ZU1-14', 'PV1-3.1' or 'OBX(REF)-5'")
                fields.append((m.group(1), (m.group(2) or "").upper(), int(m.group(3)), int(m.group(4) or 1),
                               frozenset(str(v).strip().upper() for v in accepted)))
            dest = when.get("destination")
            rules.append(Rule(r["id"], r["service"], frozenset(dest) if dest is not None else None, tuple(fields)))
        return cls(services, rules)

    @classmethod
    def load(cls, path: str | Path) -> "ReferralTriggers":
        p = Path(path)
        if p.is_dir():
            p = p / TRIGGERS_FILE
        return cls.from_dict(orjson.loads(p.read_bytes()))

    def match(self, msg, destination: str) -> tuple[Rule, Service] | None:
        for rule in self.rules:
            if rule.matches(msg, destination):
                return rule, self.services[rule.service]
        return None


def apply(ctx: Context) -> None:
    out = ctx.out
    triggers: ReferralTriggers | None = ctx.triggers
    pv1 = ctx.segment("PV1")
    if triggers is None or pv1 is None or out.encounter is None or out.referral_key is None:
        return
    _, destination, _ = discharge_codes(ctx, pv1)
    out.referral_decided = True
    found = triggers.match(ctx.msg, destination)
    if found is None:
        return
    rule, service = found
    referral: dict = {
        "resourceType": "ServiceRequest",
        "meta": {"profile": [PROFILE]},
        "identifier": [{"system": out.referral_key[0], "value": out.referral_key[1]}],
        "status": "active",
        "intent": "order",
        "category": [{"coding": [{"system": PATHWAY, "code": service.id, "display": service.display}]}],
        "code": {"coding": [service.code], "text": service.display},
        "subject": {"reference": PATIENT_REF},
        "encounter": {"reference": ENCOUNTER_REF},
    }
    if out.discharge_time:
        referral["occurrenceDateTime"] = out.discharge_time
    if out.recorded_time:
        referral["authoredOn"] = out.recorded_time
    consultant = practitioner_ref(pv1, 7, 0, ctx.system(ctx.feed.staff_system))
    referral["requester"] = consultant or organization_ref(ctx.ods, ctx.feed.name)
    referral["performer"] = [organization_ref(service.performer_ods, service.performer_name)]
    if out.conditions:
        referral["reasonReference"] = [{"reference": f"{CONDITION_REF}{i}"} for i in range(len(out.conditions))]
    referral["note"] = [{"text": f"Raised from the hospital discharge (ADT {out.event}) by referral rule '{rule.id}'."}]
    out.referral = referral
