"""ZU1 (HL72UK "UK additional data") -> medically safe for discharge.

HL72UK A.3 Appendix A: ZU1-22 Medically Fit Indicator (Y/N), ZU1-24 Ready for Discharge (the
date the patient first became medically fit — not the discharge date). Mapped to the Interweave
(Yorkshire & Humber) extension MedicallySafeForDischarge: status ready | notready | unknown,
actualDate. ZU1-27 (NHS number tracing status) is read by pid.py.
"""

from __future__ import annotations

from .model import Context

MEDICALLY_SAFE_EXT = "https://fhir.interweavedigital.nhs.uk/R4/StructureDefinition/Extension-Interweave-MedicallySafeForDischarge"


def apply(ctx: Context) -> None:
    zu1 = ctx.segment("ZU1")
    enc = ctx.out.encounter
    if zu1 is None or enc is None:
        return
    fit = zu1.get(22).strip().upper()
    ready = ctx.time(zu1, 24)
    if not fit and not ready:
        return
    status = {"Y": "ready", "N": "notready"}.get(fit) or ("ready" if ready else "unknown")
    parts: list[dict] = [{"url": "status", "valueCode": status}]
    if ready:
        parts.append({"url": "actualDate", "valueDateTime": ready})
    enc.setdefault("extension", []).append({"url": MEDICALLY_SAFE_EXT, "extension": parts})
