"""Community health extracts in CSDS data items (SystmOne reporting CSV) as FHIR R4 / UK Core.

CSDS itself is a monthly return (an MS Access intermediate database, or an XML file valid
against the CSDS XML schema, uploaded to the SDCS Cloud); what a trust gives a partner is a CSV
extract. The layout here (`mappings/community-csds.json`) is one row per CSDS record, named by
`Record_Type`, with the person's CYP001/CYP002 items repeated on every row:

- **CYP101** (+ CYP102 items) referral -> ServiceRequest (status active; completed once discharged
  or closed; revoked when rejected; source of referral as Extension-UKCore-SourceOfServiceRequest)
  and the referral's EpisodeOfCare (received -> discharged), which this row owns.
- **CYP201** care contact -> Encounter: class from the consultation mechanism (telephone, video:
  VR) or else from the activity location type (home, care home: HH; clinic: AMB); status finished
  when the patient was seen (attendance 5, 6), cancelled otherwise (2, 3, 4, 7) with the attendance
  code and cancellation reason kept in an extension; `basedOn` the referral, `episodeOfCare`.
- **CYP202** care activity -> Observation (coded observation with a value, e.g. a scored outcome
  measure) or Procedure (coded procedure, or the activity type), `encounter` -> the contact.
- **CYP004** care plan (+ CYP005 agreed date and up to three local goal columns) -> CarePlan with
  its Goals.

Only the CSV form is read; the CSDS XML schema (TRUD) is not implemented.
"""

from __future__ import annotations

import os
from datetime import date, datetime, time
from pathlib import Path
from typing import IO, Iterator
from zoneinfo import ZoneInfo

from gateway.adapters.tabular import ColumnSpec, ParsedRow, RowResult, load_spec, read_table
from gateway.adapters.tabular.fhir import (
    GATEWAY, ODS_SYSTEM, PATIENT_REF, concept, conditional_ref, drop_empty, full_url, id_system, identifier, meta,
    org_ref, period, put_entry,
)
from gateway.adapters.tabular.patient import patient_from_row

SOURCE_OF_REQUEST_URL = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-SourceOfServiceRequest"
LOCATION_TYPE_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-EncounterLocationTypeEngland"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ENCOUNTER_STATUS = "http://hl7.org/fhir/encounter-status"
GOAL_STATUS = "http://hl7.org/fhir/goal-status"
GOAL_ACHIEVEMENT = "http://terminology.hl7.org/CodeSystem/goal-achievement"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
NHSDD = f"{GATEWAY}/CodeSystem/nhsdd-"
ATTENDANCE_EXT = f"{GATEWAY}/StructureDefinition/care-contact-attendance"
AGREED_EXT = f"{GATEWAY}/StructureDefinition/care-plan-agreed-date"
ACTIVITY_DURATION_EXT = f"{GATEWAY}/StructureDefinition/care-activity-duration"
CLASS_DISPLAY = {"HH": "home health", "AMB": "ambulatory", "VR": "virtual", "IMP": "inpatient encounter"}
KIND_IDS = {"referral": "service-request", "contact": "care-contact", "activity": "care-activity", "plan": "care-plan"}
GOALS = (1, 2, 3)


def read_community_file(path_or_stream: str | os.PathLike | IO, spec: ColumnSpec | str | os.PathLike
                        ) -> tuple[list[str], Iterator[RowResult]]:
    """File-level messages (`error: ...` stops the file, `warning: ...` does not) and one
    RowResult per data row, produced as the caller iterates."""
    if not isinstance(spec, ColumnSpec):
        spec = load_spec(Path(spec))
    if spec.adapter != "community":
        raise ValueError(f"column spec {spec.id} is not a community layout (adapter 'community')")
    messages, rows = read_table(path_or_stream, spec)
    return messages, (map_row(row, spec) for row in rows)


