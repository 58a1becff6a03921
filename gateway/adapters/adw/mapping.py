"""An ADW notice (DSTU2 message Bundle as a dict) -> what it asserts, as FHIR R4 / UK Core.

`map_adw` is pure: no store, no I/O. It says what the notice asserts; a planner later matches
`patient_keys` / `encounter_key` / `referral_key` against the store and writes. References
between produced resources are placeholders (``urn:gateway:patient``, ``urn:gateway:encounter``),
as in the HL7 v2 adapter; organisations are references by ODS identifier.

Per notice (ADW data set mappings, `Generation/Profile.ADW-*/adw-message-bundle-1.md`):

* every notice: MessageHeader.timestamp (issued date) -> ``event_time``; source endpoint
  ``urn:nhs-uk:addressing:ods:<code>`` -> ``sender``; the Patient (NHS number + status, hospital
  patient id, name, birth date, gender, address) -> ``patient``; the Encounter identifier ->
  ``encounter_key``; ReferralRequest.identifier -> ``referral_key``. ADW repeats that identifier
  across the assessment notice, discharge notice, responses and withdrawal of one case, so it
  is the key that ties them together (gateway system ADW_REFERRAL_SYSTEM, value
  "<sender ODS>.<identifier>").
* assessment notice: ``service_request`` (R4 ServiceRequest, SNOMED CT 710824005 "Assessment of
  health and social care needs", intent order, status active, requester the hospital and
  performer the council by ODS code) and ``encounter_update`` (admission date, admission type,
  ward, reason for admission, proposed discharge date).
* discharge notice: ``encounter_update`` with the (new) proposed discharge date.
* withdrawal notice: ``withdraws`` (the ServiceRequest to revoke; "Withdraw All Notices" only),
  ``withdraw_scope`` ("all" | "discharge"), ``withdraw_reason`` and ``clear_planned_discharge``.

Proposed discharge date -> R4: ADW carries it in DSTU2 ``Encounter.period.end`` while the
encounter is ``in-progress``. In R4, ``Encounter.period.end`` is when the encounter actually
ended, and neither R4 nor UK Core has a planned-end element (Extension-UKCore-TypedDateTime is
bound to ambulance/clock times that do not include it). So the date goes in the gateway
extension PLANNED_DISCHARGE_EXT (valueDateTime) and ``period.end`` is left unset. Only when the
sender's Encounter is ``finished`` is its ``period.end`` the actual discharge, mapped to R4
``period.end`` with status ``finished``.

Location strings in ``errors`` are FHIRPath over the incoming Bundle, e.g.
``Bundle.entry[3].resource.identifier[0].value``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gateway.pipeline.identity import is_valid_nhs_number as nhs_number_valid
from gateway.pipeline.identity import normalise_nhs_number

from .codes import (
    ADMISSION_TYPE_PRIORITY,
    ADW_LOCAL_PATIENT_ID,
    ADW_REFERRAL_SYSTEM,
    CARE_NEEDS_ASSESSMENT,
    ENCOUNTER_CLASS,
    ENCOUNTER_REF,
    EVENT_DISPLAY,
    LOCAL_ENCOUNTER_SYSTEM,
    LOCAL_PATIENT_SYSTEM,
    NHS_NUMBER,
    NHS_NUMBER_INPUT,
    NHS_NUMBER_STATUS,
    ODS_ENDPOINT_PREFIX,
    ODS_ORG,
    ODS_SITE,
    ODS_SYSTEMS,
    ONS_GSS,
    PATIENT_REF,
    PLANNED_DISCHARGE_EXT,
    RELATIONSHIP,
    SNOMED,
    UKCORE_ENCOUNTER,
    UKCORE_HUMAN_LANGUAGE,
    UKCORE_NHS_COMMUNICATION_EXT,
    UKCORE_NHS_VERIFICATION_CS,
    UKCORE_NHS_VERIFICATION_EXT,
    UKCORE_PATIENT,
    UKCORE_SERVICE_REQUEST,
    V3_ACT_CODE,
    V3_ACT_PRIORITY,
)
from .parse import as_list, check_message

__all__ = ["AdwMapping", "Key", "map_adw", "nhs_number_valid"]

Key = tuple[str, str]  # (identifier system, value)

_DATE = re.compile(r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$")
_DATETIME = re.compile(r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])"
                       r"(T([01]\d|2[0-3]):[0-5]\d(:([0-5]\d|60)(\.\d+)?)?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00))?)?)?)?$")
_GSS = re.compile(r"^[EWSN]\d{8}$")
_POSTCODE = re.compile(r"^([A-Z]{1,2}\d[A-Z\d]?)\s*(\d[A-Z]{2})$")
_GENDERS = frozenset({"male", "female", "other", "unknown"})
_ENCOUNTER_STATUS = frozenset({"planned", "arrived", "in-progress", "onleave", "finished", "cancelled"})
_TELECOM_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
_TELECOM_USES = frozenset({"home", "work", "temp", "old", "mobile"})


@dataclass
class AdwMapping:
    kind: str  # "assessment" | "discharge" | "withdrawal"
    event: str  # the MessageHeader.event SNOMED CT code
    message_id: str | None  # MessageHeader.id (else Bundle.id): idempotency key with `sender`
    sender: str | None  # ODS code of the sending hospital (MessageHeader.source.endpoint)
    receiver: str | None  # ODS (or ONS) code of the council the notice is for (destination.endpoint)
    event_time: str | None  # MessageHeader.timestamp: the notice's issued date/time
    patient: dict | None = None  # R4 UK Core Patient
    patient_keys: list[Key] = field(default_factory=list)  # NHS number first
    encounter_key: Key | None = None
    encounter_update: dict | None = None  # R4 Encounter: the fields this notice asserts
    referral_key: Key | None = None  # identifier of the ServiceRequest of this ADW case
    service_request: dict | None = None  # R4 UK Core ServiceRequest (assessment notices)
    withdraws: Key | None = None  # ServiceRequest to revoke ("Withdraw All Notices")
    withdraw_scope: str | None = None  # "all" | "discharge" (withdrawal notices)
    withdraw_reason: dict | None = None  # R4 CodeableConcept (ADW withdrawal reason)
    clear_planned_discharge: bool = False  # withdrawal: drop PLANNED_DISCHARGE_EXT from the Encounter
    errors: list[tuple[str, str]] = field(default_factory=list)  # (location, message)

    @property
    def ok(self) -> bool:
        return not self.errors


# --------------------------------------------------------------------------- bundle access


class _Bundle:
    """Top-level entries only: a notice may embed a document Bundle whose resources are not its own."""

    def __init__(self, bundle: dict) -> None:
        self.entries: list[tuple[int, dict]] = []
        self._by_ref: dict[str, tuple[int, dict]] = {}
        for i, entry in enumerate(as_list(bundle.get("entry"))):
            res = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(res, dict):
                continue
            self.entries.append((i, res))
            if entry.get("fullUrl"):
                self._by_ref[str(entry["fullUrl"])] = (i, res)
            if res.get("id"):
                self._by_ref.setdefault(f"{res.get('resourceType')}/{res['id']}", (i, res))

    def resolve(self, ref: Any, want: str | None = None) -> tuple[int | None, dict | None]:
        target = _s(ref.get("reference")) if isinstance(ref, dict) else None
        if not target:
            return None, None
        found = self._by_ref.get(target)
        if found is None and "/" in target:
            found = self._by_ref.get("/".join(target.rstrip("/").split("/")[-2:]))
        if found is None or (want and found[1].get("resourceType") != want):
            return None, None
        return found

    def of_type(self, rtype: str) -> list[tuple[int, dict]]:
        return [(i, r) for i, r in self.entries if r.get("resourceType") == rtype]


def _loc(index: int | None, path: str = "") -> str:
    base = f"Bundle.entry[{index}].resource" if index is not None else "Bundle"
    return f"{base}.{path}" if path else base


def _first(value: Any) -> Any:
    items = as_list(value)
    return items[0] if items else None


def _text(value: Any) -> str:
    """A DSTU2 string or list of strings (HumanName.family is 0..* in DSTU2) as one string."""
    return " ".join(str(v).strip() for v in as_list(value) if str(v).strip())


def _s(value: Any) -> str | None:
    """A string element, or None when the sender put something else there."""
    return value if isinstance(value, str) else None


def _d(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _clean(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if v not in (None, [], {}, "")}


# --------------------------------------------------------------------------- organisations


def _endpoint_code(endpoint: Any) -> str | None:
    if not isinstance(endpoint, str):
        return None
    if endpoint.lower().startswith(ODS_ENDPOINT_PREFIX):
        code = endpoint[len(ODS_ENDPOINT_PREFIX):].strip()
        return code.upper() or None
    return None


def _org_identifier(org: dict | None) -> dict | None:
    for ident in as_list(org.get("identifier") if org else None):
        if isinstance(ident, dict) and _s(ident.get("system")) in ODS_SYSTEMS and ident.get("value"):
            system = ODS_SITE if ident["system"].endswith("ods-site-code") else ODS_ORG
            return {"system": system, "value": str(ident["value"]).strip().upper()}
    return None


def _code_identifier(code: str, default_system: str) -> dict:
    """An endpoint code as an Identifier: ONS GSS codes (E08000035) by pattern, 3-character codes
    are ODS organisation (trust) codes, otherwise ``default_system`` (ADW hospitals are sites)."""
    if _GSS.match(code):
        return {"system": ONS_GSS, "value": code}
    if len(code) == 3:
        return {"system": ODS_ORG, "value": code}
    return {"system": default_system, "value": code}


def _org_ref(identifier: dict, display: str | None) -> dict:
    return _clean({"type": "Organization", "identifier": identifier, "display": display})


# --------------------------------------------------------------------------- the mapper


class _Mapper:
    def __init__(self, bundle: dict) -> None:
        header, kind, scope = check_message(bundle)  # AdwError: not an ADW notice at all
        self.bundle = bundle
        self.b = _Bundle(bundle)
        self.header = header
        event = str(header["event"]["code"])
        source, destination = header.get("source"), _first(header.get("destination"))
        self.out = AdwMapping(
            kind=kind,
            event=event,
            message_id=header.get("id") or bundle.get("id"),
            sender=_endpoint_code(source.get("endpoint") if isinstance(source, dict) else None),
            receiver=_endpoint_code(destination.get("endpoint") if isinstance(destination, dict) else None),
            event_time=header.get("timestamp"),
            withdraw_scope=scope,
        )
        self.referral_idx, self.referral = self._referral()
        self.patient_idx, self.patient_res = self._patient()
        self.encounter_idx, self.encounter_res = self._encounter()
        self.hospital_idx, self.hospital = self._hospital()

    def error(self, location: str, message: str) -> None:
        self.out.errors.append((location, message))

    # ----------------------------------------------------------------- locating resources

    def _referral(self) -> tuple[int | None, dict | None]:
        for ref in as_list(self.header.get("data")):
            idx, res = self.b.resolve(ref, "ReferralRequest")
            if res is not None:
                return idx, res
        found = self.b.of_type("ReferralRequest")
        if len(found) == 1:
            return found[0]
        self.error(_loc(0, "data"), "the notice has no ReferralRequest (MessageHeader.data)")
        return None, None

    def _patient(self) -> tuple[int | None, dict | None]:
        if self.referral is not None:
            idx, res = self.b.resolve(self.referral.get("patient"), "Patient")
            if res is not None:
                return idx, res
        found = self.b.of_type("Patient")
        if len(found) == 1:
            return found[0]
        if not found:
            self.error(_loc(self.referral_idx, "patient"), "the notice has no Patient")
        else:
            self.error(_loc(self.referral_idx, "patient"),
                       "ReferralRequest.patient does not resolve and the Bundle holds several Patients")
        return None, None

    def _encounter(self) -> tuple[int | None, dict | None]:
        if self.referral is not None:
            idx, res = self.b.resolve(self.referral.get("encounter"), "Encounter")
            if res is not None:
                return idx, res
        found = self.b.of_type("Encounter")
        return found[0] if len(found) == 1 else (None, None)

    def _hospital(self) -> tuple[int | None, dict | None]:
        """The sending hospital: Encounter.serviceProvider, else the author's organisation."""
        if self.encounter_res is not None:
            idx, res = self.b.resolve(self.encounter_res.get("serviceProvider"), "Organization")
            if res is not None:
                return idx, res
        _, author = self.b.resolve(self.header.get("author"), "Practitioner")
        for role in as_list(author.get("practitionerRole") if author else None):
            idx, res = self.b.resolve(role.get("managingOrganization") if isinstance(role, dict) else None,
                                      "Organization")
            if res is not None:
                return idx, res
        return None, None

    # ----------------------------------------------------------------- run

    def run(self) -> AdwMapping:
        out = self.out
        if not out.message_id:
            self.error(_loc(0, "id"), "the MessageHeader has no id (needed to answer the message)")
        if out.event_time is not None and not _DATETIME.match(str(out.event_time)):
            self.error(_loc(0, "timestamp"), f"timestamp {out.event_time!r} is not a valid instant")
            out.event_time = None
        if out.sender is None:
            hospital = _org_identifier(self.hospital)
            out.sender = hospital["value"] if hospital else None
        if out.sender is None:
            self.error(_loc(0, "source.endpoint"),
                       f"the sender's ODS code is unknown (expected '{ODS_ENDPOINT_PREFIX}<code>')")
        self._referral_key()
        if self.patient_res is not None:
            out.patient = self._map_patient(self.patient_res, self.patient_idx)
        self._encounter_key()
        if out.kind in ("assessment", "discharge"):
            out.encounter_update = self._map_encounter()
        if out.kind == "assessment" and self.referral is not None:
            out.service_request = self._map_service_request()
        if out.kind == "withdrawal":
            self._map_withdrawal()
        return out

    def _referral_key(self) -> None:
        if self.referral is None:
            return
        ident = _first(self.referral.get("identifier"))
        value = str(ident.get("value") or "").strip() if isinstance(ident, dict) else ""
        if not value:
            self.error(_loc(self.referral_idx, "identifier"),
                       "ReferralRequest.identifier is missing (it links the notices of one case)")
            return
        if self.out.sender:
            self.out.referral_key = (ADW_REFERRAL_SYSTEM, f"{self.out.sender}.{value}")

    def _encounter_key(self) -> None:
        if self.encounter_res is None:
            return
        for ident in as_list(self.encounter_res.get("identifier")):
            if not isinstance(ident, dict) or not str(ident.get("value") or "").strip():
                continue
            value = str(ident["value"]).strip()
            if ident.get("system"):
                self.out.encounter_key = (str(ident["system"]), value)
            elif self.out.sender:
                self.out.encounter_key = (LOCAL_ENCOUNTER_SYSTEM.format(ods=self.out.sender), value)
            return

    # ----------------------------------------------------------------- Patient

    def _map_patient(self, src: dict, idx: int | None) -> dict:
        patient: dict = {"resourceType": "Patient", "meta": {"profile": [UKCORE_PATIENT]}}
        language_ext, communication = self._communication(src)
        if language_ext:
            patient["extension"] = language_ext
        identifiers = self._patient_identifiers(src, idx)
        if identifiers:
            patient["identifier"] = identifiers
        self.out.patient_keys = [(i["system"], i["value"]) for i in identifiers]
        if not identifiers:
            self.error(_loc(idx, "identifier"), "the Patient has neither an NHS number nor a hospital number")
        names = [n for n in (_human_name(x) for x in as_list(src.get("name"))) if n]
        if names:
            patient["name"] = names
        telecom = _telecoms(src.get("telecom"))
        if telecom:
            patient["telecom"] = telecom
        gender = src.get("gender")
        if gender is not None:
            if _s(gender) in _GENDERS:
                patient["gender"] = gender
            else:
                self.error(_loc(idx, "gender"), f"gender {gender!r} is not male | female | other | unknown")
        birth = src.get("birthDate")
        if birth is not None:
            if _DATE.match(str(birth)):
                patient["birthDate"] = birth
            else:
                self.error(_loc(idx, "birthDate"), f"birthDate {birth!r} is not a valid date")
        for key in ("deceasedBoolean", "deceasedDateTime"):
            if src.get(key) is not None:
                patient[key] = src[key]
        addresses = [a for a in (_address(x) for x in as_list(src.get("address"))) if a]
        if addresses:
            patient["address"] = addresses
        contacts = [c for c in (_contact(x) for x in as_list(src.get("contact"))) if c]
        if contacts:
            patient["contact"] = contacts
        if communication:
            patient["communication"] = communication
        gps = [g for g in (self._gp_ref(x) for x in as_list(src.get("careProvider"))) if g]
        if gps:
            patient["generalPractitioner"] = gps
        return patient

    def _patient_identifiers(self, src: dict, idx: int | None) -> list[dict]:
        nhs: dict | None = None
        local: list[dict] = []
        for j, ident in enumerate(as_list(src.get("identifier"))):
            if not isinstance(ident, dict):
                continue
            system = _s(ident.get("system"))
            value = str(ident.get("value") or "").strip()
            where = _loc(idx, f"identifier[{j}].value")
            if system in NHS_NUMBER_INPUT:
                number = normalise_nhs_number(value) or value  # digits only, as `943 476 5919` is written
                if not nhs_number_valid(number):
                    self.error(where, f"NHS number {value!r} fails the Modulus 11 check")
                    continue
                if nhs is not None:
                    if nhs["value"] != number:
                        self.error(where, "the Patient has two different NHS numbers")
                    continue
                nhs = {"system": NHS_NUMBER, "value": number}
                status = _verification_status(ident)
                if status:
                    nhs["extension"] = [{"url": UKCORE_NHS_VERIFICATION_EXT,
                                         "valueCodeableConcept": {"coding": [status]}}]
            elif value and system in ADW_LOCAL_PATIENT_ID:
                # "local-patient-identifier" is not specific to a hospital, so the gateway scopes
                # it by the assigning hospital: two trusts' numbers never collide as keys.
                _, assigner = self.b.resolve(ident.get("assigner"), "Organization")
                ods = (_org_identifier(assigner) or {}).get("value") or self.out.sender
                if not ods:
                    continue
                out = {"system": LOCAL_PATIENT_SYSTEM.format(ods=ods), "value": value,
                       "assigner": _org_ref(_org_identifier(assigner) or _code_identifier(ods, ODS_SITE),
                                            assigner.get("name") if assigner else None)}
                if (out["system"], value) not in {(i["system"], i["value"]) for i in local}:
                    local.append(out)
        return ([nhs] if nhs else []) + local

    def _communication(self, src: dict) -> tuple[list[dict], list[dict]]:
        """CareConnect NHSCommunication extension -> UK Core NHSCommunication + Patient.communication."""
        extensions: list[dict] = []
        communication: list[dict] = []
        for ext in as_list(src.get("extension")):
            if not isinstance(ext, dict) or "NHSCommunication" not in str(ext.get("url", "")):
                continue
            parts: list[dict] = []
            language = preferred = None
            for sub in as_list(ext.get("extension")):
                if not isinstance(sub, dict):
                    continue
                url = sub.get("url")
                if url == "language" and isinstance(sub.get("valueCodeableConcept"), dict):
                    language = _language(sub["valueCodeableConcept"])
                    parts.append({"url": "language", "valueCodeableConcept": language})
                elif url in ("preferred", "interpreterRequired") and isinstance(sub.get("valueBoolean"), bool):
                    parts.append({"url": url, "valueBoolean": sub["valueBoolean"]})
                    if url == "preferred":
                        preferred = sub["valueBoolean"]
            if language:
                extensions.append({"url": UKCORE_NHS_COMMUNICATION_EXT, "extension": parts})
                communication.append(_clean({"language": language, "preferred": preferred}))
        for comm in as_list(src.get("communication")):  # base DSTU2 Patient.communication
            if isinstance(comm, dict) and isinstance(comm.get("language"), dict):
                item = {"language": _language(comm["language"])}
                if isinstance(comm.get("preferred"), bool):
                    item["preferred"] = comm["preferred"]
                if item not in communication:
                    communication.append(item)
        return extensions, communication

    def _gp_ref(self, ref: Any) -> dict | None:
        _, org = self.b.resolve(ref, "Organization")
        if org is None:
            _, gp = self.b.resolve(ref, "Practitioner")
            for role in as_list(gp.get("practitionerRole") if gp else None):
                _, org = self.b.resolve(role.get("managingOrganization") if isinstance(role, dict) else None,
                                        "Organization")
                if org is not None:
                    break
        ident = _org_identifier(org)
        return _org_ref(ident, org.get("name")) if ident else None

    # ----------------------------------------------------------------- Encounter

    def _map_encounter(self) -> dict | None:
        src, idx = self.encounter_res, self.encounter_idx
        if src is None:
            self.error(_loc(self.referral_idx, "encounter"), "the notice has no Encounter (hospital stay)")
            return None
        enc: dict = {"resourceType": "Encounter", "meta": {"profile": [UKCORE_ENCOUNTER]}}
        if self.out.encounter_key:
            enc["identifier"] = [{"system": self.out.encounter_key[0], "value": self.out.encounter_key[1]}]
        status = src.get("status")
        if _s(status) in _ENCOUNTER_STATUS:
            enc["status"] = status
        else:
            self.error(_loc(idx, "status"), f"Encounter.status {status!r} is not a DSTU2 encounter status")
            enc["status"] = "unknown"
        klass = ENCOUNTER_CLASS.get(str(src.get("class") or ""))
        enc["class"] = ({"system": V3_ACT_CODE, "code": klass[0], "display": klass[1]} if klass else
                        {"system": V3_ACT_CODE, "code": "IMP", "display": "inpatient encounter"})
        priority = self._priority(src.get("priority"))
        if priority:
            enc["priority"] = priority
        enc["subject"] = {"reference": PATIENT_REF}
        period = src.get("period") if isinstance(src.get("period"), dict) else {}
        start, end = period.get("start"), period.get("end")
        r4_period: dict = {}
        if start is not None:
            if _DATETIME.match(str(start)):
                r4_period["start"] = start
            else:
                self.error(_loc(idx, "period.start"), f"admission date {start!r} is not a valid date")
        if end is not None:
            if not _DATETIME.match(str(end)):
                self.error(_loc(idx, "period.end"), f"proposed discharge date {end!r} is not a valid date")
            elif status == "finished":
                r4_period["end"] = end  # the stay is over: this is the actual discharge
            else:
                enc["extension"] = [{"url": PLANNED_DISCHARGE_EXT, "valueDateTime": end}]
        elif self.out.kind == "discharge":
            self.error(_loc(idx, "period.end"), "a Discharge Notice must give the proposed discharge date")
        if r4_period:
            enc["period"] = r4_period
        reasons = [_codeable(r) for r in as_list(src.get("reason"))]
        for ref in as_list(_d(src.get("hospitalization")).get("admittingDiagnosis")):
            _, cond = self.b.resolve(ref, "Condition")
            if cond is not None and isinstance(cond.get("code"), dict):
                reasons.append(_codeable(cond["code"]))
        reasons = [r for r in reasons if r]
        if reasons:
            enc["reasonCode"] = reasons
        locations = []
        for loc in as_list(src.get("location")):
            _, ward = self.b.resolve(loc.get("location") if isinstance(loc, dict) else None, "Location")
            if ward is not None and ward.get("name"):
                locations.append({"location": {"display": str(ward["name"])}})
        if locations:
            enc["location"] = locations
        hospital = _org_identifier(self.hospital)
        if hospital is None and self.out.sender:
            hospital = _code_identifier(self.out.sender, ODS_SITE)
        if hospital:
            enc["serviceProvider"] = _org_ref(hospital, self.hospital.get("name") if self.hospital else None)
        return enc

    def _priority(self, value: Any) -> dict | None:
        if not isinstance(value, dict):
            return None
        for coding in as_list(value.get("coding")):
            code = str(coding.get("code") or "").upper() if isinstance(coding, dict) else ""
            if code in ADMISSION_TYPE_PRIORITY:
                r4code, display = ADMISSION_TYPE_PRIORITY[code]
                return {"coding": [{"system": V3_ACT_PRIORITY, "code": r4code, "display": display}]}
        text = value.get("text") or next((c.get("display") for c in as_list(value.get("coding"))
                                          if isinstance(c, dict) and c.get("display")), None)
        return {"text": str(text)} if text else None

    # ----------------------------------------------------------------- ServiceRequest

    def _parties(self) -> tuple[dict | None, dict | None]:
        hospital_id = _org_identifier(self.hospital)
        if hospital_id is None and self.out.sender:
            hospital_id = _code_identifier(self.out.sender, ODS_SITE)
        requester = _org_ref(hospital_id, self.hospital.get("name") if self.hospital else None) if hospital_id else None
        council_org = None
        _, council_org = self.b.resolve(self.header.get("receiver"), "Organization")
        if council_org is None and self.referral is not None:
            for ref in as_list(self.referral.get("recipient")):
                _, org = self.b.resolve(ref, "Organization")
                if org is not None and _org_identifier(org):
                    council_org = org
                    break
        code = self.out.receiver
        if code:
            org_id = _org_identifier(council_org)
            council_id = org_id if org_id and org_id["value"] == code else _code_identifier(code, ODS_ORG)
        else:
            council_id = _org_identifier(council_org)
        performer = _org_ref(council_id, council_org.get("name") if council_org else None) if council_id else None
        return requester, performer

    def _map_service_request(self) -> dict:
        ref = self.referral
        requester, performer = self._parties()
        if performer is None:
            self.error(_loc(0, "destination"), "the local authority the notice is for is unknown")
        if requester is None:
            self.error(_loc(0, "source"), "the hospital sending the notice is unknown")
        reasons = [r for r in (_codeable(x) for x in as_list(ref.get("reason"))) if r]
        notes = []
        if ref.get("description"):
            notes.append({"text": str(ref["description"])})
        liaison = self._liaison_note()
        if liaison:
            notes.append({"text": liaison})
        answers = self._questionnaire_note()
        if answers:
            notes.append({"text": answers})
        sr = {
            "resourceType": "ServiceRequest",
            "meta": {"profile": [UKCORE_SERVICE_REQUEST]},
            "identifier": [{"system": k[0], "value": k[1]} for k in [self.out.referral_key] if k],
            "status": "active",
            "intent": "order",
            "category": [{"coding": [{"system": SNOMED, "code": self.out.event,
                                      "display": EVENT_DISPLAY[self.out.event]}]}],
            "code": {"coding": [dict(CARE_NEEDS_ASSESSMENT)],
                     "text": "Assessment of care and support needs (Care Act 2014 Schedule 3)"},
            "subject": {"reference": PATIENT_REF},
            "encounter": {"reference": ENCOUNTER_REF} if self.out.encounter_key else None,
            "authoredOn": self.out.event_time,
            "requester": requester,
            "performer": [performer] if performer else None,
            "reasonCode": reasons,
            "note": notes,
        }
        return _clean(sr)

    def _liaison_note(self) -> str | None:
        """Who to call at the hospital: the requester Practitioner (the hospital liaison)."""
        _, person = self.b.resolve(self.referral.get("requester"), "Practitioner")
        if person is None:
            _, person = self.b.resolve(self.header.get("author"), "Practitioner")
        if person is None:
            return None
        name = _human_name(person.get("name")) if isinstance(person.get("name"), dict) else None
        who = " ".join(filter(None, [_text((name or {}).get("given")), (name or {}).get("family")]))
        contacts = ", ".join(f"{t['system']} {t['value']}" for t in _telecoms(person.get("telecom")))
        if not who and not contacts:
            return None
        return "Hospital liaison: " + ", ".join(filter(None, [who, contacts]))

    def _questionnaire_note(self) -> str | None:
        """The ADW consultation / consent / CHC / safeguarding answers, as one readable note."""
        lines = []
        for ref in as_list(self.referral.get("supportingInformation")):
            _, qr = self.b.resolve(ref, "QuestionnaireResponse")
            if qr is None:
                continue
            for question in _questions(qr.get("group")):
                text = (_s(question.get("text")) or "").strip()
                answers = [_answer(a) for a in as_list(question.get("answer"))]
                answers = [a for a in answers if a]
                if text and answers:
                    lines.append(f"{text} {'; '.join(answers)}")
        return "\n".join(lines) or None

    # ----------------------------------------------------------------- withdrawal

    def _map_withdrawal(self) -> None:
        out = self.out
        out.clear_planned_discharge = True
        if out.withdraw_scope == "all":
            out.withdraws = out.referral_key
        reason = self.header.get("reason")
        out.withdraw_reason = _codeable(reason) if isinstance(reason, dict) else None
        if out.withdraw_reason is None:
            self.error(_loc(0, "reason"), "a Withdrawal Notice must give the reason for withdrawal")
        status = self.referral.get("status") if self.referral else None
        if self.referral is not None and status != "cancelled":
            self.error(_loc(self.referral_idx, "status"),
                       f"the withdrawn ReferralRequest has status {status!r}; ADW fixes it to 'cancelled'")


