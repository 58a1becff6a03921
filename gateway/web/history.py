"""One person's shared history, read from a `Patient/{id}/$everything` Bundle.

Pure functions over FHIR resources (no store, no HTTP): who the person is, which partner holds
which identifier, possible duplicates to review, and one timeline in date order where every
entry says which partner it came from and links to the FHIR resource behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from gateway.web.sources import (COMMUNITY, COUNCIL, DESCRIPTIONS, HOSPITAL, ADW, LABELS, NHS_NUMBER_SYSTEM, ORDER,
                                 REVIEW_TAG_SYSTEM, SourceIndex)

OUTCOME_EXT = "https://fhir.activerecovery.example/StructureDefinition/social-care-event-outcome"
ATTENDANCE_EXT = "https://fhir.activerecovery.example/StructureDefinition/care-contact-attendance"
ADMISSION_METHOD_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-AdmissionMethod"
SOURCE_OF_REFERRAL_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-SourceOfServiceRequest"
# Displays for codes that sources send without one (CSDS carries bare SNOMED CT codes).
KNOWN_DISPLAYS = {
    ("http://snomed.info/sct", "273302005"): "Barthel index",
    ("http://snomed.info/sct", "84478008"): "Occupational therapy",
    ("http://snomed.info/sct", "91251008"): "Physical therapy procedure",
    ("http://snomed.info/sct", "386053000"): "Evaluation procedure",
    ("http://snomed.info/sct", "710824005"): "Assessment of health and social care needs",
    ("http://snomed.info/sct", "282884004"): "Timed up and go test",
}
_HOSPITAL_CLASSES = {"IMP", "EMER", "ACUTE", "NONAC", "SS", "PRENC", "OBSENC"}
# Same-day order when two entries share a date: the order things happen in a recovery journey.
_RANK = {"Hospital stay": 0, "Diagnosis": 1, "Discharge": 2, "Referral": 3, "Assessment": 4, "Plan": 5,
         "Service": 5, "Goal": 6, "Visit": 7, "Contact": 7, "Therapy": 8, "Review": 9, "Outcome": 10, "Record": 11}
_SKIPPED = {"Patient", "Provenance", "Organization", "Practitioner", "PractitionerRole", "Location",
            "AuditEvent", "Subscription", "MessageHeader"}


@dataclass
class Badge:
    key: str  # hospital | council | community | adw
    label: str
    title: str


@dataclass
class Identifier:
    label: str
    value: str
    system: str
    source: Badge | None  # None: national (NHS number)
    note: str = ""


@dataclass
class Entry:
    sort_key: tuple
    iso: str  # machine-readable <time datetime>
    when: str  # what a reader sees
    kind: str  # Hospital stay, Discharge, Referral, Assessment, Plan, Visit, Goal, Outcome, ...
    title: str
    details: list[str]
    status: str
    sources: list[Badge]
    rtype: str
    rid: str

    @property
    def href(self) -> str:
        return f"/fhir/{self.rtype}/{self.rid}"


@dataclass
class Duplicate:
    id: str
    link_type: str  # seealso | replaces | replaced-by | refer
    name: str = ""
    born: str = ""
    identifiers: list[str] = field(default_factory=list)
    sources: list[Badge] = field(default_factory=list)
    known: bool = True


@dataclass
class Contribution:
    source: Badge
    what: str
    recorded: str


@dataclass
class History:
    id: str
    name: str
    born: str
    born_iso: str
    age: str
    gender: str
    nhs_number: str
    address: str
    gp: str
    active: bool
    deceased: str
    identifiers: list[Identifier]
    review: bool
    duplicates: list[Duplicate]
    timeline: list[Entry]
    undated: list[Entry]
    contributions: list[Contribution]
    sources: list[Badge]


def badge(key: str) -> Badge:
    return Badge(key, LABELS[key], DESCRIPTIONS[key])


# --------------------------------------------------------------------------- small readers


def text_of(cc) -> str:
    """What a person reads for a CodeableConcept (or a list of them): text, display, code."""
    if isinstance(cc, list):
        return "; ".join(t for t in (text_of(c) for c in cc) if t)
    if not isinstance(cc, dict):
        return ""
    if cc.get("text"):
        return str(cc["text"])
    for coding in cc.get("coding") or []:
        if coding.get("display"):
            return str(coding["display"])
        known = KNOWN_DISPLAYS.get((coding.get("system"), coding.get("code")))
        if known:
            return known
    for coding in cc.get("coding") or []:
        if coding.get("code"):
            system = str(coding.get("system") or "")
            prefix = "SNOMED CT " if system == "http://snomed.info/sct" else ""
            return f"{prefix}{coding['code']}"
    return ""


def short_text(cc) -> str:
    """A long national code display cut to its first clause, with the code: `Usual place of
    residence (19)`. The full wording stays on the FHIR resource the entry links to."""
    text = text_of(cc)
    for cut in (" unless ", ", for example", " i.e.", " e.g.", "; "):
        if cut in text:
            text = text.split(cut, 1)[0].rstrip(" ,")
    code = next((c.get("code") for c in (cc or {}).get("coding") or [] if c.get("code")), None) if isinstance(cc, dict) else None
    return f"{text} ({code})" if code and code != text else text


def ref_text(ref) -> str:
    if isinstance(ref, list):
        return "; ".join(t for t in (ref_text(r) for r in ref) if t)
    if not isinstance(ref, dict):
        return ""
    if ref.get("display"):
        return str(ref["display"])
    ident = ref.get("identifier") or {}
    return str(ident.get("value") or "")


def extension(resource: dict, url: str) -> dict | None:
    for ext in resource.get("extension") or []:
        if ext.get("url") == url:
            return ext
    return None


def sub_extension(ext: dict | None, url: str) -> dict | None:
    for sub in (ext or {}).get("extension") or []:
        if sub.get("url") == url:
            return sub
    return None


def format_nhs_number(value: str) -> str:
    digits = "".join(c for c in value if c.isdigit())
    return f"{digits[:3]} {digits[3:6]} {digits[6:]}" if len(digits) == 10 else value


@dataclass(frozen=True)
class When:
    local_date: date
    local_time: time | None
    iso: str

    def display(self) -> str:
        day = f"{self.local_date:%a} {self.local_date.day} {self.local_date:%b %Y}"
        return f"{day}, {self.local_time:%H:%M}" if self.local_time else day


def parse_when(value, tz: ZoneInfo) -> When | None:
    """A FHIR date or dateTime as the reader's local date (and time, when the source gave one)."""
    if not value or not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return When(date.fromisoformat(text), None, text)
        if len(text) in (4, 7):  # partial date: first day of the year / month
            parts = [int(p) for p in text.split("-")] + [1, 1]
            return When(date(parts[0], parts[1], parts[2]), None, text)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    local = moment.astimezone(tz)
    return When(local.date(), local.time().replace(second=0, microsecond=0), text)