class _Record:
    """One row's record, with the identifiers its resources share (all scoped by provider ODS code)."""

    def __init__(self, row: ParsedRow, spec: ColumnSpec) -> None:
        self.row, self.spec, self.kind = row, spec, row.kind or ""
        self.ods = row.get("provider")
        self.provider_ref = org_ref(ODS_SYSTEM, self.ods)
        self.system = self.id(KIND_IDS[self.kind])
        self.key: str = row.key or ""
        self.tz = ZoneInfo(spec.setting("timezone", "Europe/London"))
        referral = row.get("service_request_id")
        self.referral = (self.id("service-request"), referral) if referral else None
        self.episode = (self.id("episode"), referral) if referral else None

    def id(self, kind: str) -> str:
        return id_system("community", self.ods, kind)

    def moment(self, day: str | None, at: str | None) -> str | None:
        """A FHIR dateTime: the date alone, or date and local time with its UTC offset."""
        if not day or not at:
            return day
        local = datetime.combine(date.fromisoformat(day), time.fromisoformat(at), tzinfo=self.tz)
        return local.isoformat()

    def local_code(self, item: str, code: str | None, label: str) -> dict | None:
        """A CSDS code without a ConceptMap (team type, referral reason, care plan type) kept as sent."""
        return concept(f"{NHSDD}{item}", code, text=f"{label} {code}") if code else None


def map_row(row: ParsedRow, spec: ColumnSpec) -> RowResult:
    if row.errors:
        return RowResult(row.line, None, [], list(row.errors), list(row.warnings))
    rec = _Record(row, spec)
    patient = patient_from_row(row, rec.id("patient"), rec.provider_ref, spec.id)
    result = RowResult(row.line, patient, [], [], list(row.warnings))
    if row.duplicate_of is not None:
        return result
    build = {"referral": _referral, "contact": _contact, "activity": _activity, "plan": _plan}[rec.kind]
    result.entries.extend(build(rec, result.warnings))
    return result


# --------------------------------------------------------------------------- CYP101 referral


def _referral(rec: _Record, warnings: list[str]) -> list[dict]:
    row, spec = rec.row, rec.spec
    ended = row.get("discharge_date") or row.get("closure_date")
    if row.get("rejection_date"):
        status, episode_status, end = "revoked", "cancelled", row.get("rejection_date")
    elif ended:
        status, episode_status, end = "completed", "finished", ended
    else:
        status, episode_status, end = "active", "active", None
    source = row.get("source_of_referral")
    priority = row.get("priority")
    notes = [f"Referral closed: reason {row.get('closure_reason')}" if row.get("closure_reason") else None,
             f"Referral rejected: reason {row.get('rejection_reason')}" if row.get("rejection_reason") else None]
    team = row.get("team_id")
    request = drop_empty({
        "resourceType": "ServiceRequest",
        "meta": meta("ServiceRequest", spec.id),
        "extension": [{"url": SOURCE_OF_REQUEST_URL, "valueCodeableConcept": source.concept()}] if source else [],
        "identifier": [identifier(rec.system, rec.key)],
        "status": status,
        "intent": "order",
        "priority": priority.code if priority else None,
        "code": {"text": "Referral to community services"},
        "subject": {"reference": PATIENT_REF},
        "authoredOn": rec.moment(row.get("received_date"), row.get("received_time")),
        "performerType": rec.local_code("service-or-team-type-referred-to", row.get("team_type"),
                                        "Service or team type referred to:"),
        "performer": [{"identifier": {"system": rec.id("team"), "value": team}} if team else rec.provider_ref],
        "reasonCode": [rec.local_code("primary-reason-for-referral-community", row.get("primary_reason"),
                                      "Primary reason for referral:")],
        "note": [{"text": n} for n in notes if n],
    })
    kind = spec.setting("episodeType") or {}
    episode = drop_empty({
        "resourceType": "EpisodeOfCare",
        "meta": meta("EpisodeOfCare", spec.id),
        "identifier": [identifier(*rec.episode)],  # type: ignore[misc]
        "status": episode_status,
        "type": [concept(kind["system"], kind["code"], kind.get("display"), kind.get("text"))] if kind else [],
        "patient": {"reference": PATIENT_REF},
        "managingOrganization": rec.provider_ref,
        "period": period(row.get("received_date"), end),
        "referralRequest": [{"reference": full_url("ServiceRequest", rec.system, rec.key)}],
    })
    return [put_entry("ServiceRequest", rec.system, rec.key, request),
            put_entry("EpisodeOfCare", *rec.episode, episode)]  # type: ignore[misc]


