"""Micro-benchmark: structural validator vs fhir.resources R4B vs orjson.loads.

Run ``python bench/bench_validate.py``.  Prints µs per resource for

* ``orjson.loads`` of the bytes (the floor any JSON-accepting path pays),
* ``orjson.loads`` + ``validate_resource`` (what the gateway does),
* ``validate_resource`` alone on the already-parsed dict,
* ``fhir.resources.R4B`` ``model_validate`` on the parsed dict (if installed).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.fhir.structure import samples  # noqa: E402
from gateway.fhir.structure.validate import validate_resource  # noqa: E402


def _count_elements(node: Any) -> int:
    if isinstance(node, dict):
        return sum(1 + _count_elements(v) for k, v in node.items() if k != "resourceType")
    if isinstance(node, list):
        return sum(_count_elements(v) for v in node)
    return 0


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


def main() -> None:
    try:
        from fhir.resources.R4B import get_fhir_model_class
    except ImportError:  # fhir.resources is a test-only dependency
        get_fhir_model_class = None

    cases = samples.all_valid()
    validate_resource(cases["encounter"])  # load and compile the type table
    header = f"{'resource':36} {'elems':>5} {'loads':>8} {'loads+val':>10} {'validate':>9} {'fhir.res':>9}"
    print(header)
    print("-" * len(header))
    for name, resource in cases.items():
        raw = orjson.dumps(resource)
        assert validate_resource(orjson.loads(raw)) == [], name
        parsed = orjson.loads(raw)
        loads = _per_call_us(lambda: orjson.loads(raw))
        both = _per_call_us(lambda: validate_resource(orjson.loads(raw)))
        ours = _per_call_us(lambda: validate_resource(parsed))
        theirs = float("nan")
        if get_fhir_model_class is not None:
            model = get_fhir_model_class(resource["resourceType"])
            model.model_validate(parsed)
            theirs = _per_call_us(lambda: model.model_validate(parsed), min_time=1.0)
        print(f"{name:36} {_count_elements(resource):5d} {loads:8.2f} {both:10.2f} {ours:9.2f} {theirs:9.1f}")
    print("(µs per resource; best of 5 runs)")


if __name__ == "__main__":
    main()
