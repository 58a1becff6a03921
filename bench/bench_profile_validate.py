"""Micro-benchmark: profile validation of a typical Encounter, beside structural-only and JSON parsing.

Run ``python bench/bench_profile_validate.py``. The Encounter is what the HL7 v2 mapper writes for
an ADT A03 (tests/fixtures/hl7v2/adt_a03_v24.hl7: a finished hospital stay with participants,
discharge method and destination, the gateway's own extensions), checked against
ActiveRecovery-Encounter-HospitalStay and the UK Core Encounter digest it refines. Prints µs per
resource for

* ``orjson.loads`` of the bytes (the floor any JSON-accepting path pays),
* ``validate_resource`` (the structural check every write already does),
* ``Validator.validate`` with the profile (structure + profile + extensions: what $validate and a
  profile-checked write do), and the profile part alone,
* the write-time check with policy warn for a resource with no declared profile (the common case).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.conformance.policy import ProfilePolicy, WriteChecker  # noqa: E402
from gateway.conformance.registry import ProfileRegistry  # noqa: E402
from gateway.conformance.validator import Validator  # noqa: E402
from gateway.fhir.structure.validate import validate_resource  # noqa: E402

PROFILE = "https://fhir.activerecovery.example/StructureDefinition/ActiveRecovery-Encounter-HospitalStay"


def _per_call_us(fn: Callable[[], Any], min_time: float = 0.3) -> float:
    """Best-of-5 mean per call, after sizing the loop to ``min_time`` seconds."""
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        took = time.perf_counter() - start
        if took >= min_time / 5:
            break
        loops *= 2
    best = took
    for _ in range(4):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / loops * 1e6


def typical_encounter() -> dict:
    from gateway.adapters.hl7v2.er7 import parse_message
    from gateway.adapters.hl7v2.mapping import ConceptMaps, FeedConfig, map_adt
    from gateway.adapters.hl7v2.plan import plan_writes

    raw = (ROOT / "tests" / "fixtures" / "hl7v2" / "adt_a03_v24.hl7").read_text().replace("\n", "\r")
    msg = parse_message(raw)
    msg = msg[0] if isinstance(msg, list) else msg
    mapping = map_adt(msg, FeedConfig.load(ROOT / "mappings"), ConceptMaps.load(ROOT / "mappings"))
    enc = next(e["resource"] for e in plan_writes(mapping, {}) if e["resource"]["resourceType"] == "Encounter")
    enc["subject"] = {"reference": "Patient/example"}
    enc["meta"] = {"profile": [PROFILE]}
    return enc


def main() -> None:
    enc = typical_encounter()
    raw = orjson.dumps(enc)
    t0 = time.perf_counter()
    validator = Validator(ProfileRegistry.from_folder(ROOT / "profiles"))
    issues = validator.validate(enc)
    first_ms = (time.perf_counter() - t0) * 1e3
    assert not [i for i in issues if i.severity == "error"], issues
    plain = {k: v for k, v in enc.items() if k != "meta"}
    checker = WriteChecker(ProfilePolicy("warn"), validator)
    rows = [
        ("orjson.loads", _per_call_us(lambda: orjson.loads(raw))),
        ("structural validate_resource", _per_call_us(lambda: validate_resource(enc))),
        ("profile only (HospitalStay + UK Core digest + extensions)",
         _per_call_us(lambda: validator.validate(enc, structural=False))),
        ("structure + profile (Validator.validate)", _per_call_us(lambda: validator.validate(enc))),
        ("write check, no profile declared (policy warn)", _per_call_us(lambda: checker.check(plain))),
    ]
    print(f"Encounter: {len(raw)} bytes JSON, {len(issues)} issues (warnings/information); "
          f"registry load + first validation (compiles the profiles): {first_ms:.1f} ms")
    width = max(len(name) for name, _ in rows)
    for name, us in rows:
        print(f"{name:<{width}}  {us:9.1f} µs  {1e6 / us:10.0f} /s")


if __name__ == "__main__":
    main()
