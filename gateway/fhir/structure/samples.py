"""Realistic example resources shared by tests, benchmarks and docs.

Functions (not constants) so each caller gets a fresh, mutable copy.
"""

from __future__ import annotations

from typing import Any

NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
UKCORE = "https://fhir.hl7.org.uk/StructureDefinition"
XHTML_DIV = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Richard <b>Smith</b>, born 25 Dec 1974</p></div>'


def uk_core_patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "UKCore-Patient-RichardSmith-Example",
        "meta": {"profile": [f"{UKCORE}/UKCore-Patient"], "lastUpdated": "2024-03-01T10:20:30.123+00:00"},
        "text": {"status": "generated", "div": XHTML_DIV},
        "extension": [{
            "url": f"{UKCORE}/Extension-UKCore-EthnicCategory",
            "valueCodeableConcept": {"coding": [{
                "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland",
                "code": "A", "display": "British, Mixed British"}]},
        }],
        "identifier": [{
            "extension": [{
                "url": f"{UKCORE}/Extension-UKCore-NHSNumberVerificationStatus",
                "valueCodeableConcept": {"coding": [{
                    "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
                    "code": "01", "display": "Number present and verified"}]},
            }],
            "system": NHS_NUMBER,
            "value": "9000000009",
        }],
        "active": True,
        "name": [{"use": "official", "family": "Smith", "given": ["Richard", "John"], "prefix": ["Mr"]}],
        "telecom": [{"system": "phone", "value": "01632960587", "use": "home", "rank": 1}],
        "gender": "male",
        "birthDate": "1974-12-25",
        "address": [{"use": "home", "line": ["1 Trevelyan Square", "Boar Lane"],
                     "city": "Leeds", "postalCode": "LS1 6AE", "country": "GB"}],
        "generalPractitioner": [{"reference": "Organization/Y12345", "display": "Leeds GP Practice"}],
        "multipleBirthBoolean": False,
    }


def encounter() -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": "enc-0001",
        "identifier": [{"system": "https://trust.example.nhs.uk/Id/encounter", "value": "ENC123456"}],
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP",
                  "display": "inpatient encounter"},
        "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "183452005",
                              "display": "Emergency hospital admission"}]}],
        "subject": {"reference": "Patient/UKCore-Patient-RichardSmith-Example"},
        "participant": [{"individual": {"reference": "Practitioner/pract-1"},
                         "period": {"start": "2024-02-20T08:00:00Z"}}],
        "period": {"start": "2024-02-20T08:00:00Z", "end": "2024-02-27T16:30:00Z"},
        "length": {"value": 7.35, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"},
        "reasonCode": [{"text": "Knee replacement rehabilitation"}],
        "hospitalization": {
            "admitSource": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-SourceOfAdmission",
                                        "code": "19", "display": "Usual place of residence"}]},
            "dischargeDisposition": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-DischargeDestination",
                                                 "code": "19", "display": "Usual place of residence"}]},
        },
        "location": [{"location": {"reference": "Location/ward-7"}, "status": "completed"}],
        "serviceProvider": {"reference": "Organization/RR8"},
    }


def service_request() -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": "sr-physio-1",
        "status": "active",
        "intent": "order",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "386053000",
                                  "display": "Evaluation procedure"}]}],
        "priority": "routine",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91251008",
                             "display": "Physical therapy procedure"}]},
        "quantityQuantity": {"value": 6, "unit": "sessions"},
        "subject": {"reference": "Patient/UKCore-Patient-RichardSmith-Example"},
        "encounter": {"reference": "Encounter/enc-0001"},
        "occurrencePeriod": {"start": "2024-03-01", "end": "2024-04-30"},
        "authoredOn": "2024-02-27T15:00:00+00:00",
        "requester": {"reference": "Practitioner/pract-1"},
        "reasonReference": [{"reference": "Condition/cond-1"}],
        "note": [{"text": "Post-op knee rehab, **twice weekly**.", "time": "2024-02-27"}],
    }


