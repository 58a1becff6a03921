"""MRG -> the identifiers of the patient record being retired by a merge (A40, A34).

HL72UK: in A40 PID-3 identifies the surviving patient and MRG-1 the non-survivor. Identifiers
are read exactly as PID-3's are, so the planner can look the retired record up by them; any
that also identify the survivor (typically the shared NHS number) are left out.
"""

from __future__ import annotations

from .errors import REQUIRED_FIELD_MISSING, SEGMENT_SEQUENCE
from .model import Context
from .pid import identifiers


def apply(ctx: Context) -> None:
    segments = ctx.msg.segments_named("MRG")
    if not segments:
        ctx.error("MRG", None, SEGMENT_SEQUENCE, "MRG segment is missing (merge needs the retired identifiers)")
        return
    survivor = set(ctx.out.patient_keys)
    keys: list[tuple[str, str]] = []
    for sequence, mrg in enumerate(segments, 1):
        if not mrg.get(1):
            ctx.error("MRG", 1, REQUIRED_FIELD_MISSING, "MRG-1 (prior patient identifier list) is empty", sequence)
            continue
        for identifier in identifiers(ctx, mrg, 1, sequence):
            key = (identifier["system"], identifier["value"])
            if key not in survivor and key not in keys:
                keys.append(key)
    ctx.out.merge_from = keys
