"""Realistic UK Core-shaped resources for the benchmarks, generated deterministically.

Ids are UUID-shaped (as the gateway assigns them on create) and derived from (type, n), so a
query can name a resource without keeping a list of what was loaded.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from typing import Any

NHS = "https://fhir.nhs.uk/Id/nhs-number"
UKCORE = "https://fhir.hl7.org.uk/StructureDefinition"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"

FAMILY = ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Robinson",
          "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Khan", "Clarke",
          "Lewis", "Jackson", "Wood", "Harris", "Martin", "Cooper", "Hill", "Ward", "Hughes", "Moore"]
GIVEN_M = ["Oliver", "George", "Harry", "Jack", "Jacob", "Noah", "Charlie", "Thomas", "Oscar", "William",
           "James", "Richard", "John", "David", "Mohammed", "Arthur"]
GIVEN_F = ["Olivia", "Amelia", "Isla", "Ava", "Emily", "Sophia", "Grace", "Mia", "Poppy", "Ella",
           "Margaret", "Susan", "Mary", "Fatima", "Elizabeth", "Anne"]
STREETS = ["High Street", "Station Road", "Main Street", "Park Road", "Church Road", "Church Street",
           "London Road", "Victoria Road", "Green Lane", "Manor Road", "Boar Lane", "Kirkgate"]
CITIES = [("Leeds", "LS"), ("Bradford", "BD"), ("Wakefield", "WF"), ("Harrogate", "HG"), ("York", "YO"),
          ("Huddersfield", "HD"), ("Halifax", "HX"), ("Sheffield", "S")]
ETHNIC = [("A", "British, Mixed British"), ("B", "Irish"), ("C", "Any other White background"),
          ("H", "Indian or British Indian"), ("J", "Pakistani or British Pakistani"), ("N", "African")]
ENC_STATUS = [("finished", 70), ("in-progress", 10), ("planned", 10), ("cancelled", 5), ("arrived", 5)]
ENC_CLASS = [("IMP", "inpatient encounter"), ("AMB", "ambulatory"), ("EMER", "emergency"), ("HH", "home health")]
ENC_TYPE = [("183452005", "Emergency hospital admission"), ("185389009", "Follow-up visit"),
            ("439740005", "Postoperative follow-up visit"), ("11429006", "Consultation")]
OBS_CODES = [(LOINC, "29463-7", "Body weight", "kg", 50, 110), (LOINC, "8302-2", "Body height", "cm", 150, 195),
             (LOINC, "8867-4", "Heart rate", "/min", 50, 110), (LOINC, "8310-5", "Body temperature", "Cel", 35.5, 39.5),
             (LOINC, "9279-1", "Respiratory rate", "/min", 10, 25), (LOINC, "59408-5", "Oxygen saturation", "%", 88, 100),
             (LOINC, "39156-5", "Body mass index", "kg/m2", 17, 40), (LOINC, "2339-0", "Glucose", "mg/dL", 70, 200),
             (LOINC, "8480-6", "Systolic blood pressure", "mm[Hg]", 95, 180),
             (LOINC, "8462-4", "Diastolic blood pressure", "mm[Hg]", 55, 110)]
COND_CODES = [("44054006", "Diabetes mellitus type 2"), ("38341003", "Hypertensive disorder"),
              ("195967001", "Asthma"), ("13645005", "Chronic obstructive lung disease"),
              ("396275006", "Osteoarthritis"), ("239873007", "Osteoarthritis of knee"),
              ("49436004", "Atrial fibrillation"), ("84114007", "Heart failure"), ("35489007", "Depressive disorder"),
              ("197480006", "Anxiety disorder"), ("230690007", "Cerebrovascular accident"),
              ("125605004", "Fracture of bone"), ("267036007", "Dyspnoea"), ("22298006", "Myocardial infarction"),
              ("414916001", "Obesity"), ("709044004", "Chronic kidney disease"), ("26929004", "Alzheimer's disease"),
              ("69896004", "Rheumatoid arthritis"), ("73211009", "Diabetes mellitus"), ("40930008", "Hypothyroidism")]
SR_CODES = [("91251008", "Physical therapy procedure"), ("385763009", "Hospice care"),
            ("410155007", "Occupational therapy assessment"), ("225358003", "Wound care"),
            ("183524004", "Referral to psychiatry service")]


def rid(rtype: str, n: int) -> str:
    """A stable UUID-shaped id for the n-th resource of a type."""
    return str(uuid.UUID(bytes=hashlib.md5(f"{rtype}/{n}".encode()).digest(), version=4))


def nhs_number(n: int) -> str:
    """A 10-digit NHS number with a valid modulus-11 check digit, unique per n < 10**8."""
    base = 900000000 + n % 99_999_999  # 9 digits, test range 9xx
    while True:
        digits = [int(c) for c in f"{base:09d}"]
        total = sum(d * w for d, w in zip(digits, range(10, 1, -1)))
        check = 11 - total % 11
        if check == 11:
            check = 0
        if check != 10:
            return f"{base:09d}{check}"
        base = (base + 1) % 10**9


def _weighted(rng: random.Random, items: list[tuple[str, int]]) -> str:
    return rng.choices([i for i, _ in items], weights=[w for _, w in items])[0]


def _date(rng: random.Random, y0: int = 2019, y1: int = 2024) -> str:
    return f"{rng.randint(y0, y1)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _dt(rng: random.Random) -> str:
    return f"{_date(rng, 2021, 2024)}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00+00:00"


def patient(n: int, rng: random.Random) -> dict[str, Any]:
    male = rng.random() < 0.5
    given = rng.sample(GIVEN_M if male else GIVEN_F, 2)
    family = rng.choice(FAMILY)
    city, pc = rng.choice(CITIES)
    eth = rng.choice(ETHNIC)
    dob = _date(rng, 1930, 2010)
    return {
        "resourceType": "Patient",
        "meta": {"profile": [f"{UKCORE}/UKCore-Patient"]},
        "text": {"status": "generated",
                 "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{given[0]} <b>{family}</b>, born {dob}</p></div>'},
        "extension": [{
            "url": f"{UKCORE}/Extension-UKCore-EthnicCategory",
            "valueCodeableConcept": {"coding": [{
                "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland",
                "code": eth[0], "display": eth[1]}]},
        }],
        "identifier": [{
            "extension": [{
                "url": f"{UKCORE}/Extension-UKCore-NHSNumberVerificationStatus",
                "valueCodeableConcept": {"coding": [{
                    "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
                    "code": "01", "display": "Number present and verified"}]},
            }],
            "system": NHS,
            "value": nhs_number(n),
        }],
        "active": True,
        "name": [{"use": "official", "family": family, "given": given, "prefix": ["Mr" if male else "Mrs"]}],
        "telecom": [{"system": "phone", "value": f"0113{rng.randint(1000000, 9999999)}", "use": "home", "rank": 1}],
        "gender": "male" if male else "female",
        "birthDate": dob,
        "address": [{"use": "home", "line": [f"{rng.randint(1, 200)} {rng.choice(STREETS)}"],
                     "city": city, "postalCode": f"{pc}{rng.randint(1, 29)} {rng.randint(1, 9)}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}",
                     "country": "GB"}],
        "generalPractitioner": [{"reference": f"Organization/{rid('Organization', rng.randrange(N_ORG))}",
                                 "display": "GP Practice"}],
        "multipleBirthBoolean": False,
    }


N_ORG, N_PRACT, N_LOC = 200, 500, 50


def organization(n: int, rng: random.Random) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": f"Y{10000 + n}"}],
        "active": True,
        "type": [{"coding": [{"system": "https://fhir.nhs.uk/CodeSystem/organisation-role", "code": "76",
                              "display": "GP PRACTICE"}]}],
        "name": f"{rng.choice(STREETS)} Medical Practice {n}",
        "address": [{"line": [f"{rng.randint(1, 200)} {rng.choice(STREETS)}"], "city": rng.choice(CITIES)[0],
                     "country": "GB"}],
    }


def practitioner(n: int, rng: random.Random) -> dict[str, Any]:
    male = rng.random() < 0.5
    return {
        "resourceType": "Practitioner",
        "identifier": [{"system": "https://fhir.hl7.org.uk/Id/gmc-number", "value": f"C{1000000 + n}"}],
        "active": True,
        "name": [{"family": rng.choice(FAMILY), "given": [rng.choice(GIVEN_M if male else GIVEN_F)], "prefix": ["Dr"]}],
        "gender": "male" if male else "female",
    }


def location(n: int, rng: random.Random) -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-site-code", "value": f"RR8{n:02d}"}],
        "status": "active",
        "name": f"Ward {n}",
        "managingOrganization": {"reference": f"Organization/{rid('Organization', 0)}"},
    }


def _pract(rng: random.Random) -> str:
    return f"Practitioner/{rid('Practitioner', rng.randrange(N_PRACT))}"


def encounter(n: int, rng: random.Random, patient_id: str) -> dict[str, Any]:
    cls = rng.choice(ENC_CLASS)
    et = rng.choice(ENC_TYPE)
    start = _dt(rng)
    status = _weighted(rng, ENC_STATUS)
    period = {"start": start}
    if status == "finished":
        period["end"] = start[:11] + "23:30:00+00:00"
    return {
        "resourceType": "Encounter",
        "identifier": [{"system": "https://trust.example.nhs.uk/Id/encounter", "value": f"ENC{n:08d}"}],
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": cls[0], "display": cls[1]},
        "type": [{"coding": [{"system": SCT, "code": et[0], "display": et[1]}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "participant": [{"individual": {"reference": _pract(rng)}, "period": {"start": start}}],
        "period": period,
        "reasonCode": [{"text": rng.choice(COND_CODES)[1]}],
        "hospitalization": {
            "admitSource": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-SourceOfAdmission",
                                        "code": "19", "display": "Usual place of residence"}]},
        },
        "location": [{"location": {"reference": f"Location/{rid('Location', rng.randrange(N_LOC))}"},
                      "status": "completed"}],
        "serviceProvider": {"reference": f"Organization/{rid('Organization', rng.randrange(N_ORG))}"},
    }


def observation(n: int, rng: random.Random, patient_id: str) -> dict[str, Any]:
    system, code, display, unit, lo, hi = rng.choice(OBS_CODES)
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": [{"system": system, "code": code, "display": display}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": _dt(rng),
        "performer": [{"reference": _pract(rng)}],
        "valueQuantity": {"value": round(rng.uniform(lo, hi), 1), "unit": unit, "system": "http://unitsofmeasure.org",
                          "code": unit},
    }


def condition(n: int, rng: random.Random, patient_id: str) -> dict[str, Any]:
    code, display = rng.choice(COND_CODES)
    return {
        "resourceType": "Condition",
        "meta": {"profile": [f"{UKCORE}/UKCore-Condition"]},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": rng.choice(["active", "resolved", "remission"])}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                           "code": "confirmed"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                  "code": "problem-list-item", "display": "Problem List Item"}]}],
        "code": {"coding": [{"system": SCT, "code": code, "display": display}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "onsetDateTime": _dt(rng),
        "recordedDate": _date(rng, 2021, 2024),
        "asserter": {"reference": _pract(rng)},
    }


def service_request(n: int, rng: random.Random, patient_id: str) -> dict[str, Any]:
    code, display = rng.choice(SR_CODES)
    start = _date(rng, 2023, 2024)
    return {
        "resourceType": "ServiceRequest",
        "status": rng.choice(["active", "completed", "draft", "revoked"]),
        "intent": "order",
        "category": [{"coding": [{"system": SCT, "code": "386053000", "display": "Evaluation procedure"}]}],
        "priority": rng.choice(["routine", "urgent"]),
        "code": {"coding": [{"system": SCT, "code": code, "display": display}]},
        "quantityQuantity": {"value": rng.randint(1, 12), "unit": "sessions"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "occurrencePeriod": {"start": start},
        "authoredOn": _dt(rng),
        "requester": {"reference": _pract(rng)},
        "note": [{"text": "Post-op rehab, twice weekly."}],
    }


def care_plan(n: int, rng: random.Random, patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "CarePlan",
        "status": rng.choice(["active", "completed", "draft"]),
        "intent": "plan",
        "title": rng.choice(["Knee rehabilitation", "Falls prevention", "Diabetes management", "Reablement"]),
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": {"start": _date(rng, 2022, 2024)},
        "activity": [
            {"detail": {"kind": "ServiceRequest", "code": {"text": "Physiotherapy"}, "status": "in-progress",
                        "doNotPerform": False,
                        "scheduledTiming": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "wk"}},
                        "performer": [{"reference": _pract(rng)}]}},
            {"detail": {"status": "scheduled", "description": "Daily walk",
                        "dailyAmount": {"value": 30, "unit": "min"}, "scheduledString": "every morning"}},
        ],
    }


CLINICAL = {"Encounter": encounter, "Observation": observation, "Condition": condition,
            "ServiceRequest": service_request, "CarePlan": care_plan}
# share of the non-reference-data resources
MIX = [("Patient", 0.10), ("Encounter", 0.25), ("Observation", 0.35), ("Condition", 0.12),
       ("ServiceRequest", 0.10), ("CarePlan", 0.08)]
# the one patient with a large compartment (200 resources besides the Patient itself)
BIG_COMPARTMENT = {"Encounter": 60, "Observation": 80, "Condition": 30, "ServiceRequest": 15, "CarePlan": 15}


def plan(size: int) -> dict[str, int]:
    """How many of each type a store of `size` resources holds."""
    ref = N_ORG + N_PRACT + N_LOC
    rest = max(size - ref, 1000)
    counts = {t: int(rest * share) for t, share in MIX}
    counts["Patient"] = max(counts["Patient"], 2)
    counts["Organization"], counts["Practitioner"], counts["Location"] = N_ORG, N_PRACT, N_LOC
    return counts


def generate(size: int, seed: int = 42):
    """Yields (type, id, resource) for a whole store, reference data first, then interleaved clinical data.

    Patient 0 is the big-compartment patient; every other clinical resource names a random patient >= 1.
    """
    rng = random.Random(seed)
    counts = plan(size)
    for t, fn, k in (("Organization", organization, N_ORG), ("Practitioner", practitioner, N_PRACT),
                     ("Location", location, N_LOC)):
        for n in range(k):
            yield t, rid(t, n), fn(n, rng)
    n_pat = counts["Patient"]
    big = rid("Patient", 0)
    for n in range(n_pat):
        yield "Patient", rid("Patient", n), patient(n, rng)
    for t, k in BIG_COMPARTMENT.items():
        for n in range(k):
            yield t, rid(t, n), CLINICAL[t](n, rng, big)
    # the remaining clinical resources, interleaved by type so the table is not clustered by type
    todo = {t: BIG_COMPARTMENT[t] for t in CLINICAL}
    types = list(CLINICAL)
    weights = [counts[t] for t in types]
    remaining = sum(counts[t] - todo[t] for t in types)
    while remaining > 0:
        t = rng.choices(types, weights=weights)[0]
        n = todo[t]
        if n >= counts[t]:
            weights[types.index(t)] = 0
            continue
        todo[t] = n + 1
        remaining -= 1
        pid = rid("Patient", rng.randrange(1, n_pat))
        yield t, rid(t, n), CLINICAL[t](n, rng, pid)
