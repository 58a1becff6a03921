"""HL7 v2 data types -> FHIR data types (DTM, XPN, XAD, XTN, XCN).

Field positions follow the HL7 v2-to-FHIR IG data type maps (CX[Identifier], XPN[HumanName],
XAD[Address], XTN[ContactPoint], XCN[Practitioner], DTM[dateTime]); code translations go
through ConceptMaps in `mappings/`. Times without an offset are local time of the feed
(Europe/London: GMT in winter, BST in summer) — HL72UK and the NHS ADT convention send local
time without a zone.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from gateway.pipeline.identity import is_valid_nhs_number
from gateway.pipeline.identity import normalise_postcode as canonical_postcode

from .codes import ConceptMaps

_DTM = re.compile(
    r"(?P<y>\d{4})(?:(?P<mo>\d{2})(?:(?P<d>\d{2})(?:(?P<h>\d{2})(?:(?P<mi>\d{2})(?:(?P<s>\d{2})"
    r"(?:\.(?P<f>\d{1,4}))?)?)?)?)?)?(?P<tz>[+-]\d{4})?"
)


def dtm(value: str, tz: ZoneInfo) -> str:
    """HL7 DTM/TS -> FHIR date or dateTime. Raises ValueError when malformed.

    Date precision stays a date ("20250314" -> "2025-03-14"); any time gets seconds and an
    offset, because FHIR dateTime requires both once a time is present. A local time in the
    autumn repeated hour is read as the first (BST) occurrence; one in the spring gap as GMT.
    """
    value = value.strip()
    m = _DTM.fullmatch(value)
    if not m:
        raise ValueError(f"not an HL7 date/time: {value!r}")
    g = m.groupdict()
    y, mo, d = int(g["y"]), int(g["mo"] or 1), int(g["d"] or 1)
    if g["h"] is None:
        datetime(y, mo, d)  # validates the calendar date
        return "-".join(p for p in (g["y"], g["mo"], g["d"]) if p)
    h, mi, s = int(g["h"]), int(g["mi"] or 0), int(g["s"] or 0)
    if g["tz"]:
        sign = 1 if g["tz"][0] == "+" else -1
        offset = timedelta(hours=int(g["tz"][1:3]), minutes=int(g["tz"][3:5]))
        zone = timezone(sign * offset)
        moment = datetime(y, mo, d, h, mi, s, tzinfo=zone)
    else:
        moment = datetime(y, mo, d, h, mi, s, tzinfo=tz)
    off = moment.utcoffset() or timedelta(0)
    minutes = int(off.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    frac = f".{g['f']}" if g["f"] else ""
    return f"{moment:%Y-%m-%dT%H:%M:%S}{frac}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def date_only(value: str) -> str:
    """HL7 DT/DTM -> FHIR date (birth dates: the time part, if any, is dropped)."""
    value = value.strip()
    m = _DTM.fullmatch(value)
    if not m:
        raise ValueError(f"not an HL7 date: {value!r}")
    g = m.groupdict()
    datetime(int(g["y"]), int(g["mo"] or 1), int(g["d"] or 1))
    return "-".join(p for p in (g["y"], g["mo"], g["d"]) if p)


def instant(value: str | None) -> datetime | None:
    """A FHIR date/dateTime as an aware datetime for ordering (dates: midnight UTC)."""
    if not value:
        return None
    try:
        if len(value) <= 10:
            parts = [int(p) for p in value.split("-")] + [1, 1]
            return datetime(parts[0], parts[1], parts[2], tzinfo=timezone.utc)
        moment = datetime.fromisoformat(value)
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    except ValueError:
        return None


# --------------------------------------------------------------------------- NHS number


nhs_number_valid = is_valid_nhs_number  # one Modulus 11 rule: gateway.pipeline.identity


# --------------------------------------------------------------------------- names, addresses, telecoms


def human_name(seg, field: int, rep: int, codes: ConceptMaps) -> dict | None:
    """XPN -> HumanName: 1 family, 2 given, 3 further given names, 4 suffix, 5 prefix, 7 type."""
    family = seg.get(field, rep, 1)
    given = [g for g in [seg.get(field, rep, 2), *seg.get(field, rep, 3).split()] if g]
    if not family and not given:
        return None
    name: dict = {}
    use = codes.translate("hl7v2-name-type", seg.get(field, rep, 7))
    if use:
        name["use"] = use["code"]
    if family:
        name["family"] = family
    if given:
        name["given"] = given
    if seg.get(field, rep, 5):
        name["prefix"] = [seg.get(field, rep, 5)]
    if seg.get(field, rep, 4):
        name["suffix"] = [seg.get(field, rep, 4)]
    return name


def address(seg, field: int, rep: int, codes: ConceptMaps) -> dict | None:
    """XAD -> Address: 1 street, 2 other designation, 3 city, 4 county, 5 postcode, 6 country, 7 type."""
    lines = [seg.get(field, rep, c) for c in (1, 2)]
    out: dict = {}
    use = codes.translate("hl7v2-address-type", seg.get(field, rep, 7))
    if use:
        out["use"] = use["code"]
    if any(lines):
        out["line"] = [line for line in lines if line]
    for comp, key in ((3, "city"), (4, "district"), (5, "postalCode"), (6, "country")):
        value = seg.get(field, rep, comp)
        if value:
            out[key] = value
    if "postalCode" in out:
        out["postalCode"] = normalise_postcode(out["postalCode"])
    return out if set(out) - {"use"} else None


def normalise_postcode(value: str) -> str:
    """UK postcodes in the canonical "outward inward" form ("ls11ab" -> "LS1 1AB"); anything not
    shaped like a postcode is kept as sent (stripped)."""
    return canonical_postcode(value) or value.strip()


def contact_point(seg, field: int, rep: int, default_use: str, codes: ConceptMaps) -> dict | None:
    """XTN -> ContactPoint: 1 number (pre-2.5), 2 use, 3 equipment, 4 email, 12 unformatted number."""
    equipment = seg.get(field, rep, 3)
    email = seg.get(field, rep, 4)
    number = seg.get(field, rep, 12) or seg.get(field, rep, 1)
    out: dict = {}
    if equipment in ("Internet", "X.400") or (email and not number):
        if not email:
            return None
        out["system"], out["value"] = "email", email
    else:
        if not number:
            return None
        system = codes.translate("hl7v2-telecom-equipment", equipment) if equipment else None
        out["system"] = system["code"] if system else "phone"
        out["value"] = number
    use = codes.translate("hl7v2-telecom-use", seg.get(field, rep, 2))
    if equipment == "CP" and not use:
        out["use"] = "mobile"
    elif use:
        out["use"] = use["code"]
    elif default_use:
        out["use"] = default_use
    return out


# --------------------------------------------------------------------------- people


GMC = "https://fhir.hl7.org.uk/Id/gmc-number"
GMP = "https://fhir.hl7.org.uk/Id/gmp-number"
ODS_ORG = "https://fhir.nhs.uk/Id/ods-organization-code"
ODS_SITE = "https://fhir.nhs.uk/Id/ods-site-code"

_CONSULTANT = re.compile(r"^C(\d{7})$")  # NHS consultant code = "C" + GMC number
_GMC = re.compile(r"^\d{7}$")
_GP = re.compile(r"^G\d{7}$")  # GMP (GP national) code


def staff_identifier(code: str, local_system: str) -> dict:
    """A clinician code from an XCN-1 as a UK Core identifier.

    "C" + 7 digits (NHS consultant code) and bare 7-digit numbers are GMC numbers; "G" + 7
    digits is a GMP code; anything else (trust staff numbers) stays in the feed's local system.
    """
    code = code.strip()
    m = _CONSULTANT.match(code)
    if m:
        return {"system": GMC, "value": m.group(1)}
    if _GMC.match(code):
        return {"system": GMC, "value": code}
    if _GP.match(code):
        return {"system": GMP, "value": code}
    return {"system": local_system, "value": code}


def person_display(seg, field: int, rep: int = 0) -> str:
    """XCN name parts (6 prefix, 3 given, 2 family) as one display string: "DR ANNA JONES"."""
    parts = [seg.get(field, rep, c) for c in (6, 3, 2)]
    return " ".join(p for p in parts if p)


def practitioner_ref(seg, field: int, rep: int, local_system: str) -> dict | None:
    """XCN -> a Reference(Practitioner) by identifier (the store does not resolve it)."""
    code = seg.get(field, rep, 1)
    display = person_display(seg, field, rep)
    if not code and not display:
        return None
    ref: dict = {"type": "Practitioner"}
    if code:
        ref["identifier"] = staff_identifier(code, local_system)
    if display:
        ref["display"] = display
    return ref


def organization_ref(ods_code: str, display: str = "") -> dict:
    ref: dict = {"type": "Organization", "identifier": {"system": ODS_ORG, "value": ods_code}}
    if display:
        ref["display"] = display
    return ref
