"""One person across sources: NHS number checks, demographic normalisation and match grading.

Pure functions, no I/O: the pipeline looks candidates up (by NHS number, by `demographic_key`)
and asks `match_grade` how sure it may be that two Patient resources are the same person.

The rule the pipeline applies to a grade:

- **certain** (equal, Modulus-11-valid NHS numbers): the incoming record is merged into the
  matched Patient; its source identifiers are added there.
- **probable** (no NHS number to compare, but normalised family + first given name + birth date +
  postcode all equal) and **possible** (partial agreement, e.g. same family name and birth date,
  different postcode): never merged. The incoming record becomes its own Patient, linked to the
  candidate with `Patient.link` type `seealso`, and the pair goes on the review list for a person
  to confirm or reject (a confirmed pair is then merged like a certain match).
- **none**: a new Patient, no link. Two different valid NHS numbers are always `none` (reported
  as `certainly-not`), however alike the demographics: twins and namesakes share the rest.

A Modulus-11 pass only says the number is well formed, not that it belongs to this person
(standards detail.md 4.4); tracing against PDS is what makes it verified.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
MATCH_GRADE_URL = "http://hl7.org/fhir/StructureDefinition/match-grade"

# Titles and post-nominals dropped from names before comparison.
_HONORIFICS = frozenset({
    "mr", "mrs", "miss", "ms", "mx", "master", "dr", "doctor", "prof", "professor", "rev", "revd",
    "reverend", "fr", "father", "sr", "sister", "sir", "dame", "lady", "lord", "capt", "captain",
    "col", "major", "maj", "cllr", "hon", "jnr", "jr", "snr", "senior", "junior", "obe", "mbe", "cbe",
})
_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")
# Demographic weights for the score (they add up to 1).
_WEIGHTS = {"family": 0.3, "given": 0.2, "birthDate": 0.3, "postcode": 0.2}
# Score bands per grade, so a higher grade always scores higher.
_BANDS = {"certain": (1.0, 1.0), "probable": (0.8, 0.99), "possible": (0.5, 0.79), "none": (0.0, 0.49)}
# $match Bundle.entry.search.extension:match-grade codes (R4 "MatchGrade" value set).
_MATCH_GRADE_CODE = {"certain": "certain", "probable": "probable", "possible": "possible", "none": "certainly-not"}


# --------------------------------------------------------------------------- NHS number


def normalise_nhs_number(value: str | None) -> str | None:
    """The 10 digits of an NHS number written with spaces or hyphens (`943 476 5919`), or None
    when the value is not ten digits. No checksum here: see `is_valid_nhs_number`."""
    if value is None:
        return None
    digits = re.sub(r"[\s-]", "", str(value))
    return digits if len(digits) == 10 and digits.isdigit() else None


def is_valid_nhs_number(value: str | None) -> bool:
    """Modulus 11 check (NHS Data Dictionary): weights 10..2 on the first nine digits,
    check = 11 - (sum mod 11); 11 -> 0; 10 -> the number is invalid. Spaces and hyphens are
    ignored. One digit repeated ten times passes the arithmetic but is never issued: invalid."""
    digits = normalise_nhs_number(value)
    if digits is None or len(set(digits)) == 1:
        return False
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1)))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(digits[9])


def is_test_nhs_number(value: str | None) -> bool:
    """9-prefixed numbers are never issued to patients (999 000 0000 - 999 999 9999 is the test
    range; NHS England sandboxes use other 9-prefixed numbers). Production feeds may refuse them."""
    digits = normalise_nhs_number(value)
    return digits is not None and digits.startswith("9")


# --------------------------------------------------------------------------- demographics


def _words(value: str) -> list[str]:
    """Casefolded words with accents and punctuation removed (`O'Brien-Smith` stays one word)."""
    decomposed = unicodedata.normalize("NFKD", value)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    words = (re.sub(r"[\W_]", "", w) for w in plain.split())
    return [w for w in words if w]


def _without_honorifics(words: list[str]) -> list[str]:
    """Titles dropped, unless nothing else is left (`Lord` is a surname too)."""
    kept = [w for w in words if w not in _HONORIFICS]
    return kept or words


def normalise_name(value: str | None) -> str | None:
    """Casefolded, accents stripped, punctuation removed, honorifics dropped: `Mrs  O'Brien-Smith`
    -> `obriensmith`, `Zoë` -> `zoe`. None when nothing is left."""
    if not value:
        return None
    return "".join(_without_honorifics(_words(str(value)))) or None


def normalise_given(value: str | list[str] | None) -> str | None:
    """The first given name, normalised (`["Mary Ann"]` -> `mary`, `Jean-Paul` -> `jean`): middle
    names are recorded too unevenly across partners to compare."""
    if isinstance(value, list):
        value = " ".join(v for v in value if v)
    if not value:
        return None
    words = _without_honorifics(_words(value.replace("-", " ")))
    return words[0] if words else None


def normalise_postcode(value: str | None) -> str | None:
    """A UK postcode as outward + inward code with one space, upper case (`ls11ab` -> `LS1 1AB`);
    None when the value is not shaped like a postcode."""
    if not value:
        return None
    compact = re.sub(r"\s+", "", str(value)).upper()
    m = _POSTCODE.match(compact)
    return f"{m.group(1)} {m.group(2)}" if m else None


def normalise_birth_date(value: str | date | None) -> str | None:
    """`YYYY-MM-DD`, from a date, a datetime or an ISO string (a FHIR birthDate); None when the
    value is partial (`1940`, `1940-03`) or not a date."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()[:10]
    try:
        return date.fromisoformat(text).isoformat() if len(text) == 10 else None
    except ValueError:
        return None


