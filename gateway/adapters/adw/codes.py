"""Codes and identifier systems for the ADW (Assessment, Discharge and Withdrawal) adapter.

Every ADW code below was read in NHS Digital's messaging specification, public repository
`nhsconnect/FHIR-ADW-Messaging` (see `gateway/adapters/adw/__init__.py` for the file paths).
Codes that the gateway defines itself live under GATEWAY and say so.
"""

from __future__ import annotations

SNOMED = "http://snomed.info/sct"
GATEWAY = "https://fhir.activerecovery.example"

# Placeholders the planner resolves (same convention as gateway.adapters.hl7v2.mapping.model).
PATIENT_REF = "urn:gateway:patient"
ENCOUNTER_REF = "urn:gateway:encounter"

# --------------------------------------------------------------------------- ADW message events
# MessageHeader.event, system SNOMED CT, value set https://fhir.nhs.uk/ValueSet/adw-message-event-1
# (Generated/Profile.ADW-WithdrawalNotice/adw-message-event-1.html).
EVENT_ASSESSMENT = "975701000000106"
EVENT_ASSESSMENT_ACCEPT = "975711000000108"
EVENT_ASSESSMENT_REJECT = "975721000000102"
EVENT_DISCHARGE = "975731000000100"
EVENT_DISCHARGE_ACCEPT = "975821000000109"  # "Discharge Notice Agreement"
EVENT_DISCHARGE_REJECT = "975831000000106"  # "Discharge Notice Disagreement"
EVENT_WITHDRAW_ALL = "975841000000102"
EVENT_WITHDRAW_DISCHARGE = "975851000000104"
EVENT_WITHDRAW_ACCEPT = "1025651000000109"
EVENT_WITHDRAW_REJECT = "1025641000000106"

EVENT_DISPLAY = {
    EVENT_ASSESSMENT: "Assessment Notice under the Care Act 2014 schedule 3",
    EVENT_ASSESSMENT_ACCEPT: "Assessment Notice Accept Response under the Care Act 2014 Schedule 3",
    EVENT_ASSESSMENT_REJECT: "Assessment Notice Reject Response under the Care Act 2014 Schedule 3",
    EVENT_DISCHARGE: "Discharge Notice under the Care Act 2014 Schedule 3",
    EVENT_DISCHARGE_ACCEPT: "Discharge Notice Agreement under the Care Act 2014 Schedule 3",
    EVENT_DISCHARGE_REJECT: "Discharge Notice Disagreement under the Care Act 2014 Schedule 3",
    EVENT_WITHDRAW_ALL: "Withdraw All Notices under the Care Act 2014 Schedule 3",
    EVENT_WITHDRAW_DISCHARGE: "Withdraw Discharge Notice Only under the Care Act 2014 Schedule 3",
    EVENT_WITHDRAW_ACCEPT: "Withdraw Notice Accept under the Care Act 2014 Schedule 3",
    EVENT_WITHDRAW_REJECT: "Withdraw Notice Reject under the Care Act 2014 Schedule 3",
}

# The notices a hospital sends (what the gateway, on the council side, receives):
# event code -> (kind, withdrawal scope)
NOTICE_EVENTS: dict[str, tuple[str, str | None]] = {
    EVENT_ASSESSMENT: ("assessment", None),
    EVENT_DISCHARGE: ("discharge", None),
    EVENT_WITHDRAW_ALL: ("withdrawal", "all"),
    EVENT_WITHDRAW_DISCHARGE: ("withdrawal", "discharge"),
}
# The council's answers: never accepted as input, used to label our own responses.
RESPONSE_EVENTS = frozenset({EVENT_ASSESSMENT_ACCEPT, EVENT_ASSESSMENT_REJECT, EVENT_DISCHARGE_ACCEPT,
                             EVENT_DISCHARGE_REJECT, EVENT_WITHDRAW_ACCEPT, EVENT_WITHDRAW_REJECT})
ACCEPT_EVENT = {"assessment": EVENT_ASSESSMENT_ACCEPT, "discharge": EVENT_DISCHARGE_ACCEPT,
                "withdrawal": EVENT_WITHDRAW_ACCEPT}
REJECT_EVENT = {"assessment": EVENT_ASSESSMENT_REJECT, "discharge": EVENT_DISCHARGE_REJECT,
                "withdrawal": EVENT_WITHDRAW_REJECT}

# MessageHeader.source/destination.endpoint carry the ODS code in this form (ADW examples).
ODS_ENDPOINT_PREFIX = "urn:nhs-uk:addressing:ods:"

# --------------------------------------------------------------------------- identifier systems
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
# DSTU2-era senders sometimes used the older fhir.nhs.net namespace; accepted on input only.
NHS_NUMBER_INPUT = frozenset({NHS_NUMBER, "http://fhir.nhs.net/Id/nhs-number", "https://fhir.nhs.net/Id/nhs-number"})
ADW_LOCAL_PATIENT_ID = frozenset({"https://fhir.nhs.uk/Id/local-patient-identifier",
                                  "http://fhir.nhs.net/Id/local-patient-identifier"})
