"""R8 (第八条 谁执法、谁记录、谁负责；法制机构归口管理、指导、监督): who may do what with a case.

- officers act in their own unit (open cases, record activities, incidents, documents, flags);
- unit heads approve their unit's stage changes (advance, return for reinvestigation, close, archive);
- archivists of a unit read its cases, complete the file of a closed case and archive it;
- the legal affairs office (LEGAL_OFFICE) reads and supervises every unit: it may flag a case, record an
  incident and record the legal review of a major decision in any unit, but it does not act for a unit;
- inspectors (INSPECTOR) read every unit's cases and act on none.

The rule and its role groups are servicekit.policy's (one policy for every service); this module
declares case-svc's resource with it. The gRPC layer lets a call through only when the caller holds one
of `ROLES_FOR[action]`; `authorize` then checks the unit. Every refusal is a `PermissionDenied` whose
message says why; a case of another unit answers PERMISSION_DENIED (docs/permissions.md).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from servicekit.errors import PermissionDenied
from servicekit.policy import UNIT_MEMBERS, Actor, Grant, Resource, Role

from case_svc.domain.model import Stage


class Action(enum.StrEnum):
    OPEN_CASE = "open a case"
    READ_CASE = "read cases"
    ADVANCE_STAGE = "advance the stage of a case"
    RETURN_FOR_REINVESTIGATION = "return a case for reinvestigation"
    CLOSE_CASE = "close a case"
    ARCHIVE_CASE = "archive a case"
    FLAG_CASE = "flag a case"
    AMEND_PARTICULARS = "amend the cause and parties of a case"
    RECORD_INCIDENT = "record an incident"
    RECORD_ACTIVITY = "record an activity"
    FILE_DOCUMENT = "file a document"
    RECORD_LEGAL_REVIEW = "record a legal review"
    READ_DOCUMENT = "read a document's content"


# R8 as data (servicekit.policy): the roles that may take each action on their own unit's cases, and on
# any unit's. Reads are open to every unit's readers (LEGAL_OFFICE, INSPECTOR); the legal affairs office
# supervises (flags, incidents, legal reviews) but never acts for a unit.
_MEMBERS_AND_ARCHIVIST = UNIT_MEMBERS | {Role.ARCHIVIST}
CASES: Resource[Action] = Resource(
    name="case",
    plural="cases",
    service="case-svc",
    grants={
        Action.OPEN_CASE: Grant.act(UNIT_MEMBERS),
        Action.READ_CASE: Grant.read(
            _MEMBERS_AND_ARCHIVIST,
            note="R16: from outside the owning unit, logged as `CaseViewed` / `CasesSearched`",
        ),
        Action.ADVANCE_STAGE: Grant.act({Role.UNIT_HEAD}),
        Action.RETURN_FOR_REINVESTIGATION: Grant.act({Role.UNIT_HEAD}),
        Action.CLOSE_CASE: Grant.act({Role.UNIT_HEAD}),
        Action.ARCHIVE_CASE: Grant.act({Role.UNIT_HEAD, Role.ARCHIVIST}),
        Action.FLAG_CASE: Grant.act(UNIT_MEMBERS, supervised=True),
        Action.AMEND_PARTICULARS: Grant.act({Role.UNIT_HEAD}),
        Action.RECORD_INCIDENT: Grant.act(UNIT_MEMBERS, supervised=True),
        Action.RECORD_ACTIVITY: Grant.act(UNIT_MEMBERS),
        Action.FILE_DOCUMENT: Grant.act(
            _MEMBERS_AND_ARCHIVIST, note="an ARCHIVIST only in a CLOSED case (to complete its file)"
        ),
        # R16: an access grant decides, or the case's responsible officer / unit head while it is open
        # (domain/access.py); whoever reads cases may hold a grant (the archive room has no case rights).
        Action.READ_DOCUMENT: Grant.everywhere(
            _MEMBERS_AND_ARCHIVIST | {Role.LEGAL_OFFICE, Role.INSPECTOR},
            "R16: under an access grant, or the responsible officer / unit head while open",
        ),
        Action.RECORD_LEGAL_REVIEW: Grant.act(frozenset(), supervised=True),
    },
)

# Roles the gRPC layer admits per action (the unit is checked by `authorize`).
ROLES_FOR: Mapping[Action, frozenset[str]] = {action: CASES.roles_for(action) for action in Action}


def authorize(actor: Actor, action: Action, unit: str, *, stage: Stage | None = None) -> None:
    """Raises `PermissionDenied` unless `actor` may take `action` on a record of `unit` (R8)."""
    CASES.authorize(actor, action, unit)
    if (
        action is Action.FILE_DOCUMENT
        and not actor.roles & CASES.grants[action].any_unit
        and not actor.roles & UNIT_MEMBERS
        and stage is not Stage.CLOSED
    ):
        raise PermissionDenied(
            f"R8: an ARCHIVIST may only file documents in a CLOSED case (to complete its file); "
            f"this case is in {stage.value if stage else 'an open stage'}"
        )


def listed_units(actor: Actor, unit: str) -> frozenset[str] | None:
    """The units a listing of `unit`'s cases covers, authorized (R8); "" = every unit whose cases `actor`
    may list: None means every unit (LEGAL_OFFICE, INSPECTOR)."""
    return CASES.listed_units(actor, Action.READ_CASE, unit)


RESOURCES = (CASES,)
