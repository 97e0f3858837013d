"""R8 for compliance-svc (法制机构归口管理、指导、监督): who reads findings, decides, runs spot checks.

- a unit's officers and head read their own unit's findings; the legal affairs office (LEGAL_OFFICE)
  and inspectors read every unit's;
- only the legal affairs office acknowledges and resolves findings (it supervises every unit);
- a unit head draws its unit's spot checks, the legal affairs office any unit's; a review is recorded
  only by the reviewer the spot check assigned (checked by the handler).

Declared with servicekit.policy (one policy for every service); the unit is checked by the handlers.
"""

from __future__ import annotations

import enum

from servicekit.policy import UNIT_MEMBERS, Grant, Resource, Role


class Action(enum.StrEnum):
    READ_FINDINGS = "read findings"
    DECIDE_FINDING = "acknowledge or resolve a finding"
    DRAW_SPOT_CHECK = "draw a spot check"
    READ_SPOT_CHECK = "read spot checks"
    RECORD_REVIEW = "record a spot-check review"


FINDINGS: Resource[Action] = Resource(
    name="finding",
    plural="findings",
    service="compliance-svc",
    grants={
        Action.READ_FINDINGS: Grant.read(UNIT_MEMBERS | {Role.SERVICE}),
        Action.DECIDE_FINDING: Grant.everywhere(
            {Role.LEGAL_OFFICE}, note="the legal affairs office decides on every unit's findings"
        ),
        Action.DRAW_SPOT_CHECK: Grant.act({Role.UNIT_HEAD}, supervised=True),
        Action.READ_SPOT_CHECK: Grant.read(UNIT_MEMBERS),
        Action.RECORD_REVIEW: Grant.everywhere(
            UNIT_MEMBERS | {Role.LEGAL_OFFICE, Role.INSPECTOR},
            note="only the reviewer the spot check assigned (never the material's own officer)",
        ),
    },
)

RESOURCES = (FINDINGS,)
