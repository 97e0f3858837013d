"""R8 (谁执法、谁记录、谁负责；法制机构归口管理、指导、监督) for retention: who may do what.

The gRPC layer lets a call through only when the caller holds one of `ROLES_FOR[action]` (the role policy);
`authorize` then checks the unit: a unit's people act on their own unit's records, the legal affairs office
reads every unit, and services (role SERVICE) read every unit. A refusal says why. Pure Python.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from servicekit.errors import PermissionDenied

OFFICER, UNIT_HEAD, ARCHIVIST = "OFFICER", "UNIT_HEAD", "ARCHIVIST"
LEGAL_OFFICE, ARCHIVE_ROOM, INSPECTOR, SERVICE = "LEGAL_OFFICE", "ARCHIVE_ROOM", "INSPECTOR", "SERVICE"


class Action(enum.StrEnum):
    READ_RETENTION = "read retention"
    EXTEND_RETENTION = "extend a retention"
    MAKE_OFFLINE_COPY = "make an offline copy"
    ARCHIVE_BACKUP = "back up recordings to the archive"
    VERIFY_ARCHIVE = "verify an archive batch"
    DISPOSE = "propose or approve a disposal"


@dataclass(frozen=True)
class Actor:
    """The verified caller (from the bearer token, never from the request)."""

    subject: str
    unit: str
    roles: frozenset[str]


@dataclass(frozen=True)
class Grant:
    own_unit: frozenset[str]
    any_unit: frozenset[str] = frozenset()

    @property
    def roles(self) -> frozenset[str]:
        return self.own_unit | self.any_unit


_PEOPLE = frozenset({OFFICER, UNIT_HEAD, ARCHIVIST, ARCHIVE_ROOM, INSPECTOR})
GRANTS: Mapping[Action, Grant] = {
    Action.READ_RETENTION: Grant(_PEOPLE, frozenset({LEGAL_OFFICE, SERVICE})),
    Action.EXTEND_RETENTION: Grant(frozenset({UNIT_HEAD, ARCHIVIST})),
    Action.MAKE_OFFLINE_COPY: Grant(frozenset({UNIT_HEAD, ARCHIVIST, ARCHIVE_ROOM})),
    Action.ARCHIVE_BACKUP: Grant(frozenset({ARCHIVE_ROOM, ARCHIVIST})),
    Action.VERIFY_ARCHIVE: Grant(frozenset({ARCHIVE_ROOM, ARCHIVIST}), frozenset({LEGAL_OFFICE})),
    Action.DISPOSE: Grant(frozenset({UNIT_HEAD, ARCHIVE_ROOM})),
}
ROLES_FOR: Mapping[Action, frozenset[str]] = {action: grant.roles for action, grant in GRANTS.items()}


def authorize(actor: Actor, action: Action, unit: str) -> None:
    """Raises PermissionDenied unless `actor` may take `action` on a record of `unit`."""
    grant = GRANTS[action]
    if actor.roles & grant.any_unit:
        return
    if not actor.roles & grant.own_unit:
        raise PermissionDenied(
            f"{actor.subject} may not {action}: it needs one of {', '.join(sorted(grant.roles))}"
        )
    if unit and actor.unit != unit:
        raise PermissionDenied(
            f"{actor.subject} of unit {actor.unit!r} may not {action} for a record of unit {unit!r} (R8)"
        )