def period_start(resource: dict, key: str = "period") -> str | None:
    return (resource.get(key) or {}).get("start")


def period_end(resource: dict, key: str = "period") -> str | None:
    return (resource.get(key) or {}).get("end")


# --------------------------------------------------------------------------- the person


def _name(patient: dict) -> str:
    names = patient.get("name") or []
    name = next((n for n in names if n.get("use") in (None, "official", "usual")), names[0] if names else {})
    family = str(name.get("family") or "").strip()
    given = " ".join(str(g) for g in name.get("given") or [] if g).strip()
    if given.isupper():
        given = given.title()
    if family and given:
        return f"{family.upper()}, {given}"
    return family.upper() or given or str(name.get("text") or "") or "(no name recorded)"


def display_name(patient: dict) -> str:
    return _name(patient)


def _born(patient: dict) -> tuple[str, str, str]:
    raw = patient.get("birthDate")
    if not raw:
        return "not recorded", "", ""
    try:
        born = date.fromisoformat(raw)
    except ValueError:
        return str(raw), str(raw), ""
    today = date.today()
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return f"{born.day} {born:%b %Y}", raw, str(age)


def born_display(patient: dict) -> str:
    return _born(patient)[0] if patient.get("birthDate") else ""


def _address(patient: dict) -> str:
    for addr in patient.get("address") or []:
        parts = [*(addr.get("line") or []), addr.get("city"), addr.get("postalCode")]
        text = ", ".join(str(p).strip() for p in parts if p and str(p).strip())
        if text:
            return text
    return "not recorded"