# --------------------------------------------------------------------------- CYP201 care contact


def _contact(rec: _Record, warnings: list[str]) -> list[dict]:
    row, spec = rec.row, rec.spec
    mechanism, location, attendance = row.get("consultation_mechanism"), row.get("location_type"), row.get("attendance")
    cls = mechanism.code_in(ACT_CODE) or (location.code_in(ACT_CODE) if location else None) or "AMB"
    status = attendance.code_in(ENCOUNTER_STATUS)
    minutes = row.get("contact_duration")
    attended = [{"url": "attendance", "valueCodeableConcept": {
        "coding": [c for c in attendance.codings if c["system"] != ENCOUNTER_STATUS], "text": attendance.display}}]
    if row.get("cancellation_reason"):
        attended.append({"url": "cancellationReason", "valueString": row.get("cancellation_reason")})
    place = None
    if location is not None:
        physical = [c for c in location.codings if c["system"] == LOCATION_TYPE_SYSTEM]
        place = {"location": {"display": location.display},
                 "physicalType": {"coding": physical, "text": location.display}}
    encounter = drop_empty({
        "resourceType": "Encounter",
        "meta": meta("Encounter", spec.id),
        "extension": [{"url": ATTENDANCE_EXT, "extension": attended}],
        "identifier": [identifier(rec.system, rec.key)],
        "status": status,
        "class": {"system": ACT_CODE, "code": cls, "display": CLASS_DISPLAY.get(cls, cls)},
        "type": [{"coding": [c for c in mechanism.codings if c["system"] != ACT_CODE], "text": mechanism.display}],
        "subject": {"reference": PATIENT_REF},
        "episodeOfCare": [conditional_ref("EpisodeOfCare", *rec.episode)],  # type: ignore[misc]
        "basedOn": [conditional_ref("ServiceRequest", *rec.referral)],  # type: ignore[misc]
        "period": {"start": rec.moment(row.get("contact_date"), row.get("contact_time"))},
        "length": ({"value": minutes, "unit": "minutes", "system": UCUM, "code": "min"}
                   if minutes is not None and status == "finished" else None),
        "location": [place],
        "serviceProvider": rec.provider_ref,
    })
    return [put_entry("Encounter", rec.system, rec.key, encounter)]


# --------------------------------------------------------------------------- CYP202 care activity