# --------------------------------------------------------------------------- reading a Patient


def nhs_numbers(patient: dict) -> set[str]:
    """The Modulus-11-valid NHS numbers on a Patient resource."""
    out = set()
    for ident in patient.get("identifier") or []:
        if ident.get("system") == NHS_NUMBER_SYSTEM and is_valid_nhs_number(ident.get("value")):
            out.add(normalise_nhs_number(ident["value"]))
    return out


def _official_name(patient: dict) -> dict:
    names = patient.get("name") or []
    for name in names:
        if name.get("use") in (None, "official", "usual"):
            return name
    return names[0] if names else {}


def demographics(patient: dict) -> dict[str, str | None]:
    """The normalised fields that matching compares."""
    name = _official_name(patient)
    postcodes = [normalise_postcode(a.get("postalCode")) for a in patient.get("address") or []]
    return {
        "family": normalise_name(name.get("family")),
        "given": normalise_given(name.get("given")),
        "birthDate": normalise_birth_date(patient.get("birthDate")),
        "postcode": next((p for p in postcodes if p), None),
    }


def demographic_key(patient: dict) -> str | None:
    """`family|given|birthDate|postcode`, normalised, for an index lookup of probable matches;
    None unless all four are present. Two Patients with equal keys are a probable match."""
    d = demographics(patient)
    if not all(d.values()):
        return None
    return "|".join(d[k] for k in ("family", "given", "birthDate", "postcode"))  # type: ignore[misc]


# --------------------------------------------------------------------------- grading


@dataclass(frozen=True)
class MatchResult:
    grade: str  # certain | probable | possible | none
    score: float  # 0..1, higher is surer; each grade has its own band
    reasons: list[str] = field(default_factory=list)

    @property
    def match_grade(self) -> str:
        """The `match-grade` extension code for $match: certain | probable | possible | certainly-not."""
        return _MATCH_GRADE_CODE[self.grade]

    def search(self) -> dict:
        """`Bundle.entry.search` for a $match response."""
        return {"extension": [{"url": MATCH_GRADE_URL, "valueCode": self.match_grade}],
                "mode": "match", "score": self.score}


def _scored(grade: str, agreement: float, reasons: list[str]) -> MatchResult:
    low, high = _BANDS[grade]
    return MatchResult(grade, round(low + (high - low) * agreement, 3), reasons)


def match_grade(incoming: dict, candidate: dict) -> MatchResult:
    """How sure we are that two Patient resources are one person (see the module docstring)."""
    ours, theirs = nhs_numbers(incoming), nhs_numbers(candidate)
    a, b = demographics(incoming), demographics(candidate)
    agree = [k for k in _WEIGHTS if a[k] and a[k] == b[k]]
    differ = [k for k in _WEIGHTS if a[k] and b[k] and a[k] != b[k]]
    agreement = sum(_WEIGHTS[k] for k in agree)
    detail = [f"{k} equal" for k in agree] + [f"{k} differs" for k in differ]

    if ours and theirs:
        if ours & theirs:
            return MatchResult("certain", 1.0, ["NHS number equal", *detail])
        return MatchResult("none", 0.0, ["NHS numbers differ (both valid)", *detail])
    if ours or theirs:
        detail.insert(0, "NHS number on one side only")

    if len(agree) == len(_WEIGHTS):
        return _scored("probable", agreement, ["family, given, birthDate and postcode equal", *detail])
    same_birth = "birthDate" in agree
    if same_birth and ("family" in agree or {"given", "postcode"} <= set(agree)):
        return _scored("possible", agreement, detail)
    return _scored("none", agreement, detail or ["nothing to compare"])
