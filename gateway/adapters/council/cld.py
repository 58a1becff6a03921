"""Council adult social care events (CLD layout) as FHIR R4 / UK Core resources.

One CLD row is one event; its `Event_Type` decides what it becomes:

- **Request** -> ServiceRequest (intent `order`, category = route of access, status from the outcome),
  and the row owns the recovery episode's EpisodeOfCare (type reablement, managed by the council,
  `referralRequest` -> the ServiceRequest).
- **Assessment**, **Review** -> Encounter (class HH unless the method says telephone/video; type =
  assessment type or "Review"; period = event start/end); when the outcome names a plan
  ("Progress to reablement/ST-Max", "Progress to support planning or services", ...) also a CarePlan
  with intent `proposal` whose `encounter` is that Encounter: the link from the decision to the plan.
- **Service** -> CarePlan (intent `plan`; category = service type, e.g. `Short term support: ST-Max`;
  one activity whose detail is the service component with planned units per week; period = service
  start/end; status active while open, then completed or revoked by the outcome). The service
  outcome is `CarePlan.activity.outcomeCodeableConcept` (kept on the plan it belongs to rather than
  a separate Observation: CLD reports one outcome per service event, not a measured result).

Everything links to the EpisodeOfCare keyed by person + `Episode_Reference` (a local column: CLD
itself has no episode number); a Request without one opens an episode keyed by its own reference.
Rows of other kinds without an episode reference are mapped unlinked, with a warning.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Iterator

from gateway.adapters.tabular import ColumnSpec, ParsedRow, RowResult, load_spec, read_table
from gateway.adapters.tabular.codes import CodeValue
from gateway.adapters.tabular.fhir import (
    GATEWAY, PATIENT_REF, concept, conditional_url, drop_empty, full_url, id_system, identifier, meta, org_ref,
    period, put_entry,
)
from gateway.adapters.tabular.patient import patient_from_row

OUTCOME_EXT = f"{GATEWAY}/StructureDefinition/social-care-event-outcome"
EVENT_TYPE_SYSTEM = f"{GATEWAY}/CodeSystem/cld-event-type"
CQC_LOCATION_SYSTEM = f"{GATEWAY}/Id/cqc-location"  # no UK Core identifier system for CQC locations
REQUEST_STATUS = "http://hl7.org/fhir/request-status"
EPISODE_STATUS = "http://hl7.org/fhir/episode-of-care-status"
PLAN_NAMED = f"{GATEWAY}/CodeSystem/outcome-names-plan"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CLASS_DISPLAY = {"HH": "home health", "AMB": "ambulatory", "VR": "virtual", "IMP": "inpatient encounter"}
ACTIVITY_STATUS = {"active": "in-progress", "completed": "completed", "revoked": "stopped"}


def read_council_file(path_or_stream: str | os.PathLike | IO, spec: ColumnSpec | str | os.PathLike
                      ) -> tuple[list[str], Iterator[RowResult]]:
    """File-level messages (`error: ...` stops the file, `warning: ...` does not) and one
    RowResult per data row, produced as the caller iterates."""
    if not isinstance(spec, ColumnSpec):
        spec = load_spec(Path(spec))
    if spec.adapter != "council" or "outcome-status" not in spec.tables:
        raise ValueError(f"column spec {spec.id} is not a council layout (adapter 'council' with an "
                         f"'outcome-status' ConceptMap)")
    messages, rows = read_table(path_or_stream, spec)
    return messages, (map_row(row, spec) for row in rows)


class _Event:
    """One row's event, with the identifiers and references its resources share."""

    def __init__(self, row: ParsedRow, spec: ColumnSpec) -> None:
        self.row, self.spec, self.kind = row, spec, row.kind or ""
        self.council = row.get("council_code")
        self.council_ref = org_ref(spec.setting("councilIdentifierSystem"), self.council)
        self.system = id_system("council", self.council, self.kind)
        self.key: str = row.key or ""
        self.start, self.end = row.get("event_start"), row.get("event_end")
        self.outcome: CodeValue | None = row.get("event_outcome")
        self.outcome_status = spec.table("outcome-status").lookup(self.outcome.code) if self.outcome else None
        episode_ref = row.get("episode_reference") or (self.key if self.kind == "request" else None)
        self.episode: tuple[str, str] | None = None
        if episode_ref:
            self.episode = (id_system("council", self.council, "episode"), f"{row.get('person_id')}.{episode_ref}")

    def episode_ref(self) -> dict | None:
        """Every row refers to the episode entry of its own transaction: the Request's full
        EpisodeOfCare, or for other rows a create-if-missing stub (see `_episode_stub`)."""
        if self.episode is None:
            return None
        return {"reference": full_url("EpisodeOfCare", *self.episode)}

    def status(self, system: str) -> str | None:
        return self.outcome_status.code_in(system) if self.outcome_status else None

    def outcome_extension(self) -> dict | None:
        if self.outcome is None:
            return None
        parts = [{"url": "outcome", "valueCodeableConcept": self.outcome.concept()}]
        if self.end:
            parts.append({"url": "date", "valueDate": self.end})
        if self.row.get("review_outcomes"):
            parts.append({"url": "outcomesAchieved", "valueString": self.row.get("review_outcomes")})
        return {"url": OUTCOME_EXT, "extension": parts}

    def reasons(self, *extra: dict | None) -> list[dict]:
        psr = self.row.get("support_reason")
        return [r for r in (*extra, psr.concept() if psr else None) if r]