def postcode(patient: dict) -> str:
    for addr in patient.get("address") or []:
        if addr.get("postalCode"):
            return str(addr["postalCode"])
    return ""


def nhs_number(patient: dict) -> str:
    for ident in patient.get("identifier") or []:
        if ident.get("system") == NHS_NUMBER_SYSTEM and ident.get("value"):
            return format_nhs_number(str(ident["value"]))
    return ""


def _identifier_label(ident: dict, source: str | None) -> str:
    system = str(ident.get("system") or "")
    type_code = next((c.get("code") for c in (ident.get("type") or {}).get("coding") or []), None)
    tail = system.rstrip("/").rsplit("/", 1)[-1]
    if system == NHS_NUMBER_SYSTEM:
        return "NHS number"
    if source == HOSPITAL:
        return "Hospital number (MRN)" if type_code == "MR" or tail == "mrn" else f"Hospital {tail.replace('-', ' ')}"
    if source == COUNCIL:
        return "Council person ID" if tail == "person" else f"Council {tail.replace('-', ' ')}"
    if source == COMMUNITY:
        return "Community patient ID" if tail == "patient" else f"Community {tail.replace('-', ' ')}"
    if source == ADW:
        return "Hospital local patient ID (ADW)"
    return text_of(ident.get("type")) or tail or "Identifier"


def identifiers(patient: dict, index: SourceIndex) -> list[Identifier]:
    out = []
    for ident in patient.get("identifier") or []:
        if not isinstance(ident, dict) or not ident.get("value"):
            continue
        system = str(ident.get("system") or "")
        source = index.of_system(system)
        value = str(ident["value"])
        note = ""
        if system == NHS_NUMBER_SYSTEM:
            value = format_nhs_number(value)
            status = extension(ident, "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus")
            note = text_of((status or {}).get("valueCodeableConcept"))
        assigner = ref_text(ident.get("assigner"))
        if assigner and not note:
            note = f"assigned by {assigner}"
        out.append(Identifier(_identifier_label(ident, source), value, system, badge(source) if source else None, note))
    return out


# --------------------------------------------------------------------------- timeline