def _activity(rec: _Record, warnings: list[str]) -> list[dict]:
    row, spec = rec.row, rec.spec
    activity_type = row.get("activity_type")
    professional = row.get("care_professional_id")
    minutes = row.get("activity_duration")
    common = {
        "identifier": [identifier(rec.system, rec.key)],
        "subject": {"reference": PATIENT_REF},
        "encounter": conditional_ref("Encounter", rec.id("care-contact"), row.get("care_contact_id")),
    }
    duration = ({"url": ACTIVITY_DURATION_EXT, "valueDuration": {"value": minutes, "unit": "minutes", "system": UCUM,
                                                                  "code": "min"}} if minutes is not None else None)
    actor = {"identifier": {"system": rec.id("care-professional"), "value": professional}} if professional else None
    when = rec.moment(row.get("contact_date"), row.get("contact_time"))
    observed = row.get("observation_code")
    if observed:
        value = row.get("observation_value")
        unit = row.get("observation_unit")
        quantity = {"value": value, "unit": unit, "system": UCUM, "code": unit} if unit else {"value": value}
        resource = {
            "resourceType": "Observation",
            "meta": meta("Observation", spec.id),
            "extension": [duration],
            **common,
            "status": "final",
            "category": [activity_type.concept()] if activity_type else [],
            "code": {"coding": [{"system": SNOMED, "code": observed}]},
            "effectiveDateTime": when,
            "performer": [actor] if actor else [],
            "valueQuantity": quantity if value is not None else None,
        }
        if value is None:
            warnings.append("CodedObservation without ObsValue: the observation has no value")
        rtype = "Observation"
    else:
        if row.get("observation_value") is not None:
            warnings.append("ObsValue without CodedObservation was ignored")
        procedure = row.get("procedure_code")
        code = ({"coding": [{"system": SNOMED, "code": procedure}]} if procedure
                else {"text": activity_type.display if activity_type else "Community care activity"})
        resource = {
            "resourceType": "Procedure",
            "meta": meta("Procedure", spec.id),
            "extension": [duration],
            **common,
            "status": "completed",
            "category": activity_type.concept() if activity_type else None,  # 0..1 on Procedure
            "code": code,
            "performedDateTime": when,
            "performer": [{"actor": actor}] if actor else [],
        }
        rtype = "Procedure"
    return [put_entry(rtype, rec.system, rec.key, drop_empty(resource))]


# --------------------------------------------------------------------------- CYP004 care plan and goals


def _plan(rec: _Record, warnings: list[str]) -> list[dict]:
    row, spec = rec.row, rec.spec
    goal_system = rec.id("care-plan-goal")
    goals: list[dict] = []
    for n in GOALS:
        text = row.get(f"goal_{n}_description")
        if not text:
            if row.get(f"goal_{n}_status") or row.get(f"goal_{n}_target"):
                warnings.append(f"Goal_{n}: status or target date without a description; goal left out")
            continue
        state = row.get(f"goal_{n}_status")
        value = f"{rec.key}.{n}"
        goal = drop_empty({
            "resourceType": "Goal",
            "meta": meta("Goal", spec.id, profile=False),  # UK Core has no Goal profile
            "identifier": [identifier(goal_system, value)],
            "lifecycleStatus": (state.code_in(GOAL_STATUS) if state else None) or "active",
            "achievementStatus": ({"coding": [c for c in state.codings if c["system"] == GOAL_ACHIEVEMENT],
                                   "text": state.raw} if state and state.code_in(GOAL_ACHIEVEMENT) else None),
            "description": {"text": text},
            "subject": {"reference": PATIENT_REF},
            "startDate": row.get("plan_start") or row.get("plan_created"),
            "target": [{"dueDate": row.get(f"goal_{n}_target")}] if row.get(f"goal_{n}_target") else [],
            "expressedBy": rec.provider_ref,
        })
        goals.append(put_entry("Goal", goal_system, value, goal))
    plan_type = row.get("care_plan_type")
    agreed = row.get("plan_agreed")
    plan = drop_empty({
        "resourceType": "CarePlan",
        "meta": meta("CarePlan", spec.id),
        "extension": [{"url": AGREED_EXT, "valueDate": agreed}] if agreed else [],
        "identifier": [identifier(rec.system, rec.key)],
        "status": "completed" if row.get("plan_end") else "active",
        "intent": "plan",
        "category": [rec.local_code("care-plan-type-community-care", plan_type, "Care plan type:")
                     or {"text": "Community therapy plan"}],
        "title": "Community therapy plan",
        "subject": {"reference": PATIENT_REF},
        "period": period(row.get("plan_start") or row.get("plan_created"), row.get("plan_end")),
        "created": row.get("plan_created"),
        "author": rec.provider_ref,
        "supportingInfo": ([conditional_ref("ServiceRequest", *rec.referral),
                            conditional_ref("EpisodeOfCare", *rec.episode)] if rec.referral and rec.episode else []),
        "goal": [{"reference": g["fullUrl"]} for g in goals],
    })
    return [put_entry("CarePlan", rec.system, rec.key, plan), *goals]