def map_adw(bundle: dict) -> AdwMapping:
    """What an ADW notice asserts, in R4 / UK Core terms.

    Raises AdwError when the Bundle is not an ADW notice at all (not a message Bundle, no
    MessageHeader, unknown event); problems with its content are returned in ``errors``.
    """
    return _Mapper(bundle).run()


# --------------------------------------------------------------------------- data types


def _verification_status(identifier: dict) -> dict | None:
    for ext in as_list(identifier.get("extension")):
        if not isinstance(ext, dict) or "NHSNumberVerificationStatus" not in str(ext.get("url", "")):
            continue
        concept = _d(ext.get("valueCodeableConcept"))
        for coding in as_list(concept.get("coding")):
            code = str(coding.get("code") or "").zfill(2) if isinstance(coding, dict) else ""
            if code in NHS_NUMBER_STATUS:
                return {"system": UKCORE_NHS_VERIFICATION_CS, "code": code, "display": NHS_NUMBER_STATUS[code]}
    return None


def _human_name(src: Any) -> dict | None:
    if not isinstance(src, dict):
        return None
    name = _clean({
        "use": src.get("use") if src.get("use") in ("usual", "official", "temp", "nickname", "anonymous", "old",
                                                     "maiden") else None,
        "text": src.get("text"),
        "family": _text(src.get("family")) or None,
        "given": [str(g) for g in as_list(src.get("given")) if str(g).strip()],
        "prefix": [str(p) for p in as_list(src.get("prefix")) if str(p).strip()],
        "suffix": [str(s) for s in as_list(src.get("suffix")) if str(s).strip()],
        "period": src.get("period") if isinstance(src.get("period"), dict) else None,
    })
    return name if set(name) - {"use"} else None


