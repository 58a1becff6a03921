"""Synthetic people and their Active Recovery journeys: invented, deterministic, Leeds-shaped.

Everything comes from one `random.Random(seed)`: the same seed and number of people give the
same people, the same journeys and so byte-identical files, whatever day the demo runs. Nothing
here is a real person: names are drawn from common lists, NHS numbers from the issued 4xx/6xx
ranges (Modulus 11 valid, so the gateway accepts them) but generated, phone numbers from the
Ofcom drama range (0113 496 0xxx), ODS / CQC / practice codes are placeholders.

A journey follows the city's service (see the shared seeds): an emergency admission, a ward
stay, a discharge whose destination and PAS flag (ZU1-14 or an OBX "REF" onward referral, as
`mappings/hl7v2-referral-triggers.json` reads them) raise the Active Recovery referral, then the
council's Request -> Assessment -> Service (-> Review) for reablement or a recovery-hub bed, and
community therapy's referral -> visits -> care plan with goals -> discharge.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

# Active Recovery went citywide on 1 December 2025; admissions fall in its first winter.
FIRST_ADMISSION = datetime(2025, 12, 1, 0, 0)
ADMISSION_DAYS = 90
EXTRACT_END = date(2026, 5, 31)  # council and community extracts cover up to this day
EXTRACT_START = date(2025, 12, 1)
LA_CODE = "E08000035"  # the city's ONS code, as CLD submissions carry it
COMMUNITY_ODS = "RY6"  # community health trust (placeholder use of an ODS-style code)

FEMALE = ["Margaret", "Dorothy", "Joan", "Jean", "Barbara", "Patricia", "Betty", "Doreen", "Eileen", "Irene",
          "Sheila", "Brenda", "Maureen", "Pauline", "Kathleen", "Winifred", "Edna", "Mavis", "Sylvia", "Audrey",
          "Valerie", "Shirley", "Elsie", "Marjorie", "Hilda", "Gladys", "Nasreen", "Parveen", "Gurdev", "Mary",
          "Ann", "Christine", "Janet", "Carol", "Hazel", "Rita", "Norma", "Vera", "Olive", "Iris"]
MALE = ["John", "David", "Michael", "Peter", "Brian", "Alan", "Kenneth", "Derek", "Arthur", "Ronald", "Geoffrey",
        "Keith", "Malcolm", "Trevor", "Barry", "Stanley", "Harold", "Dennis", "Roy", "Mohammed", "Abdul", "Tariq",
        "Winston", "Desmond", "Frank", "George", "Albert", "Norman", "Raymond", "Gordon", "Eric", "Leslie",
        "Colin", "Graham", "Terence", "Bernard", "Clifford", "Jagdish", "Patrick", "Tadeusz"]
MIDDLE_F = ["Ann", "Mary", "Elizabeth", "Jean", "May", "Rose", "Margaret", "", "", ""]
MIDDLE_M = ["James", "William", "Edward", "John", "Arthur", "Henry", "Roy", "", "", ""]
FAMILY = ["Holroyd", "Sutcliffe", "Ackroyd", "Pickersgill", "Barraclough", "Hepworth", "Illingworth", "Wainwright",
          "Greenwood", "Mitchell", "Thornton", "Walker", "Booth", "Firth", "Shaw", "Haigh", "Crowther", "Dawson",
          "Atkinson", "Robinson", "Akhtar", "Hussain", "Khan", "Ahmed", "Singh", "Patel", "Campbell", "Murphy",
          "O'Connor", "Kowalski", "Brown", "Clarke", "Lister", "Exley", "Senior", "Spencer", "Ramsden", "Hirst",
          "Bottomley", "Gledhill", "Whiteley", "Stead", "Marsden", "Pickles", "Sykes", "Hainsworth", "Fawcett",
          "Kershaw", "Longbottom", "Ogden", "Rhodes", "Tordoff", "Wilkinson", "Wood", "Bailey", "Brook"]
# Postcode districts LS1-LS29 and the places in them
DISTRICTS = {
    1: "City Centre", 2: "Woodhouse", 3: "Burley", 4: "Kirkstall", 5: "Hawksworth", 6: "Headingley",
    7: "Chapel Allerton", 8: "Roundhay", 9: "Burmantofts", 10: "Belle Isle", 11: "Beeston", 12: "Armley",
    13: "Bramley", 14: "Seacroft", 15: "Cross Gates", 16: "Cookridge", 17: "Moortown", 18: "Horsforth",
    19: "Yeadon", 20: "Guiseley", 21: "Otley", 22: "Wetherby", 23: "Boston Spa", 24: "Tadcaster",
    25: "Garforth", 26: "Rothwell", 27: "Morley", 28: "Pudsey", 29: "Ilkley",
}
STREETS = ["Beech Grove", "Town Street", "Otley Road", "Station Road", "Church Lane", "Moor View", "Victoria Road",
           "Park Avenue", "Oak Road", "Chapel Street", "Back Lane", "Green Lane", "Westfield Terrace", "Elm Crescent",
           "Manor Drive", "Ring Road", "Mill Lane", "Hollin Lane", "Broad Lane", "Cross Street", "The Avenue",
           "Springfield Mount", "Woodland View", "Aire Street", "High Street", "Main Street"]
# Postcode inward letters never use C I K M O V
INWARD = "ABDEFGHJLNPQRSTUWXYZ"
WARDS = [("ELDERLY CARE 3", "430"), ("ELDERLY CARE 5", "430"), ("ORTHOGERIATRIC 2", "110"), ("STROKE UNIT", "328"),
         ("RESPIRATORY 6", "340"), ("CARDIOLOGY 4", "320"), ("GENERAL MEDICINE 9", "300")]
ADMITTING = "ACUTE MEDICAL UNIT"
SITES = ["RR801", "RR813"]
CONSULTANTS = ["C2893004^OKONJO^EMEKA^^^DR", "C4512345^ORMEROD^JANE^^^DR", "C3456789^SINGH^RAVI^^^DR",
               "C6123478^BRADSHAW^HELEN^^^DR", "C7098123^MAHMOOD^AISHA^^^DR", "C5678901^CROSSLEY^IAN^^^DR"]
DIAGNOSES = [  # ICD-10 as NHS PAS send it, the reason someone ends up needing Active Recovery
    ("S72.00", "Fracture of neck of femur, closed", "ORTHOGERIATRIC 2"),
    ("R29.6", "Tendency to fall, not elsewhere classified", None),
    ("J18.9", "Pneumonia, unspecified", "RESPIRATORY 6"),
    ("N39.0", "Urinary tract infection, site not specified", None),
    ("I63.9", "Cerebral infarction, unspecified", "STROKE UNIT"),
    ("J44.1", "Chronic obstructive pulmonary disease with acute exacerbation, unspecified", "RESPIRATORY 6"),
    ("I50.9", "Heart failure, unspecified", "CARDIOLOGY 4"),
    ("F05.9", "Delirium, unspecified", None),
    ("E86.X", "Volume depletion", None),
]
ETHNICITY = [  # (share, UK Core letter for HL7/CSDS, CLD wording)
    (80, "A", "White: English, Welsh, Scottish, Northern Irish or British"),
    (4, "B", "White: Irish"),
    (3, "C", "White: Any other White background"),
    (5, "J", "Asian or Asian British: Pakistani"),
    (3, "H", "Asian or Asian British: Indian"),
    (3, "M", "Black, Black British, Caribbean or African: Caribbean"),
    (2, "Z", "No data: Undeclared or not known"),
]
SUPPORT_REASONS = ["Physical support: Personal care support", "Physical support: Access and mobility only",
                   "Support with memory and cognition"]
NEEDS = ["needs help with washing and dressing", "unsteady on stairs, lives alone", "needs support to manage meals",
         "low confidence after a fall", "carer needs a break; help with personal care", "needs help getting in and out of bed"]
HUBS = [  # council recovery hubs: (CQC location placeholder, component, team)
    ("1-1010000001", "Short Term Nursing Care", "RecoveryHub@SouthLeeds"),
    ("1-1010000002", "Short Term Nursing Care", "RecoveryHub@NorthWestLeeds"),
    ("1-1010000003", "Short Term Residential Care", "RecoveryHub@EastLeeds"),
]
REABLEMENT_PROVIDER = "1-1010000010"  # Skills for Independent Living (placeholder CQC location)
THERAPY_TEAMS = {"south": "ART-S", "west": "ART-W", "north": "ART-N"}
GOALS = [
    "Walk to the end of the street and back with a stick",
    "Make a hot drink and carry it to the lounge safely",
    "Get in and out of bed without help",
    "Manage the stairs at home with one rail",
    "Wash and dress independently",
    "Get to the local shop and back",
    "Use the bath board safely",
    "Prepare a simple meal",
    "Go back to the lunch club at the community centre",
]


@dataclass
class Journey:
    pathway: str  # home-reablement | recovery-hub | community-therapy | none
    therapy: bool  # community therapy alongside (Active Recovery's joint offer)
    destination: str  # NHS DD discharge destination
    flag_style: str  # zu1 | obx | none
    admit: datetime
    transfer: datetime | None
    discharge: datetime
    ward: str
    specialty: str
    site: str
    consultant: str
    diagnosis: tuple[str, str]
    hub: tuple[str, str, str] | None
    reablement_days: int
    therapy_days: int
    service_outcome: str
    goals: list[str]
    barthel_start: int
    barthel_end: int


@dataclass
class Person:
    n: int
    nhs: str
    mrn: str
    spell: str
    council_id: str
    community_id: str
    family: str
    given: str
    middle: str
    title: str
    sex: str  # M | F
    birth: date
    house: str
    street: str
    district: int
    postcode: str
    phone: str
    gp_code: str
    gp_name: str
    ethnicity: tuple[str, str]
    support_reason: str
    need: str
    team: str
    journey: Journey
    # The council sent this person's record without the NHS number: the gateway must not merge it
    # on name, birth date and postcode alone, and lists it for review instead.
    council_without_nhs: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def locality(self) -> str:
        return DISTRICTS[self.district]

    def age_on(self, day: date) -> int:
        return day.year - self.birth.year - ((day.month, day.day) < (self.birth.month, self.birth.day))

    @property
    def sources(self) -> set[str]:
        out = {"hospital"}
        if self.journey.pathway in ("home-reablement", "recovery-hub"):
            out.add("council")
        if self.journey.therapy:
            out.add("community")
        return out


def nhs_number(rng: random.Random, used: set[str]) -> str:
    """A Modulus-11-valid number in the issued 4xx or 6xx ranges, not used before."""
    while True:
        first = rng.choice("46")
        digits = first + "".join(str(rng.randrange(10)) for _ in range(8))
        total = sum(int(d) * w for d, w in zip(digits, range(10, 1, -1)))
        check = 11 - total % 11
        check = 0 if check == 11 else check
        if check == 10:
            continue
        number = digits + str(check)
        if number not in used and len(set(number)) > 1:
            used.add(number)
            return number


def _postcode(rng: random.Random, district: int) -> str:
    return f"LS{district} {rng.randrange(1, 10)}{rng.choice(INWARD)}{rng.choice(INWARD)}"


def _birth(rng: random.Random, admit: datetime) -> date:
    # ages 65-98 at admission, most people in their eighties
    age = int(round(rng.triangular(65, 98.9, 84)))
    age = min(max(age, 65), 98)
    born_year = admit.year - age - 1
    born = date(born_year, 1, 1) + timedelta(days=rng.randrange(365))
    while (admit.date().year - born.year - ((admit.month, admit.day) < (born.month, born.day))) != age:
        born += timedelta(days=1 if (admit.date().year - born.year) > age else -1)
    return born


def _pick(rng: random.Random, weighted: list[tuple[int, ...]]):
    total = sum(w[0] for w in weighted)
    x = rng.randrange(total)
    for item in weighted:
        x -= item[0]
        if x < 0:
            return item
    return weighted[-1]


def _journey(rng: random.Random, n: int) -> Journey:
    admit = FIRST_ADMISSION + timedelta(days=rng.randrange(ADMISSION_DAYS), hours=rng.randrange(6, 23),
                                        minutes=rng.choice([0, 10, 15, 25, 30, 40, 45, 50]))
    diagnosis = rng.choice(DIAGNOSES)
    ward = diagnosis[2] or rng.choice([w for w, _ in WARDS if w.startswith(("ELDERLY", "GENERAL"))])
    specialty = dict(WARDS)[ward]
    stay = rng.choice([2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 21])
    transfer = admit + timedelta(hours=rng.randrange(6, 30)) if rng.random() < 0.6 else None
    discharge = (admit + timedelta(days=stay)).replace(hour=rng.randrange(10, 18), minute=rng.choice([0, 15, 30, 45]))
    # Pathways: roughly what the city's hubs, reablement and therapy teams see
    pathway, therapy = _pick(rng, [(40, "home-reablement", True), (12, "home-reablement", False),
                                   (16, "recovery-hub", True), (17, "community-therapy", True),
                                   (15, "none", False)])[1:]
    hub = rng.choice(HUBS) if pathway == "recovery-hub" else None
    if pathway == "home-reablement":
        destination = rng.choice(["19", "19", "19", "29"])
    elif pathway == "recovery-hub":
        destination = rng.choice(["65", "65", "54", "85"])
    elif pathway == "community-therapy":
        destination = "19"
    else:
        destination = rng.choice(["19", "19", "29", "54", "85"]) if rng.random() < 0.3 else "19"
    # 65 alone raises a hub referral; the others need the PAS flag (ZU1-14) or an OBX onward referral
    flag_style = "none" if pathway == "none" else ("obx" if rng.random() < 0.3 else "zu1")
    outcome = _pick(rng, [(62, "NFA: Support ended as planned"), (24, "Progress to support planning or services"),
                          (8, "Admitted to hospital"), (6, "NFA: Support declined")])[1]
    barthel_start = rng.randrange(35, 75, 5)
    goals = rng.sample(GOALS, rng.choice([2, 3, 3]))
    return Journey(pathway, therapy, destination, flag_style, admit, transfer, discharge, ward, specialty,
                   rng.choice(SITES), rng.choice(CONSULTANTS), diagnosis[:2], hub,
                   reablement_days=rng.choice([14, 18, 21, 24, 28, 35, 42]),
                   therapy_days=rng.choice([14, 21, 28, 35, 42]),
                   service_outcome=outcome, goals=goals, barthel_start=barthel_start,
                   barthel_end=min(100, barthel_start + rng.randrange(0, 40, 5)))


def make_people(count: int, seed: int = 2025) -> list[Person]:
    rng = random.Random(seed)
    used: set[str] = set()
    people = []
    for n in range(1, count + 1):
        journey = _journey(rng, n)
        sex = rng.choice("FFFM")  # more women than men among the oldest patients
        given = rng.choice(FEMALE if sex == "F" else MALE)
        middle = rng.choice(MIDDLE_F if sex == "F" else MIDDLE_M)
        family = rng.choice(FAMILY)
        title = ("MRS" if rng.random() < 0.6 else "MISS") if sex == "F" else "MR"
        district = rng.randrange(1, 30)
        ethnicity = _pick(rng, ETHNICITY)[1:]
        region = "south" if district in (10, 11, 12, 13, 26, 27, 28) else "west" if district in (3, 4, 5, 18, 19, 20, 21, 29) else "north"
        person = Person(
            n=n, nhs=nhs_number(rng, used), mrn=f"LTH{3000000 + n * 37:07d}", spell=f"SP{journey.admit:%y}{n:06d}",
            council_id=f"LA{50000000 + n * 13:08d}", community_id=f"{1003000000 + n * 7}",
            family=family, given=given, middle=middle, title=title, sex=sex, birth=_birth(rng, journey.admit),
            house=str(rng.randrange(1, 140)), street=rng.choice(STREETS), district=district,
            postcode=_postcode(rng, district), phone=f"0113 496 0{rng.randrange(1000):03d}",
            gp_code=f"B86{600 + district * 7 % 100:03d}", gp_name=f"{DISTRICTS[district].upper()} MEDICAL PRACTICE",
            ethnicity=ethnicity, support_reason=rng.choice(SUPPORT_REASONS), need=rng.choice(NEEDS),
            team=THERAPY_TEAMS[region], journey=journey,
        )
        # About one council record in twelve arrives without the NHS number (CLD allows it)
        if "council" in person.sources and rng.random() < 0.09:
            person.council_without_nhs = True
        people.append(person)
    return people


def showcase(people: list[Person]) -> Person | None:
    """The person to open first: hospital, council and community all in one record."""
    for person in people:
        j = person.journey
        if person.sources == {"hospital", "council", "community"} and not person.council_without_nhs \
                and j.pathway == "home-reablement" and j.transfer is not None:
            return person
    return next((p for p in people if p.sources == {"hospital", "council", "community"}
                 and not p.council_without_nhs), None)
