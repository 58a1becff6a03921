"""What one ADT message says, as FHIR resources with placeholder references.

`AdtMapping` is the hand-over between mapping (this package: message -> resources) and
planning (`gateway.adapters.hl7v2.plan`: resources + what the store holds -> transaction).
References between the produced resources are placeholders the planner resolves
(PATIENT_REF, ENCOUNTER_REF, CONDITION_REF + index); organisations and practitioners are
references by identifier, which the store keeps as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .codes import ConceptMaps, Coding
from .datatypes import dtm
from .errors import DATA_TYPE_ERROR, AckError
from .feeds import Feed

PATIENT_REF = "urn:gateway:patient"
ENCOUNTER_REF = "urn:gateway:encounter"
CONDITION_REF = "urn:gateway:condition:"  # + index in AdtMapping.conditions
REFERRAL_REF = "urn:gateway:referral"

GATEWAY = "https://fhir.activerecovery.example"
# Extension recording the last ADT event applied to a resource, so an older message arriving
# late never undoes a newer one (see plan.py). Sub-extensions: event (code, e.g. A03),
# recorded (dateTime: EVN-2, else MSH-7), source (Identifier: ODS code of the sender).
LAST_EVENT_URL = f"{GATEWAY}/StructureDefinition/hl7v2-last-event"
# Identifier of the Active Recovery referral raised from a spell: "<ODS>.<PV1-19>", so a re-sent
# or corrected A03 finds the same ServiceRequest and an A13 can withdraw it.
REFERRAL_ID = f"{GATEWAY}/Id/discharge-referral"

Key = tuple[str, str]  # (identifier system, value)


@dataclass
class AdtMapping:
    event: str  # trigger event, e.g. "A03"
    action: str  # admit, transfer, discharge, register, pre-admit, update, cancel-admit, ...
    event_time: str | None  # when it happened: EVN-6, else EVN-2, else MSH-7 (FHIR dateTime)
    patient: dict | None = None
    patient_keys: list[Key] = field(default_factory=list)
    encounter: dict | None = None
    encounter_key: Key | None = None
    referral_key: Key | None = None  # set with encounter_key, whether or not a referral is raised
    conditions: list[dict] = field(default_factory=list)
    referral: dict | None = None
    # True when a referral trigger table was consulted (so "no referral" is a decision, and a
    # stored referral from an earlier A03 that no longer qualifies may be revoked)
    referral_decided: bool = False
    merge_from: list[Key] = field(default_factory=list)
    errors: list[AckError] = field(default_factory=list)
    # Ordering key for out-of-order delivery: when the sender recorded the event
    # (EVN-2, else MSH-7, else EVN-6). Compared against the LAST_EVENT_URL extension.
    recorded_time: str | None = None
    # Sender: feed id, ODS code, MSH-3 application, MSH-10 control id
    source: dict = field(default_factory=dict)
    # For the planner: the discharge time (PV1-45 / EVN-6) and location-change time (A02)
    discharge_time: str | None = None
    transfer_time: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class Context:
    """Everything a segment mapper needs, and where it reports problems."""

    msg: object  # gateway.adapters.hl7v2.er7.Message (duck-typed: segment/segments_named/...)
    feed: Feed
    codes: ConceptMaps
    ods: str  # ODS code of the sender (feed setting, else MSH-4)
    out: AdtMapping
    triggers: object = None  # referral.ReferralTriggers, or None: no referrals raised

    def segment(self, name: str):
        return self.msg.segment(name)

    def error(self, segment: str, field_no: int | None, code: int, message: str, sequence: int = 1) -> None:
        self.out.errors.append(AckError(segment=segment, sequence=sequence, field=field_no, code=code, message=message))

    def time(self, seg, field_no: int, sequence: int = 1) -> str | None:
        """A TS/DTM field as FHIR date/dateTime in the feed's zone; malformed -> 102, None."""
        raw = seg.get(field_no) if seg is not None else ""
        if not raw:
            return None
        try:
            return dtm(raw, self.feed.tz)
        except ValueError:
            self.error(seg.name, field_no, DATA_TYPE_ERROR, f"{seg.name}-{field_no} {raw!r} is not a valid date/time", sequence)
            return None

    def code(self, map_id: str, code: str) -> Coding | None:
        return self.codes.translate(map_id, code) if code else None

    def concept(self, map_id: str, code: str) -> dict | None:
        """A CodeableConcept for a coded field; an unknown code is kept as text, not dropped."""
        if not code:
            return None
        coding = self.code(map_id, code)
        return {"coding": [coding]} if coding else {"text": code}

    def system(self, template: str, authority: str = "", type_code: str = "") -> str:
        return self.feed.system(template, self.ods, authority, type_code)
