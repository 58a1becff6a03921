"""HL7 v2 ADT -> FHIR R4 UK Core resources (Patient, Encounter, Condition, ServiceRequest).

Public API:
- `map_adt(msg, feeds, codes)` -> `AdtMapping` (what one message says; see model.py)
- `ConceptMaps.load(dir)`, `load_concept_maps(dir)`, `translate(conceptmap, code, system)`
- `FeedConfig.load(dir)` (per-sender settings and the referral trigger table)
The planner that turns an AdtMapping into a FHIR transaction is `gateway.adapters.hl7v2.plan`.
"""

from .adt import EVENTS, map_adt
from .codes import ConceptMaps, Coding, load_concept_maps, translate
from .errors import AckError
from .feeds import Feed, FeedConfig
from .model import (CONDITION_REF, ENCOUNTER_REF, LAST_EVENT_URL, PATIENT_REF, AdtMapping)
from .referral import ReferralTriggers

__all__ = [
    "map_adt", "EVENTS", "AdtMapping", "AckError", "ConceptMaps", "Coding", "load_concept_maps", "translate",
    "Feed", "FeedConfig", "ReferralTriggers", "PATIENT_REF", "ENCOUNTER_REF", "CONDITION_REF", "LAST_EVENT_URL",
]
