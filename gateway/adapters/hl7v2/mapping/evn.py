"""EVN: when the event happened and when the sender recorded it.

HL72UK: EVN-2 is the system time the event was recorded; EVN-6 when it actually occurred (the
primary date for transfers and the fallback for missing admit/discharge times). EVN-1 is not
used in the UK (MSH-9.2 is the event). Times without an offset are Europe/London local time.
"""

from __future__ import annotations

from .model import Context


def apply(ctx: Context) -> None:
    evn = ctx.segment("EVN")
    msh = ctx.segment("MSH")
    recorded = ctx.time(evn, 2) if evn else None
    occurred = ctx.time(evn, 6) if evn else None
    sent = ctx.time(msh, 7)
    ctx.out.event_time = occurred or recorded or sent
    # Ordering uses the sender's recording sequence: a discharge keyed in the next morning with
    # a back-dated EVN-6 is still newer than the ward update typed in before it.
    ctx.out.recorded_time = recorded or sent or occurred
    ctx.out.transfer_time = occurred or recorded or sent
