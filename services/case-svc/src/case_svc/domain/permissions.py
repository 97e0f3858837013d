"""R8 (第八条 谁执法、谁记录、谁负责；法制机构归口管理、指导、监督): who may do what with a case.

- officers act in their own unit (open cases, record activities, incidents, documents, flags);
- unit heads approve their unit's stage changes (advance, return for reinvestigation, close, archive);
- archivists of a unit read its cases, complete the file of a closed case and archive it;
- the legal affairs office (LEGAL_OFFICE) reads and supervises every unit: it may flag a case, record an
  incident and record the legal review of a major decision in any unit, but it does not act for a unit.

The gRPC layer lets a call through only when the caller holds one of `ROLES_FOR[action]`; `authorize`
then checks the unit. Every refusal is a `PermissionDenied` whose message says why.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from servicekit.errors import PermissionDenied

from case_svc.domain.model import Actor, Role, Stage


class Action(enum.StrEnum):
    OPEN_CASE = "open a case"
    READ_CASE = "read cases"
    ADVANCE_STAGE = "advance the stage of a case"
    RETURN_FOR_REINVESTIGATION = "return a case for reinvestigation"
    CLOSE_CASE = "close a case"
    ARCHIVE_CASE = "archive a case"
    FLAG_CASE = "flag a case"
    RECORD_INCIDENT = "record an incident"
    RECORD_ACTIVITY = "record an activity"
    FILE_DOCUMENT = "file a document"
    RECORD_LEGAL_REVIEW = "record a legal review"


@dataclass(frozen=True)
class Grant:
    """Roles that may take an action on their own unit's cases, and roles that may on any unit's."""

    own_unit: frozenset[Role]
    any_unit: frozenset[Role] = frozenset()

    @property
    def roles(self) -> frozenset[Role]:
        return self.own_unit | self.any_unit


_UNIT_MEMBERS = frozenset({Role.OFFICER, Role.UNIT_HEAD})
_SUPERVISOR = frozenset({Role.LEGAL_OFFICE})

GRANTS: Mapping[Action, Grant] = {
    Action.OPEN_CASE: Grant(_UNIT_MEMBERS),
    Action.READ_CASE: Grant(_UNIT_MEMBERS | {Role.ARCHIVIST}, _SUPERVISOR),
    Action.ADVANCE_STAGE: Grant(frozenset({Role.UNIT_HEAD})),
    Action.RETURN_FOR_REINVESTIGATION: Grant(frozenset({Role.UNIT_HEAD})),
    Action.CLOSE_CASE: Grant(frozenset({Role.UNIT_HEAD})),
    Action.ARCHIVE_CASE: Grant(frozenset({Role.UNIT_HEAD, Role.ARCHIVIST})),
    Action.FLAG_CASE: Grant(_UNIT_MEMBERS, _SUPERVISOR),
    Action.RECORD_INCIDENT: Grant(_UNIT_MEMBERS, _SUPERVISOR),
    Action.RECORD_ACTIVITY: Grant(_UNIT_MEMBERS),
    Action.FILE_DOCUMENT: Grant(_UNIT_MEMBERS | {Role.ARCHIVIST}),
    Action.RECORD_LEGAL_REVIEW: Grant(frozenset(), _SUPERVISOR),
}

# Roles the gRPC layer admits per action (the unit is checked by `authorize`).
ROLES_FOR: Mapping[Action, frozenset[Role]] = {action: grant.roles for action, grant in GRANTS.items()}


def _names(roles: frozenset[Role]) -> str:
    return ", ".join(sorted(r.value for r in roles)) or "none"


def authorize(actor: Actor, action: Action, unit: str, *, stage: Stage | None = None) -> None:
    """Raises `PermissionDenied` unless `actor` may take `action` on a record of `unit` (R8)."""
    grant = GRANTS[action]
    held = frozenset(r for r in Role if actor.has(r))
    if held & grant.any_unit:
        return
    if held & grant.own_unit and actor.unit == unit:
        if action is Action.FILE_DOCUMENT and not held & _UNIT_MEMBERS and stage is not Stage.CLOSED:
            raise PermissionDenied(
                f"R8: an ARCHIVIST may only file documents in a CLOSED case (to complete its file); "
                f"this case is in {stage.value if stage else 'an open stage'}"
            )
        return
    if held & grant.own_unit:
        raise PermissionDenied(
            f"R8: {actor.subject} (unit {actor.unit!r}) may not {action.value} of unit {unit!r}: "
            f"units act only on their own cases"
            + (f"; across units only {_names(grant.any_unit)} may" if grant.any_unit else "")
        )
    needed = []
    if grant.own_unit:
        needed.append(f"{_names(grant.own_unit)} of unit {unit!r}")
    if grant.any_unit:
        needed.append(f"{_names(grant.any_unit)} (any unit)")
    raise PermissionDenied(
        f"R8: to {action.value} you need to be {' or '.join(needed)}; "
        f"{actor.subject} has roles [{_names(held)}] in unit {actor.unit!r}"
    )


def readable_units(actor: Actor) -> frozenset[str] | None:
    """The units whose cases `actor` may list: None means every unit (the legal affairs office)."""
    grant = GRANTS[Action.READ_CASE]
    if any(actor.has(r) for r in grant.any_unit):
        return None
    if any(actor.has(r) for r in grant.own_unit):
        return frozenset({actor.unit})
    raise PermissionDenied(
        f"R8: to {Action.READ_CASE.value} you need one of [{_names(grant.roles)}]; "
        f"{actor.subject} has [{_names(frozenset(r for r in Role if actor.has(r)))}]"
    )