class _Builder:
    def __init__(self, index: SourceIndex, tz: ZoneInfo):
        self.index = index
        self.tz = tz
        self.resources: dict[str, dict] = {}  # "Type/id" -> resource, for references between entries
        self.entries: list[Entry] = []
        self.undated: list[Entry] = []
        self.seq = 0

    def add(self, res: dict, when_raw, kind: str, title: str, details: list[str], status: str = "",
            rank: float | None = None) -> None:
        self.seq += 1
        sources = [badge(s) for s in self.index.of_resource(res)]
        when = parse_when(when_raw, self.tz)
        details = [d for d in details if d]
        if when is None:
            self.undated.append(Entry((self.seq,), "", "date not recorded", kind, title, details, status, sources,
                                      res["resourceType"], res["id"]))
            return
        # Same day: entries with a time first, in time order, then date-only ones; then journey order.
        rank = _RANK.get(kind, 11) if rank is None else rank
        key = (when.local_date, 0 if when.local_time else 1, when.local_time or time(0), rank, self.seq)
        self.entries.append(Entry(key, when.iso, when.display(), kind, title, details, status, sources,
                                  res["resourceType"], res["id"]))

    # one method per resource type -----------------------------------------------------------
    def encounter(self, res: dict) -> None:
        sources = self.index.of_resource(res)
        klass = (res.get("class") or {}).get("code")
        status = res.get("status", "")
        if HOSPITAL in sources or ADW in sources or klass in _HOSPITAL_CLASSES:
            hosp = res.get("hospitalization") or {}
            method = short_text((extension(hosp, ADMISSION_METHOD_EXT) or {}).get("valueCodeableConcept"))
            locations = [ref_text(loc.get("location")) for loc in res.get("location") or []]
            consultant = ref_text([p.get("individual") for p in res.get("participant") or [] if p.get("individual")][:1])
            self.add(res, period_start(res), "Hospital stay", "Admitted to hospital", [
                f"Where: {ref_text(res.get('serviceProvider'))}" if res.get("serviceProvider") else "",
                f"Ward: {locations[0]}" if locations else "",
                f"Admission: {method}" if method else "",
                f"Consultant: {consultant}" if consultant else "",
                "Still in hospital" if status == "in-progress" else "",
            ], status)
            if period_end(res):
                days = ""
                start, end = parse_when(period_start(res), self.tz), parse_when(period_end(res), self.tz)
                if start and end:
                    n = (end.local_date - start.local_date).days
                    days = f"Length of stay: {n} day{'s' if n != 1 else ''}"
                self.add(res, period_end(res), "Discharge", "Discharged from hospital", [
                    f"Destination: {short_text(hosp.get('dischargeDisposition'))}" if hosp.get("dischargeDisposition") else "",
                    f"Last ward: {locations[-1]}" if len(locations) > 1 else "",
                    days,
                ], status)
            return
        outcome = _outcome_text(res)
        attendance = text_of((sub_extension(extension(res, ATTENDANCE_EXT), "attendance") or {}).get("valueCodeableConcept"))
        length = res.get("length") or {}
        duration = f"{length.get('value'):g} minutes" if isinstance(length.get("value"), (int, float)) else ""
        where = ref_text([loc.get("location") for loc in res.get("location") or []][:1])
        how = text_of(res.get("type"))
        if COUNCIL in sources:
            kind = "Review" if how.lower().startswith("review") else "Assessment"
            mode = {"HH": "in person", "VR": "by telephone or video"}.get(klass or "", (res.get("class") or {}).get("display", ""))
            achieved = (sub_extension(extension(res, OUTCOME_EXT), "outcomesAchieved") or {}).get("valueString")
            self.add(res, period_start(res), kind, f"Council {how[0].lower() + how[1:] if how else kind.lower()}", [
                f"How: {mode}" if mode else "",
                f"Outcome: {outcome}" if outcome else "",
                f"Outcomes achieved: {achieved}" if achieved else "",
                f"Reason: {text_of(res.get('reasonCode'))}" if res.get("reasonCode") else "",
            ], status)
            return
        kind = "Visit" if klass == "HH" else "Contact"
        if status == "cancelled":
            title = f"{'Visit' if kind == 'Visit' else 'Contact'} did not take place"
        elif kind == "Visit":
            title = f"Therapy visit{' at ' + where if where else ''}"
        else:
            title = f"Therapy team contact ({how.lower()})" if how else "Therapy team contact"
        self.add(res, period_start(res), kind, title, [
            f"How: {how}" if how and kind == "Visit" else "",
            f"Duration: {duration}" if duration else "",
            f"Attendance: {attendance}" if attendance else "",
            f"Provider: {ref_text(res.get('serviceProvider'))}" if res.get("serviceProvider") else "",
        ], status)

    def service_request(self, res: dict) -> None:
        sources = self.index.of_resource(res)
        what = text_of(res.get("category")) if COUNCIL in sources else text_of(res.get("code")) or text_of(res.get("category"))
        if COUNCIL in sources:
            title = "Council request for support" + (f" ({what})" if what else "")
        elif COMMUNITY in sources:
            title = text_of(res.get("code")) or "Referral to community services"
        else:
            title = f"Referred to {what}" if what else "Referral"
        source_of = text_of((extension(res, SOURCE_OF_REFERRAL_EXT) or {}).get("valueCodeableConcept"))
        outcome = _outcome_text(res)
        self.add(res, res.get("authoredOn") or res.get("occurrenceDateTime") or period_start(res, "occurrencePeriod"),
                 "Referral", title, [
                     f"To: {ref_text(res.get('performer'))}" if res.get("performer") else "",
                     f"From: {ref_text(res.get('requester'))}" if res.get("requester") else "",
                     f"Referred by: {source_of}" if source_of else "",
                     f"Priority: {res['priority']}" if res.get("priority") else "",
                     f"Reason: {text_of(res.get('reasonCode'))}" if res.get("reasonCode") else "",
                     f"Outcome: {outcome}" if outcome else "",
                 ], res.get("status", ""))

    def episode(self, res: dict) -> None:
        what = text_of(res.get("type")) or "Episode of care"
        end = period_end(res)
        if res.get("status") == "cancelled":
            self.add(res, end or period_start(res), "Outcome", f"{what}: cancelled", [], "cancelled")
        elif end:
            self.add(res, end, "Outcome", f"Discharged from {what}", [
                f"Managed by: {ref_text(res.get('managingOrganization'))}" if res.get("managingOrganization") else "",
            ], res.get("status", ""))

    def care_plan(self, res: dict) -> None:
        title = res.get("title") or text_of(res.get("category")) or "Care plan"
        activities = [a.get("detail") or {} for a in res.get("activity") or []]
        details = []
        for act in activities:
            qty = act.get("quantity") or {}
            amount = f", {qty['value']:g} per week" if isinstance(qty.get("value"), (int, float)) else ""
            details.append(f"Service: {text_of(act.get('code'))}{amount}" if act.get("code") else "")
            if act.get("performer"):
                details.append(f"Provider: {ref_text(act.get('performer'))}")
        if res.get("intent") == "proposal":
            details.append("Proposed: the outcome of a council decision")
        if res.get("goal"):
            details.append(f"Goals: {len(res['goal'])}")
        kind = "Service" if activities else "Plan"
        # A plan proposed by a council decision comes right after that assessment or review
        decided_by = self.resources.get(str((res.get("encounter") or {}).get("reference") or ""))
        rank = None
        if decided_by is not None:
            rank = _RANK["Review" if text_of(decided_by.get("type")).lower().startswith("review") else "Assessment"] + 0.5
        self.add(res, res.get("created") or period_start(res), kind, title, details, res.get("status", ""), rank)
        end = period_end(res)
        if end or res.get("status") in ("completed", "revoked"):
            outcomes = [text_of(a.get("outcomeCodeableConcept")) for a in res.get("activity") or []]
            outcomes = [o for o in outcomes if o]
            verb = "stopped" if res.get("status") == "revoked" else "ended"
            self.add(res, end or period_start(res), "Outcome", f"{title} {verb}",
                     [f"Outcome: {o}" for o in outcomes], res.get("status", ""))

    def goal(self, res: dict) -> None:
        due = next((t.get("dueDate") for t in res.get("target") or [] if t.get("dueDate")), None)
        due_when = parse_when(due, self.tz)
        self.add(res, res.get("startDate") or res.get("statusDate"), "Goal", text_of(res.get("description")) or "Goal", [
            f"Progress: {text_of(res.get('achievementStatus'))}" if res.get("achievementStatus") else "",
            f"Target: {due_when.display()}" if due_when else "",
        ], res.get("lifecycleStatus", ""))

    def observation(self, res: dict) -> None:
        value = ""
        if isinstance(res.get("valueQuantity"), dict):
            q = res["valueQuantity"]
            unit = str(q.get("unit") or "")
            value = f"{q.get('value')}" if unit.startswith("{") else f"{q.get('value')} {unit}".strip()
        elif res.get("valueCodeableConcept"):
            value = text_of(res["valueCodeableConcept"])
        elif res.get("valueString"):
            value = str(res["valueString"])
        self.add(res, res.get("effectiveDateTime") or period_start(res, "effectivePeriod") or res.get("issued"),
                 "Assessment", text_of(res.get("code")) or "Observation", [
                     f"Result: {value}" if value else "",
                     f"Activity: {text_of(res.get('category'))}" if res.get("category") else "",
                     f"By: {ref_text(res.get('performer'))}" if res.get("performer") else "",
                 ], res.get("status", ""), rank=_RANK["Therapy"])

    def procedure(self, res: dict) -> None:
        performers = [p.get("actor") for p in res.get("performer") or [] if p.get("actor")]
        self.add(res, res.get("performedDateTime") or period_start(res, "performedPeriod"), "Therapy",
                 text_of(res.get("code")) or "Procedure", [
                     f"Activity: {text_of(res.get('category'))}" if res.get("category") else "",
                     f"By: {ref_text(performers)}" if performers else "",
                 ], res.get("status", ""))

    def condition(self, res: dict) -> None:
        self.add(res, res.get("recordedDate") or res.get("onsetDateTime") or period_start(res, "onsetPeriod"),
                 "Diagnosis", text_of(res.get("code")) or "Condition", [
                     f"Status: {text_of(res.get('verificationStatus'))}" if res.get("verificationStatus") else "",
                 ], text_of(res.get("clinicalStatus")))

    def other(self, res: dict) -> None:
        when = (res.get("effectiveDateTime") or res.get("authoredOn") or res.get("date") or res.get("issued")
                or period_start(res) or res.get("recordedDate"))
        self.add(res, when, "Record", f"{res['resourceType']}", [text_of(res.get("code"))], str(res.get("status", "")))


