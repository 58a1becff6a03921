"""PD1 -> Patient.generalPractitioner (registered GP practice and GP).

HL72UK §3.5.8: PD1-3 (XON) is the registered practice, its ODS code in component 3 (v2.4 "ID
number"; v2.5 moved it to component 10, read as a fallback); PD1-4 (XCN) is the registered GP's
national GMP code (`G` + 7 digits). Both become references by identifier: ODS organisation code
and UK Core's GMP number system.
"""

from __future__ import annotations

from .datatypes import GMP, organization_ref, person_display, staff_identifier
from .model import Context


def apply(ctx: Context) -> None:
    pd1 = ctx.segment("PD1")
    patient = ctx.out.patient
    if pd1 is None or patient is None:
        return
    refs: list[dict] = []
    practice = pd1.get(3, 0, 3) or pd1.get(3, 0, 10)
    if practice:
        refs.append(organization_ref(practice, pd1.get(3, 0, 1)))
    gp = pd1.get(4, 0, 1)
    if gp:
        identifier = staff_identifier(gp, GMP)  # a bare code in PD1-4 is a GP code by definition
        ref: dict = {"type": "Practitioner", "identifier": identifier}
        display = person_display(pd1, 4)
        if display:
            ref["display"] = display
        refs.append(ref)
    if refs:
        patient["generalPractitioner"] = refs