ODS_ORG = "https://fhir.nhs.uk/Id/ods-organization-code"
ODS_SITE = "https://fhir.nhs.uk/Id/ods-site-code"
ODS_SYSTEMS = frozenset({ODS_ORG, ODS_SITE, "http://fhir.nhs.net/Id/ods-organization-code",
                         "http://fhir.nhs.net/Id/ods-site-code"})
# Gateway-defined (no national system found for ONS GSS codes such as E08000035).
ONS_GSS = f"{GATEWAY}/Id/ons-gss-code"

# Gateway-defined identifier of the ServiceRequest raised from an ADW case: value
# "<sender ODS>.<ReferralRequest.identifier>". ADW reuses one ReferralRequest.identifier for the
# assessment notice, the discharge notice, the responses and the withdrawal, so a retried or
# later notice finds the same ServiceRequest and a withdrawal names the one to revoke.
ADW_REFERRAL_SYSTEM = f"{GATEWAY}/Id/adw-referral"
# Gateway-defined systems for sender-scoped identifiers that arrive without a usable system.
# "{ods}" is the sending (or assigning) organisation's ODS code.
LOCAL_PATIENT_SYSTEM = GATEWAY + "/Id/adw/{ods}/local-patient-identifier"
LOCAL_ENCOUNTER_SYSTEM = GATEWAY + "/Id/adw/{ods}/encounter"

# --------------------------------------------------------------------------- extensions / profiles
# Gateway-defined: the discharge date the hospital proposes (ADW "Proposed Discharge Date", carried
# in DSTU2 Encounter.period.end). R4 Encounter has no element for a planned end; period.end is the
# actual end. Value: valueDateTime (ADW sends a date).
PLANNED_DISCHARGE_EXT = f"{GATEWAY}/StructureDefinition/expected-discharge-date"  # shared with HL7 v2 PV2-9

UKCORE_PATIENT = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
UKCORE_ENCOUNTER = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Encounter"
UKCORE_SERVICE_REQUEST = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-ServiceRequest"
UKCORE_NHS_VERIFICATION_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
UKCORE_NHS_VERIFICATION_CS = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
UKCORE_NHS_COMMUNICATION_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSCommunication"
UKCORE_HUMAN_LANGUAGE = "https://fhir.hl7.org.uk/CodeSystem/UKCore-HumanLanguage"
UKCORE_RELATIONSHIP_ROLE = "https://fhir.hl7.org.uk/CodeSystem/UKCore-AdditionalPersonRelationshipRole"
V2_0131 = "http://terminology.hl7.org/CodeSystem/v2-0131"
V3_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_ACT_PRIORITY = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"

# NHS Number Status Indicator codes: same codes in the DSTU2 CareConnect code system and UK Core.
NHS_NUMBER_STATUS = {
    "01": "Number present and verified",
    "02": "Number present but not traced",
    "03": "Trace required",
    "04": "Trace attempted - No match or multiple match found",
    "05": "Trace needs to be resolved - (NHS number or patient detail conflict)",
    "06": "Trace in progress",
    "07": "Number not present and trace not required",
    "08": "Trace postponed (baby under six weeks old)",
}

# DSTU2 Encounter.class (code) -> R4 Encounter.class (v3-ActCode Coding)
ENCOUNTER_CLASS = {
    "inpatient": ("IMP", "inpatient encounter"),
    "outpatient": ("AMB", "ambulatory"),
    "ambulatory": ("AMB", "ambulatory"),
    "emergency": ("EMER", "emergency"),
    "home": ("HH", "home health"),
    "field": ("FLD", "field"),
    "daytime": ("SS", "short stay"),
    "virtual": ("VR", "virtual"),
}
# ADW Admission Type (https://fhir.nhs.uk/ADW-AdmissionType-1: P Elective, E Emergency, X Other)
# -> R4 Encounter.priority (v3-ActPriority). "X" has no equivalent and is kept as text.
ADMISSION_TYPE_PRIORITY = {"E": ("EM", "emergency"), "P": ("EL", "elective")}

# CareConnect Person Relationship Type (e-GIF) codes seen in the ADW examples -> UK Core
# PersonRelationshipType value set members. Other codes are kept as text.
RELATIONSHIP = {
    "20": (UKCORE_RELATIONSHIP_ROLE, "Carer", "Carer of patient"),
    "04": (V2_0131, "N", "Next-of-Kin"),
    "13": (V3_ROLE_CODE, "FTH", "father"),
}

# --------------------------------------------------------------------------- the assessment request
# SNOMED CT 710824005 |Assessment of health and social care needs (procedure)|: the Care Act
# assessment of care and support needs that an Assessment Notice asks the council to carry out.
CARE_NEEDS_ASSESSMENT = {"system": SNOMED, "code": "710824005",
                         "display": "Assessment of health and social care needs"}
