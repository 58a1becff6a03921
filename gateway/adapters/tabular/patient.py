"""The Patient as one source knows the person, from a row's person columns.

Both adapters' specs use the same targets for person data: `person_id`, `nhs_number`,
`nhs_number_status`, `family_name`, `given_name`, `birth_date`, `gender`, `ethnicity`,
`postcode`, `gp_practice`, `death_date`. The pipeline matches this Patient to the shared record
(`gateway.pipeline.identity`); it carries no id of its own.
"""

from __future__ import annotations

from .fhir import ODS_SYSTEM, drop_empty, identifier, meta
from .reader import ParsedRow

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
VERIFICATION_URL = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
VERIFICATION_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
VERIFICATION_DISPLAY = {"01": "Number present and verified", "02": "Number present but not traced"}
ETHNIC_URL = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
LOCAL_ID_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PI",
                             "display": "Patient internal identifier"}]}


def patient_from_row(row: ParsedRow, person_system: str, assigner: dict, spec_id: str,
                     default_status: str | None = None) -> dict:
    """`assigner` is the Reference of the organisation that issued `person_id`; `default_status`
    the NHS number verification status when the row has none (a council's unconfirmed number
    is `02`, present but not traced)."""
    identifiers = []
    nhs = row.get("nhs_number")
    if nhs:
        ident: dict = {"system": NHS_NUMBER_SYSTEM, "value": nhs}
        status = row.get("nhs_number_status")
        coding = dict(status.codings[0]) if status is not None else None
        if coding is None and default_status:
            coding = {"system": VERIFICATION_SYSTEM, "code": default_status}
            if default_status in VERIFICATION_DISPLAY:
                coding["display"] = VERIFICATION_DISPLAY[default_status]
        if coding:
            ident = {"extension": [{"url": VERIFICATION_URL, "valueCodeableConcept": {"coding": [coding]}}], **ident}
        identifiers.append(ident)
    if row.get("person_id"):
        identifiers.append({**identifier(person_system, row.get("person_id")), "type": LOCAL_ID_TYPE,
                            "assigner": assigner})

    ethnicity = row.get("ethnicity")
    given = row.get("given_name")
    resource = {
        "resourceType": "Patient",
        "meta": meta("Patient", spec_id),
        "extension": [{"url": ETHNIC_URL, "valueCodeableConcept": ethnicity.concept()}] if ethnicity else [],
        "identifier": identifiers,
        "name": ([{"use": "official", "family": row.get("family_name"), "given": given.split() if given else []}]
                 if row.get("family_name") or given else []),
        "gender": row.get("gender").code if row.get("gender") else None,
        "birthDate": row.get("birth_date"),
        "deceasedDateTime": row.get("death_date"),
        "address": [{"postalCode": row.get("postcode")}],
        "generalPractitioner": ([{"identifier": {"system": ODS_SYSTEM, "value": row.get("gp_practice")}}]
                                if row.get("gp_practice") else []),
    }
    return drop_empty(resource)
