"""One person across sources: NHS number checks, normalisation and match grades."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.adapters.community import read_community_file
from gateway.adapters.council import read_council_file
from gateway.pipeline.identity import (
    MATCH_GRADE_URL, demographic_key, is_test_nhs_number, is_valid_nhs_number, match_grade, normalise_birth_date,
    normalise_given, normalise_name, normalise_nhs_number, normalise_postcode,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
NHS = "https://fhir.nhs.uk/Id/nhs-number"


def patient(nhs: str | None = None, family: str | None = "Holroyd", given: list[str] | None = None,
            birth: str | None = "1938-05-14", postcode: str | None = "LS6 2QT") -> dict:
    out: dict = {"resourceType": "Patient", "identifier": [],
                 "name": [{"family": family, "given": given or ["Margaret"]}]}
    if nhs:
        out["identifier"].append({"system": NHS, "value": nhs})
    if birth:
        out["birthDate"] = birth
    if postcode:
        out["address"] = [{"postalCode": postcode}]
    return out


# --------------------------------------------------------------------------- NHS number


@pytest.mark.parametrize("number", ["9434765919", "9912003888", "9449305552", "9413946000", "943 476 5919",
                                    "943-476-5919", "9990000107"])
def test_valid_nhs_numbers(number: str) -> None:
    assert is_valid_nhs_number(number)


@pytest.mark.parametrize("number", [
    "9434765918",  # wrong check digit
    "9990000108",
    "1111111111",  # repeated digit: passes the arithmetic, never issued
    "0000000000",
    "943476591",  # nine digits
    "94347659190",
    "94347659l9",
    "",
    None,
])
def test_invalid_nhs_numbers(number) -> None:
    assert not is_valid_nhs_number(number)


def test_check_digit_ten_means_no_valid_number_exists() -> None:
    # A stem whose check works out at 10 has no valid tenth digit.
    stem = next(s for s in (f"40000{i:04d}" for i in range(10000))
                if 11 - sum(int(d) * w for d, w in zip(s, range(10, 1, -1))) % 11 == 10)
    assert not any(is_valid_nhs_number(stem + str(d)) for d in range(10))


def test_check_eleven_becomes_zero() -> None:
    stem = next(s for s in (f"40000{i:04d}" for i in range(10000))
                if sum(int(d) * w for d, w in zip(s, range(10, 1, -1))) % 11 == 0)
    assert is_valid_nhs_number(stem + "0")


def test_nhs_number_normalisation_and_test_range() -> None:
    assert normalise_nhs_number(" 999 000 0107 ") == "9990000107"
    assert normalise_nhs_number("999000010") is None
    assert is_test_nhs_number("999 000 0107")
    assert not is_test_nhs_number("4857773456")


# --------------------------------------------------------------------------- demographics


@pytest.mark.parametrize("raw, expected", [
    ("ls62qt", "LS6 2QT"), ("LS6 2QT", "LS6 2QT"), (" ls6  2qt ", "LS6 2QT"), ("LS12 3AB", "LS12 3AB"),
    ("ec1a1bb", "EC1A 1BB"), ("W1A 0AX", "W1A 0AX"), ("M1 1AE", "M1 1AE"),
    ("LEEDS 6", None), ("LS6", None), ("", None), (None, None), ("LS6 2QTT", None),
])
def test_postcode_outward_inward(raw, expected) -> None:
    assert normalise_postcode(raw) == expected


def test_names_compare_without_case_accents_punctuation_or_titles() -> None:
    assert normalise_name("HOLROYD") == normalise_name("holroyd") == "holroyd"
    assert normalise_name("Mrs O'Brien-Smith") == normalise_name("obrien smith") == "obriensmith"
    assert normalise_name("Brontë") == "bronte"
    assert normalise_name("Lord") == "lord"  # a surname, not only a title
    assert normalise_name("  ") is None
    assert normalise_given(["Margaret Ann"]) == normalise_given("MARGARET") == "margaret"
    assert normalise_given("Dr Zoë") == "zoe"
    assert normalise_given("Jean-Paul") == "jean"


def test_birth_dates() -> None:
    assert normalise_birth_date("1938-05-14") == "1938-05-14"
    assert normalise_birth_date("1938-05-14T00:00:00") == "1938-05-14"
    assert normalise_birth_date("1938") is None
    assert normalise_birth_date("1938-02-30") is None


def test_demographic_key() -> None:
    a = patient(family="HOLROYD", given=["Margaret", "Ann"], postcode="ls62qt")
    b = patient(family="Holroyd", given=["Margaret"], postcode="LS6 2QT")
    assert demographic_key(a) == demographic_key(b) == "holroyd|margaret|1938-05-14|LS6 2QT"
    assert demographic_key(patient(postcode=None)) is None
    assert demographic_key(patient(birth=None)) is None


# --------------------------------------------------------------------------- grades


def test_equal_valid_nhs_numbers_are_certain_whatever_the_spelling() -> None:
    result = match_grade(patient("9990000107", family="HOLROYD"), patient("999 000 0107", family="Holroyd-Smith"))
    assert result.grade == "certain" and result.score == 1.0
    assert "NHS number equal" in result.reasons
    assert result.match_grade == "certain"


def test_different_valid_nhs_numbers_are_never_a_match() -> None:
    result = match_grade(patient("9990000107"), patient("9990000174"))  # identical demographics otherwise
    assert result.grade == "none" and result.score == 0.0
    assert result.match_grade == "certainly-not"
    assert result.search() == {"extension": [{"url": MATCH_GRADE_URL, "valueCode": "certainly-not"}],
                               "mode": "match", "score": 0.0}


def test_an_invalid_nhs_number_is_not_compared() -> None:
    result = match_grade(patient("9990000108"), patient("9990000174"))
    assert result.grade == "probable"  # falls back to demographics, which agree


def test_all_four_demographics_equal_is_probable() -> None:
    result = match_grade(patient(family="HOLROYD", given=["Margaret", "Ann"], postcode="ls62qt"), patient("9990000107"))
    assert result.grade == "probable"
    assert 0.8 <= result.score < 1.0
    assert "NHS number on one side only" in result.reasons


def test_partial_agreement_is_possible() -> None:
    moved = match_grade(patient(postcode="LS12 3AB"), patient())
    assert moved.grade == "possible" and "postcode differs" in moved.reasons
    married = match_grade(patient(family="Pickersgill"), patient())  # given + birth date + postcode
    assert married.grade == "possible"
    assert 0.5 <= moved.score < 0.8


def test_too_little_agreement_is_none() -> None:
    assert match_grade(patient(birth="1940-01-01", postcode="LS12 3AB"), patient()).grade == "none"
    assert match_grade(patient(family="Akhtar", given=["Nasreen"]), patient()).grade == "none"


def test_grades_are_ordered_by_score() -> None:
    scores = [match_grade(patient("9990000107"), patient("9990000107")).score,
              match_grade(patient(), patient()).score,
              match_grade(patient(postcode="LS12 3AB"), patient()).score,
              match_grade(patient(birth="1940-01-01"), patient()).score]
    assert scores == sorted(scores, reverse=True)
    assert len(set(scores)) == 4


def test_council_and_community_records_of_one_person() -> None:
    """The same person as the council and the community trust know her: certain on NHS number;
    without it, the demographics still make a probable match for review, never a merge."""
    _, council_rows = read_council_file(FIXTURES / "council" / "cld_valid.csv", ROOT / "mappings" / "council-cld.json")
    _, community_rows = read_community_file(FIXTURES / "community" / "csds_valid.csv",
                                            ROOT / "mappings" / "community-csds.json")
    council = next(r.patient for r in council_rows)
    community = next(r.patient for r in community_rows)
    assert match_grade(community, council).grade == "certain"
    assert demographic_key(community) == demographic_key(council)
    without_nhs = {**community, "identifier": [i for i in community["identifier"] if i["system"] != NHS]}
    assert match_grade(without_nhs, council).grade == "probable"