def _outcome_text(res: dict) -> str:
    ext = extension(res, OUTCOME_EXT)
    return text_of((sub_extension(ext, "outcome") or {}).get("valueCodeableConcept"))


_HANDLERS = {
    "Encounter": _Builder.encounter, "ServiceRequest": _Builder.service_request, "EpisodeOfCare": _Builder.episode,
    "CarePlan": _Builder.care_plan, "Goal": _Builder.goal, "Observation": _Builder.observation,
    "Procedure": _Builder.procedure, "Condition": _Builder.condition,
}


def build_history(bundle: dict, patient_id: str, index: SourceIndex, tz: ZoneInfo) -> History:
    resources = [e.get("resource") for e in bundle.get("entry") or [] if isinstance(e.get("resource"), dict)]
    patient = next(r for r in resources if r.get("resourceType") == "Patient" and r.get("id") == patient_id)
    for res in resources:
        if res.get("resourceType") == "Provenance":
            index.add_provenance(res)
    builder = _Builder(index, tz)
    builder.resources = {f"{r.get('resourceType')}/{r.get('id')}": r for r in resources}
    for res in resources:
        rtype = res.get("resourceType")
        if rtype in _SKIPPED or not res.get("id"):
            continue
        _HANDLERS.get(rtype, _Builder.other)(builder, res)
    timeline = sorted(builder.entries, key=lambda e: e.sort_key)
    born, born_iso, age = _born(patient)
    tags = (patient.get("meta") or {}).get("tag") or []
    review = any(t.get("system") == REVIEW_TAG_SYSTEM for t in tags)
    contributions = [Contribution(badge(src), what, recorded)
                     for src, what, recorded in index.provenance.get(f"Patient/{patient_id}", [])]
    # Partners holding data about the person: their identifiers and their timeline entries. (A
    # Provenance on the Patient alone is not enough: a council row that only links a possible
    # duplicate also updates this Patient.)
    ids = identifiers(patient, index)
    all_sources = {i.source.key for i in ids if i.source}
    for entry in timeline + builder.undated:
        all_sources.update(b.key for b in entry.sources)
    deceased = patient.get("deceasedDateTime") or ("yes" if patient.get("deceasedBoolean") else "")
    gp = ref_text([g for g in patient.get("generalPractitioner") or [] if g.get("type") != "Practitioner"][:1])
    return History(
        id=patient_id,
        name=_name(patient),
        born=born,
        born_iso=born_iso,
        age=age,
        gender=str(patient.get("gender") or "not recorded"),
        nhs_number=nhs_number(patient),
        address=_address(patient),
        gp=gp,
        active=patient.get("active") is not False,
        deceased=str(deceased),
        identifiers=ids,
        review=review,
        duplicates=[Duplicate(str((l.get("other") or {}).get("reference", "")).split("/")[-1], str(l.get("type") or ""))
                    for l in patient.get("link") or [] if (l.get("other") or {}).get("reference")],
        timeline=timeline,
        undated=builder.undated,
        contributions=contributions,
        sources=[badge(s) for s in ORDER if s in all_sources],
    )


def describe_duplicate(dup: Duplicate, other: dict | None, index: SourceIndex) -> Duplicate:
    """Fill in what a reviewer compares: name, birth date, identifiers and their sources."""
    if other is None:
        dup.known = False
        return dup
    dup.name = _name(other)
    dup.born = _born(other)[0]
    ids = identifiers(other, index)
    dup.identifiers = [f"{i.label} {i.value}" for i in ids]
    dup.sources = [badge(s) for s in ORDER if s in {i.source.key for i in ids if i.source}]
    return dup