def care_plan() -> dict[str, Any]:
    return {
        "resourceType": "CarePlan",
        "id": "cp-1",
        "status": "active",
        "intent": "plan",
        "title": "Knee rehabilitation",
        "subject": {"reference": "Patient/UKCore-Patient-RichardSmith-Example"},
        "period": {"start": "2024-03-01"},
        "goal": [{"reference": "Goal/goal-walk"}],
        "activity": [
            {"detail": {"kind": "ServiceRequest", "code": {"text": "Physiotherapy"}, "status": "in-progress",
                        "doNotPerform": False,
                        "scheduledTiming": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "wk"}},
                        "performer": [{"reference": "Practitioner/pract-1"}]}},
            {"reference": {"reference": "ServiceRequest/sr-physio-1"},
             "progress": [{"authorString": "Physio", "text": "Good progress"}]},
            {"detail": {"status": "scheduled", "description": "Daily walk",
                        "dailyAmount": {"value": 30, "unit": "min"},
                        "scheduledString": "every morning"}},
        ],
    }


def observation() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "obs-weight",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "27113001", "display": "Body weight"}]},
        "subject": {"reference": "Patient/UKCore-Patient-RichardSmith-Example"},
        "effectiveDateTime": "2024-02-20T09:30:00+00:00",
        "issued": "2024-02-20T09:31:12.000Z",
        "valueQuantity": {"value": 82.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
        "referenceRange": [{"low": {"value": 50, "unit": "kg"}, "high": {"value": 100.25, "unit": "kg"}}],
    }


def patient_with_primitive_extensions() -> dict[str, Any]:
    """Extensions on primitive array members (``_given``) and single primitives."""
    nullflavor = {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}
    return {
        "resourceType": "Patient",
        "id": "prim-ext",
        "name": [{
            "family": "Ng",
            "_family": {"id": "fam1", "extension": [{
                "url": "http://hl7.org/fhir/StructureDefinition/humanname-own-prefix", "valueString": "van"}]},
            "given": ["Anna", None, "Lee"],
            "_given": [None, {"extension": [nullflavor]}, {"id": "g3"}],
        }],
        "birthDate": "1980-05",
        "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                      "valueDateTime": "1980-05-17T14:35:00+01:00"}]},
        "photo": [{"contentType": "image/png", "data": "iVBORw0KGgo="}],
    }


def transaction_bundle() -> dict[str, Any]:
    sr = service_request()
    sr["contained"] = [{"resourceType": "Condition", "id": "knee",
                        "subject": {"reference": "Patient/UKCore-Patient-RichardSmith-Example"},
                        "code": {"text": "Osteoarthritis of knee"}}]
    sr["reasonReference"] = [{"reference": "#knee"}]
    return {
        "resourceType": "Bundle",
        "id": "txn-1",
        "type": "transaction",
        "timestamp": "2024-02-27T15:00:00Z",
        "entry": [
            {"fullUrl": "urn:uuid:2f7d3a4e-4b3e-4f7a-9d1c-6a8e0e7b1c11", "resource": uk_core_patient(),
             "request": {"method": "PUT", "url": "Patient/UKCore-Patient-RichardSmith-Example"}},
            {"fullUrl": "urn:uuid:8c0a3a4e-1b3e-4f7a-9d1c-6a8e0e7b1c22", "resource": encounter(),
             "request": {"method": "POST", "url": "Encounter", "ifNoneExist": "identifier=ENC123456"}},
            {"resource": sr, "request": {"method": "POST", "url": "ServiceRequest"}},
            {"request": {"method": "DELETE", "url": "Observation?code=27113001"}},
        ],
    }


def parameters() -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "count", "valueInteger": 3},
            {"name": "flag", "valueBoolean": True},
            {"name": "patient", "resource": {"resourceType": "Patient", "id": "p2", "active": False}},
            {"name": "bundle", "part": [{"name": "ratio", "valueDecimal": 0.125}]},
        ],
    }


def all_valid() -> dict[str, dict[str, Any]]:
    return {
        "uk_core_patient": uk_core_patient(),
        "encounter": encounter(),
        "service_request": service_request(),
        "care_plan": care_plan(),
        "observation": observation(),
        "patient_with_primitive_extensions": patient_with_primitive_extensions(),
        "transaction_bundle": transaction_bundle(),
        "parameters": parameters(),
    }
