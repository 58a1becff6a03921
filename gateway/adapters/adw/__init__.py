"""ADW: the NHS Assessment, Discharge and Withdrawal notices (Care Act 2014 Schedule 3), read-only.

Legacy: the statutory duty was repealed on 1 July 2022 and NHS Digital marks the API deprecated,
but some trusts still send these notices to councils. The gateway reads them and answers
``$process-message``; it builds nothing new on them (see the standards README §2).

    bundle  = parse_adw(body, content_type)   # DSTU2 XML or JSON -> dict; AdwError if not an ADW notice
    mapping = map_adw(bundle)                 # -> AdwMapping (R4 / UK Core); mapping.errors: content problems
    reply   = build_response(bundle, mapping.ok, mapping.errors)   # R4 response message Bundle

Confirmed in NHS Digital's specification, public repository ``nhsconnect/FHIR-ADW-Messaging``:

* FHIR DSTU2 message Bundles (profile ``https://fhir.nhs.uk/StructureDefinition/ADW-Message-Bundle-1``,
  ``Bundle.type`` message, MessageHeader first): examples
  ``Generated/Examples/Profile.ADW-AssessmentNotice/ADW-Message-Assessment-Notice-Bundle-1-Example-1.xml``,
  ``Generated/Examples/Profile.ADW-DischargeNotice/ADW-Message-Discharge-Notice-Bundle-1-Example-1.xml``,
  ``Generated/Examples/Profile.ADW-WithdrawalNotice/ADW-Message-Withdrawal-Notice-Bundle-1-Example-1.xml``.
  DSTU2 shapes seen there: ``MessageHeader.event``/``data``/``reason``, ``ReferralRequest.patient``,
  ``Encounter.patient``/``class`` (code ``inpatient``), ``Practitioner.practitionerRole``,
  ``Patient.careProvider``, ``QuestionnaireResponse.group.question``.
* Events (``MessageHeader.event``, system ``http://snomed.info/sct``, value set
  ``https://fhir.nhs.uk/ValueSet/adw-message-event-1``,
  ``Generated/Profile.ADW-WithdrawalNotice/adw-message-event-1.html``): 975701000000106 Assessment
  Notice, 975731000000100 Discharge Notice, 975841000000102 Withdraw All Notices, 975851000000104
  Withdraw Discharge Notice Only, and the responses 975711000000108 / 975721000000102 (assessment
  accept / reject), 975821000000109 / 975831000000106 (discharge agreement / disagreement),
  1025651000000109 / 1025641000000106 (withdrawal accept / reject). See ``codes.py``.
* Addressing: ``MessageHeader.source.endpoint`` / ``destination.endpoint`` =
  ``urn:nhs-uk:addressing:ods:<ODS code>`` (hospital site, council); the hospital Organization
  carries ``https://fhir.nhs.uk/Id/ods-site-code``, the council ``.../ods-organization-code``.
* Data set per notice (SCCI2075 data items -> FHIR elements), in
  ``Generation/Profile.ADW-AssessmentNotice/adw-message-bundle-1.md``,
  ``Generation/Profile.ADW-DischargeNotice/adw-message-bundle-1.md`` and
  ``Generation/Profile.ADW-WithdrawalNotice/adw-message-bundle-1.md``: issued date =
  ``MessageHeader.timestamp``; NHS number (+ status indicator) and hospital patient identifier in
  ``Patient.identifier``; name, birth date, stated gender, address lines 1-3 ``line``, 4 ``city``,
  5 ``district``, postcode; hospital site code / name, ward = ``Location.name``; admission date =
  ``Encounter.period.start``; reason for admission = ``Condition.code.text``; admission type =
  ``Encounter.priority`` (ADW-AdmissionType-1: P elective, E emergency, X other,
  ``Generated/Profile.ADW-AssessmentNotice/adw-admission-type-1.html``); **proposed discharge date =
  ``Encounter.period.end``** (assessment and discharge notices); consultation / consent / CHC /
  safeguarding answers in a QuestionnaireResponse; withdrawal type = ``MessageHeader.event.code``,
  reason = ``MessageHeader.reason`` (codes 01-13 of ``https://fhir.nhs.uk/ValueSet/adw-withdrawal-reason-1``,
  ``Generated/Profile.ADW-WithdrawalNotice/adw-withdrawal-reason-1.html``; the example codes it with
  system ``https://fhir.nhs.uk/ADW-WithdrawalReason-1``), other reason in ``reason.text``.
* The notice withdrawn: the withdrawal's ReferralRequest (profile ADW-Cancel-ReferralRequest-1,
  ``status`` fixed ``cancelled``, ``identifier`` 1..1,
  ``Generated/Profile.ADW-WithdrawalNotice/adw-cancel-referralrequest-1-dict.html``) repeats the
  ``identifier`` of the assessment notice's ReferralRequest (same value in all the examples,
  discharge notice and reject response included). That identifier is the case key here.
* Responses: ``MessageHeader.response.identifier`` = the notice's MessageHeader.id,
  ``response.code`` ok, source/destination swapped, reject reason in ``MessageHeader.reason``
  (``https://fhir.nhs.uk/ADW-NoticeRejectReason-1``),
  ``Generated/Examples/Profile.ADW-AssessmentNoticeRejectResponse/``
  ``ADW-Message-Assessment-Notice-Reject-Response-Bundle-1-Example-1.xml``.

Chosen here (not from the ADW spec): the R4 targets, documented in ``mapping.py`` (the proposed
discharge date goes in the gateway extension ``expected-discharge-date`` (shared with HL7 v2 PV2-9), not ``period.end``) and
``response.py``; SNOMED CT 710824005 "Assessment of health and social care needs" as the
ServiceRequest code (a concept found in several public code bases, not in the ADW spec).
"""

from .mapping import AdwMapping, map_adw, nhs_number_valid
from .parse import AdwError, check_message, parse_adw
from .response import build_response

__all__ = ["AdwError", "AdwMapping", "build_response", "check_message", "map_adw", "nhs_number_valid", "parse_adw"]