def map_row(row: ParsedRow, spec: ColumnSpec) -> RowResult:
    if row.errors:
        return RowResult(row.line, None, [], list(row.errors), list(row.warnings))
    event = _Event(row, spec)
    patient = patient_from_row(row, id_system("council", event.council, "person"), event.council_ref, spec.id,
                               spec.setting("nhsNumberVerificationStatus"))
    result = RowResult(row.line, patient, [], [], list(row.warnings))
    if row.duplicate_of is not None:
        return result
    if event.episode is None:
        column = spec.by_target["episode_reference"].name if "episode_reference" in spec.by_target else "episode"
        result.warnings.append(f"no {column}: the event is not linked to an EpisodeOfCare")
    build = {"request": _request, "assessment": _encounter, "review": _encounter, "service": _service}[event.kind]
    result.entries.extend(build(event))
    if event.episode is not None and event.kind != "request":
        result.entries.append(_episode_stub(event))
    return result


def _episode_stub(ev: _Event) -> dict:
    """A Service or Review may arrive without its Request (it began before the first extract):
    create the episode from what this row knows, only if it does not exist yet. When the Request
    arrives, its conditional update fills the episode in; a stub never overwrites it."""
    kind = ev.spec.setting("episodeType") or {}
    system, value = ev.episode
    stub = drop_empty({
        "resourceType": "EpisodeOfCare",
        "meta": meta("EpisodeOfCare", ev.spec.id),
        "identifier": [identifier(system, value)],
        "status": "active",
        "type": [concept(kind["system"], kind["code"], kind.get("display"), kind.get("text"))] if kind else [],
        "patient": {"reference": PATIENT_REF},
        "managingOrganization": ev.council_ref,
        "period": period(ev.start, None),
    })
    return {"fullUrl": full_url("EpisodeOfCare", system, value), "resource": stub,
            "request": {"method": "POST", "url": "EpisodeOfCare",
                        "ifNoneExist": conditional_url("EpisodeOfCare", system, value).split("?", 1)[1]}}


# --------------------------------------------------------------------------- Request


def _request(ev: _Event) -> list[dict]:
    row, spec = ev.row, ev.spec
    status = ev.status(REQUEST_STATUS) or ("completed" if ev.end else "active")
    request = drop_empty({
        "resourceType": "ServiceRequest",
        "meta": meta("ServiceRequest", spec.id),
        "extension": [ev.outcome_extension()],
        "identifier": [identifier(ev.system, ev.key)],
        "status": status,
        "intent": "order",
        "category": [row.get("route_of_access").concept()],
        "code": {"text": "Adult social care: request for support"},
        "subject": {"reference": PATIENT_REF},
        "authoredOn": ev.start,
        "performer": [ev.council_ref],
        "reasonCode": ev.reasons(),
        "note": [{"text": row.get("description")}] if row.get("description") else [],
    })
    entries = [put_entry("ServiceRequest", ev.system, ev.key, request)]
    if ev.episode is not None:
        episode_status = ev.status(EPISODE_STATUS) or "active"
        kind = spec.setting("episodeType") or {}
        episode = drop_empty({
            "resourceType": "EpisodeOfCare",
            "meta": meta("EpisodeOfCare", spec.id),
            "identifier": [identifier(*ev.episode)],
            "status": episode_status,
            "type": [concept(kind["system"], kind["code"], kind.get("display"), kind.get("text"))] if kind else [],
            "patient": {"reference": PATIENT_REF},
            "managingOrganization": ev.council_ref,
            "period": period(ev.start, ev.end if episode_status == "finished" else None),
            "referralRequest": [{"reference": full_url("ServiceRequest", ev.system, ev.key)}],
        })
        entries.append(put_entry("EpisodeOfCare", *ev.episode, episode))
    return entries