def _telecoms(value: Any) -> list[dict]:
    out = []
    for t in as_list(value):
        if not isinstance(t, dict) or not t.get("value"):
            continue
        out.append(_clean({
            "system": t["system"] if _s(t.get("system")) in _TELECOM_SYSTEMS else "other",
            "value": str(t["value"]).strip(),
            "use": t["use"] if _s(t.get("use")) in _TELECOM_USES else None,
            "rank": t.get("rank") if isinstance(t.get("rank"), int) and t["rank"] > 0 else None,
        }))
    return out


def _address(src: Any) -> dict | None:
    if not isinstance(src, dict):
        return None
    postcode = str(src.get("postalCode") or "").strip()
    m = _POSTCODE.match(postcode.upper())
    out = _clean({
        "use": src.get("use") if src.get("use") in ("home", "work", "temp", "old") else None,
        "type": src.get("type") if src.get("type") in ("postal", "physical", "both") else None,
        "text": src.get("text"),
        "line": [str(x).strip() for x in as_list(src.get("line")) if str(x).strip()],
        "city": src.get("city"),
        "district": src.get("district"),
        "state": src.get("state"),
        "postalCode": f"{m.group(1)} {m.group(2)}" if m else (postcode or None),
        "country": src.get("country"),
        "period": src.get("period") if isinstance(src.get("period"), dict) else None,
    })
    return out if set(out) - {"use", "type"} else None


