"""PV2 -> the expected discharge date on the Encounter.

PV2-9 (expected discharge date/time) is the ward's plan, not a fact (detail.md §5 item 5:
PV1-45 is the actual discharge). FHIR R4 Encounter has no element for it, so it travels in a
gateway extension; Active Recovery uses it to see discharges coming (A16 pending discharge, A08).
"""

from __future__ import annotations

from .model import GATEWAY, Context

EXPECTED_DISCHARGE_EXT = f"{GATEWAY}/StructureDefinition/expected-discharge-date"


def apply(ctx: Context) -> None:
    pv2 = ctx.segment("PV2")
    enc = ctx.out.encounter
    if pv2 is None or enc is None:
        return
    expected = ctx.time(pv2, 9)
    if expected:
        enc.setdefault("extension", []).append({"url": EXPECTED_DISCHARGE_EXT, "valueDateTime": expected})
