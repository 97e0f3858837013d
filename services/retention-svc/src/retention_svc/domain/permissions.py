"""R8 (谁执法、谁记录、谁负责；法制机构归口管理、指导、监督) for retention: who may do what.

The rule and its role groups are servicekit.policy's (one policy for every service); this module declares
retention-svc's resource with it. A unit's people act on their own unit's records; the legal affairs
office and inspectors read every unit; services (role SERVICE) read every unit; the legal affairs office
may also re-verify any unit's archive batch. Disposal is proposed by the unit head or the archive room and
approved by the other (domain/disposal.py checks the two people). Every refusal says why.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from servicekit.policy import EVERY_UNIT_READERS, Actor, Grant, Resource, Role

__all__ = ["ARCHIVE_ROOM", "RESOURCES", "ROLES_FOR", "UNIT_HEAD", "Action", "Actor", "authorize"]

UNIT_HEAD, ARCHIVE_ROOM = Role.UNIT_HEAD.value, Role.ARCHIVE_ROOM.value


class Action(enum.StrEnum):
    READ_RETENTION = "read retention"
    EXTEND_RETENTION = "extend a retention"
    MAKE_OFFLINE_COPY = "make an offline copy"
    ARCHIVE_BACKUP = "back up recordings to the archive"
    VERIFY_ARCHIVE = "verify an archive batch"
    DISPOSE = "propose or approve a disposal"


_PEOPLE = frozenset({Role.OFFICER, Role.UNIT_HEAD, Role.ARCHIVIST, Role.ARCHIVE_ROOM, Role.INSPECTOR})
RETENTION: Resource[Action] = Resource(
    name="retention record",
    plural="retention records",
    service="retention-svc",
    grants={
        Action.READ_RETENTION: Grant(_PEOPLE, EVERY_UNIT_READERS | {Role.SERVICE}),
        Action.EXTEND_RETENTION: Grant.act({Role.UNIT_HEAD, Role.ARCHIVIST}),
        Action.MAKE_OFFLINE_COPY: Grant.act({Role.UNIT_HEAD, Role.ARCHIVIST, Role.ARCHIVE_ROOM}),
        Action.ARCHIVE_BACKUP: Grant.act({Role.ARCHIVE_ROOM, Role.ARCHIVIST}),
        Action.VERIFY_ARCHIVE: Grant.act({Role.ARCHIVE_ROOM, Role.ARCHIVIST}, supervised=True),
        Action.DISPOSE: Grant.act(
            {Role.UNIT_HEAD, Role.ARCHIVE_ROOM},
            note="two different people: the unit head and the archive room",
        ),
    },
)
RESOURCES = (RETENTION,)

# Roles the gRPC layer admits per action (the unit is checked by `authorize`).
ROLES_FOR: Mapping[Action, frozenset[str]] = {action: RETENTION.roles_for(action) for action in Action}


def authorize(actor: Actor, action: Action, unit: str) -> None:
    """Raises `PermissionDenied` unless `actor` may take `action` on a record of `unit` (R8)."""
    RETENTION.authorize(actor, action, unit)