def _relationship(concept: Any) -> dict | None:
    if not isinstance(concept, dict):
        return None
    for coding in as_list(concept.get("coding")):
        code = str(coding.get("code") or "") if isinstance(coding, dict) else ""
        if code in RELATIONSHIP:
            system, r4code, display = RELATIONSHIP[code]
            return {"coding": [{"system": system, "code": r4code, "display": display}]}
    text = concept.get("text") or next((c.get("display") for c in as_list(concept.get("coding"))
                                        if isinstance(c, dict) and c.get("display")), None)
    return {"text": str(text)} if text else None


def _contact(src: Any) -> dict | None:
    if not isinstance(src, dict):
        return None
    out = _clean({
        "relationship": [r for r in (_relationship(x) for x in as_list(src.get("relationship"))) if r],
        "name": _human_name(_first(src.get("name"))),
        "telecom": _telecoms(src.get("telecom")),
        "address": _address(src.get("address")),
        "gender": src.get("gender") if src.get("gender") in _GENDERS else None,
    })
    return out if set(out) - {"relationship"} else None


def _language(concept: dict) -> dict:
    codings = []
    for coding in as_list(concept.get("coding")):
        if isinstance(coding, dict) and coding.get("code"):
            codings.append(_clean({"system": UKCORE_HUMAN_LANGUAGE, "code": str(coding["code"]),
                                   "display": coding.get("display")}))
    return _clean({"coding": codings, "text": concept.get("text")})


def _codeable(src: Any) -> dict | None:
    """A DSTU2 CodeableConcept as R4 (same shape): codings with system/code/display, and text."""
    if not isinstance(src, dict):
        return None
    codings = [_clean({"system": c.get("system"), "code": c.get("code"), "display": c.get("display")})
               for c in as_list(src.get("coding")) if isinstance(c, dict) and (c.get("code") or c.get("display"))]
    out = _clean({"coding": codings, "text": src.get("text")})
    return out or None


def _questions(groups: Any):
    for group in as_list(groups):
        if not isinstance(group, dict):
            continue
        for question in as_list(group.get("question")):
            if isinstance(question, dict):
                yield question
                for answer in as_list(question.get("answer")):
                    if isinstance(answer, dict):
                        yield from _questions(answer.get("group"))
        yield from _questions(group.get("group"))


def _answer(answer: Any) -> str | None:
    if not isinstance(answer, dict):
        return None
    for key, value in answer.items():
        if not isinstance(key, str) or not key.startswith("value"):
            continue
        if isinstance(value, dict):
            text = value.get("display") or value.get("code") or value.get("text")
            return str(text) if text else None
        if isinstance(value, bool):
            return "Yes" if value else "No"
        return str(value)
    return None
