"""One mapping per ADT event, composed from the segment mappers.

The table below is the whole story of which event reads which segments (in the spirit of the
FHIR-Converter's one-template-per-message-type). MSH and EVN always come first. Event semantics
follow HL72UK §3.4 and detail.md §1.1; what each action does to stored resources is plan.py's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import dg1, evn, mrg, msh, pd1, pid, pv1, pv2, referral, zu1
from .codes import ConceptMaps
from .errors import INTERNAL_ERROR, UNSUPPORTED_EVENT
from .feeds import FeedConfig
from .model import AdtMapping, Context

Step = Callable[[Context], None]


@dataclass(frozen=True)
class Event:
    action: str
    steps: tuple[Step, ...]


def _visit(status: str | None, required: bool = True) -> Step:
    def step(ctx: Context) -> None:
        pv1.apply(ctx, status, required)

    step.__name__ = f"pv1[{status}]"
    return step


PERSON = (pid.apply, pd1.apply)
EVENTS: dict[str, Event] = {
    "A01": Event("admit", (*PERSON, _visit("in-progress"), pv2.apply, zu1.apply, dg1.apply)),
    "A02": Event("transfer", (*PERSON, _visit("in-progress"), pv2.apply, zu1.apply)),
    "A03": Event("discharge", (*PERSON, _visit("finished"), pv2.apply, zu1.apply, dg1.apply, referral.apply)),
    "A04": Event("register", (*PERSON, _visit("in-progress"), pv2.apply, dg1.apply)),
    "A05": Event("pre-admit", (*PERSON, _visit("planned"), pv2.apply, dg1.apply)),
    "A14": Event("pre-admit", (*PERSON, _visit("planned"), pv2.apply, dg1.apply)),  # pending admit
    # A08 is visit-level, but PAS also send it for demographics only (no PV1-19): then Patient only.
    "A08": Event("update", (*PERSON, _visit(None, required=False), pv2.apply, zu1.apply, dg1.apply)),
    "A16": Event("update", (*PERSON, _visit(None), pv2.apply, zu1.apply)),  # pending discharge (PV2-9)
    "A25": Event("update", (*PERSON, _visit(None), pv2.apply, zu1.apply)),  # cancel pending discharge
    "A11": Event("cancel-admit", (*PERSON, _visit("entered-in-error"))),
    "A12": Event("cancel-transfer", (*PERSON, _visit("in-progress"))),
    "A13": Event("cancel-discharge", (*PERSON, _visit("in-progress"), pv2.apply, zu1.apply, dg1.apply)),
    "A28": Event("person-add", PERSON),
    "A31": Event("person-update", PERSON),
    "A40": Event("merge", (*PERSON, mrg.apply)),
    "A34": Event("merge", (*PERSON, mrg.apply)),  # deprecated form of A40, same MRG reading
}


def map_adt(msg, feeds: FeedConfig, codes: ConceptMaps, triggers=None) -> AdtMapping:
    """Map one parsed ADT message. Content problems come back in `errors` (for an AE ACK);
    the resources are still filled as far as the message allows, for the operator's view.

    `triggers` overrides the referral table loaded with `feeds` (tests, what-if runs).
    """
    feed = feeds.resolve(msg.sending_application, msg.sending_facility)
    event_code = (msg.trigger_event or "").strip().upper()
    spec = EVENTS.get(event_code)
    out = AdtMapping(event=event_code, action=spec.action if spec else "", event_time=None)
    ctx = Context(msg=msg, feed=feed, codes=codes, ods=feed.ods_code or (msg.sending_facility or "").strip(),
                  out=out, triggers=feeds.referral_triggers if triggers is None else triggers)
    msh.apply(ctx)
    if out.errors:
        return out  # wrong message type or version: the content is not ours to read
    evn.apply(ctx)
    if spec is None:
        ctx.error("MSH", 9, UNSUPPORTED_EVENT, f"ADT event {event_code!r} is not handled")
        return out
    for step in spec.steps:
        try:
            step(ctx)
        except Exception as exc:  # a mapper bug must become an AE with a reason, not a lost message
            ctx.error("MSH", None, INTERNAL_ERROR,
                      f"mapping step {getattr(step, '__module__', '')}.{step.__name__} failed: {exc!r}")
            break
    return out