# --------------------------------------------------------------------------- Assessment, Review


def _encounter(ev: _Event) -> list[dict]:
    row, spec = ev.row, ev.spec
    method = row.get("assessment_method" if ev.kind == "assessment" else "review_method")
    cls = method.code if method else spec.setting("defaultEncounterClass", "HH")
    if ev.kind == "assessment":
        kind_type = row.get("assessment_type").concept()
        reason = None
    else:
        kind_type = concept(EVENT_TYPE_SYSTEM, "Review", "Review", "Review")
        reason = {"text": f"Review reason: {row.get('review_reason')}"}
    encounter = drop_empty({
        "resourceType": "Encounter",
        "meta": meta("Encounter", spec.id),
        "extension": [ev.outcome_extension()],
        "identifier": [identifier(ev.system, ev.key)],
        "status": "finished" if ev.end else "in-progress",
        "class": {"system": ACT_CODE, "code": cls, "display": CLASS_DISPLAY.get(cls, cls)},
        "type": [kind_type],
        "subject": {"reference": PATIENT_REF},
        "episodeOfCare": [ev.episode_ref()],
        "period": period(ev.start, ev.end),
        "reasonCode": ev.reasons(reason),
        "serviceProvider": ev.council_ref,
    })
    encounter_url = full_url("Encounter", ev.system, ev.key)
    entries = [put_entry("Encounter", ev.system, ev.key, encounter)]

    outcome_codings = ev.outcome_status.codings if ev.outcome_status else ()
    named = next((c for c in outcome_codings if c["system"] == PLAN_NAMED), None)
    if named is not None:
        plan_system = id_system("council", ev.council, f"{ev.kind}-outcome-plan")
        decided = ev.end or ev.start
        proposal = drop_empty({
            "resourceType": "CarePlan",
            "meta": meta("CarePlan", spec.id),
            "identifier": [identifier(plan_system, ev.key)],
            "status": "active",
            "intent": "proposal",
            "category": [{"coding": [dict(named)], "text": named["display"]}],
            "title": f"{named['display']} (outcome of the {ev.kind})",
            "subject": {"reference": PATIENT_REF},
            "encounter": {"reference": encounter_url},
            "period": {"start": decided},
            "created": decided,
            "author": ev.council_ref,
            "supportingInfo": [ev.episode_ref()],
        })
        entries.append(put_entry("CarePlan", plan_system, ev.key, proposal))
    return entries


# --------------------------------------------------------------------------- Service


def _service(ev: _Event) -> list[dict]:
    row, spec = ev.row, ev.spec
    status = (ev.status(REQUEST_STATUS) or "completed") if ev.end else "active"
    service_type, component = row.get("service_type"), row.get("service_component")
    units, mechanism, cqc = row.get("planned_units"), row.get("delivery_mechanism"), row.get("provider_cqc")
    detail = {
        "code": component.concept(),
        "reasonCode": ev.reasons(),
        "status": ACTIVITY_STATUS[status],
        "scheduledPeriod": period(ev.start, ev.end),
        "performer": [{"identifier": {"system": CQC_LOCATION_SYSTEM, "value": cqc}}] if cqc else [],
        "quantity": ({"value": units, "unit": "units per week", "system": "http://unitsofmeasure.org", "code": "/wk"}
                     if units is not None else None),
        "description": f"Delivery mechanism: {mechanism}" if mechanism else None,
    }
    plan = drop_empty({
        "resourceType": "CarePlan",
        "meta": meta("CarePlan", spec.id),
        "identifier": [identifier(ev.system, ev.key)],
        "status": status,
        "intent": "plan",
        "category": [service_type.concept()],
        "title": f"{component.display} ({service_type.display})",
        "description": row.get("description"),
        "subject": {"reference": PATIENT_REF},
        "period": period(ev.start, ev.end),
        "author": ev.council_ref,
        "supportingInfo": [ev.episode_ref()],
        "activity": [{"outcomeCodeableConcept": [ev.outcome.concept()] if ev.outcome else [], "detail": detail}],
    })
    return [put_entry("CarePlan", ev.system, ev.key, plan)]
