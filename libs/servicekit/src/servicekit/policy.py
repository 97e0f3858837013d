"""R8 (第八条 谁执法、谁记录、谁负责；法制机构归口管理、指导、监督): the one permission policy of Lawtrail.

Pure Python (standard library and `servicekit.errors` only), so domains may import it (ADR 0005): it is
the shared vocabulary of *who* (`Role`, `Actor`) and the one rule of *which unit's records* a role may
see and act on. Each service declares its resources as data — a `Resource` naming, per action, the
roles that may take it on their own unit's records and the roles that may on any unit's — built only
from the role groups below, so every service answers the same question the same way:

- members of a unit (`OFFICER`, `UNIT_HEAD`, plus `ARCHIVIST` where the resource says) see and act on
  their own unit's records only;
- the legal affairs office (`LEGAL_OFFICE`) reads every unit's records and supervises (flags, records
  incidents and legal reviews where a resource grants it), but never acts for a unit;
- inspectors (`INSPECTOR`) read every unit's records and act on none;
- a record of another unit that the caller may not take the action on answers PERMISSION_DENIED, with a
  message that names R8, the caller's unit and who may (ids are random, so the answer reveals nothing a
  caller could not guess; NOT_FOUND is kept for records that do not exist).

`rpc_role_policy` derives a service's gRPC role policy (servicekit's server refuses a method not in
it) from the same data; `tools/gen_permissions.py` renders every service's resources as the table in
docs/permissions.md (`make lint` fails when it drifts).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from servicekit.errors import PermissionDenied

__all__ = [
    "EVERY_UNIT_READERS",
    "SUPERVISORS",
    "UNIT_MEMBERS",
    "Actor",
    "Grant",
    "Resource",
    "Role",
    "RpcActions",
    "rpc_actions",
    "rpc_role_policy",
    "viewed_from_outside",
]


class Role(enum.StrEnum):
    """The roles of the architecture (Security); a token's ``roles`` claim holds these names."""

    OFFICER = "OFFICER"
    UNIT_HEAD = "UNIT_HEAD"
    ARCHIVIST = "ARCHIVIST"
    LEGAL_OFFICE = "LEGAL_OFFICE"
    ARCHIVE_ROOM = "ARCHIVE_ROOM"
    INSPECTOR = "INSPECTOR"
    # Service accounts (other departments, other Lawtrail services); what they may do is in `scopes`.
    SERVICE = "SERVICE"


# The role groups of R8. Resources grant actions to these (and to single roles), never to ad-hoc sets
# of supervisors, so "who reads every unit" has one answer.
UNIT_MEMBERS: frozenset[str] = frozenset({Role.OFFICER, Role.UNIT_HEAD})
# Read every unit's records (法制机构 supervises all units; inspectors audit them).
EVERY_UNIT_READERS: frozenset[str] = frozenset({Role.LEGAL_OFFICE, Role.INSPECTOR})
# Act across units where a resource grants supervision (flag a case, record an incident or review).
SUPERVISORS: frozenset[str] = frozenset({Role.LEGAL_OFFICE})


@dataclass(frozen=True)
class Actor:
    """The verified caller: subject and unit from the token, never from the request (R4, R8).

    `roles` holds role names and token scopes (a service account's `media.upload`, say)."""

    subject: str
    unit: str
    roles: frozenset[str] = frozenset()

    def has(self, role: str) -> bool:
        return role in self.roles

    @classmethod
    def of(cls, principal: _PrincipalLike) -> Actor:
        """The actor of a verified principal (servicekit.auth.Principal): roles and scopes together."""
        return cls(
            principal.subject, principal.unit, frozenset(principal.roles) | frozenset(principal.scopes)
        )


class _PrincipalLike(Protocol):  # servicekit.auth.Principal, without importing it (it is not pure)
    @property
    def subject(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def roles(self) -> frozenset[str]: ...
    @property
    def scopes(self) -> frozenset[str]: ...


@dataclass(frozen=True)
class Grant:
    """Who may take one action: roles on their own unit's records, roles on any unit's records.

    `note` is shown in the generated table (why a grant is unusual, e.g. "the access grant decides")."""

    own_unit: frozenset[str] = frozenset()
    any_unit: frozenset[str] = frozenset()
    note: str = ""

    @property
    def roles(self) -> frozenset[str]:
        return self.own_unit | self.any_unit

    @classmethod
    def read(cls, own_unit: Iterable[str], note: str = "") -> Grant:
        """A read: `own_unit` roles read their unit's records, `EVERY_UNIT_READERS` read every unit's."""
        return cls(frozenset(own_unit), EVERY_UNIT_READERS, note)

    @classmethod
    def act(cls, own_unit: Iterable[str], *, supervised: bool = False, note: str = "") -> Grant:
        """A change by a unit on its own records; `supervised`: the legal affairs office may too, in any
        unit. Inspectors never act."""
        return cls(frozenset(own_unit), SUPERVISORS if supervised else frozenset(), note)

    @classmethod
    def everywhere(cls, roles: Iterable[str], note: str) -> Grant:
        """An action not scoped to a unit (a service-wide operation, or one another check decides)."""
        return cls(frozenset(), frozenset(roles), note)


A = TypeVar("A", bound=enum.StrEnum)


def _names(roles: Iterable[str]) -> str:
    return ", ".join(sorted(str(r) for r in roles)) or "none"


@dataclass(frozen=True)
class Resource(Generic[A]):
    """The records of one kind a service keeps (cases, recordings, devices…) and who may do what.

    `plural` reads in messages ("units act only on their own cases"); each action's value reads as a
    verb phrase ("read cases", "advance the stage of a case")."""

    name: str
    plural: str
    grants: Mapping[A, Grant]
    service: str = ""
    # Why records of this kind belong to one unit, appended to the refusal ("stored per unit, R9").
    why: str = field(default="", compare=False)

    def roles_for(self, action: A) -> frozenset[str]:
        return self.grants[action].roles

    def may(self, actor: Actor, action: A, unit: str) -> bool:
        grant = self.grants[action]
        return bool(actor.roles & grant.any_unit) or (
            bool(actor.roles & grant.own_unit) and actor.unit == unit
        )

    def authorize(self, actor: Actor, action: A, unit: str) -> None:
        """Raises `PermissionDenied` unless `actor` may take `action` on a record of `unit` (R8)."""
        if self.may(actor, action, unit):
            return
        grant = self.grants[action]
        held = actor.roles & frozenset(Role)
        if actor.roles & grant.own_unit:
            raise PermissionDenied(
                f"R8: {actor.subject} (unit {actor.unit!r}) may not {action.value} of unit {unit!r}: "
                f"units act only on their own unit's {self.plural}"
                + (f" ({self.why})" if self.why else "")
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
            + (f" ({self.why})" if self.why and grant.own_unit else "")
        )

    def readable_units(self, actor: Actor, action: A) -> frozenset[str] | None:
        """The units whose records `actor` may list with `action`: None means every unit."""
        grant = self.grants[action]
        if actor.roles & grant.any_unit:
            return None
        if actor.roles & grant.own_unit:
            return frozenset({actor.unit})
        raise PermissionDenied(
            f"R8: to {action.value} you need one of [{_names(grant.roles)}]; "
            f"{actor.subject} has [{_names(actor.roles & frozenset(Role))}]"
        )

    def listed_units(self, actor: Actor, action: A, unit: str) -> frozenset[str] | None:
        """The units a listing (a search) covers, authorized: `unit` when given, else every unit `actor`
        may list with `action` (None: every unit)."""
        if unit:
            self.authorize(actor, action, unit)
            return frozenset({unit})
        return self.readable_units(actor, action)


def viewed_from_outside(actor: Actor, units: Iterable[str] | None) -> bool:
    """R16, R23-3: whether a view of records of `units` (one record: its unit; a search: the units it
    covered, None = every unit) is by someone outside them. Such views and searches are access events —
    case-svc's CaseViewed / CasesSearched, media-svc's RecordingViewed / RecordingsSearched; views and
    searches within the caller's own unit are not. Whatever the role: the legal affairs office, inspectors
    and service accounts reading another unit's records are logged alike."""
    return units is None or frozenset(units) != {actor.unit}


RpcActions = Mapping[str, tuple["Resource[Any]", enum.StrEnum]]


def rpc_actions(service_full_name: str, methods: Mapping[str, tuple[Resource[Any], Any]]) -> RpcActions:
    """Full method names (`/lawtrail.case.v1.CaseService/OpenCase`) -> the resource action each RPC is,
    from a service's short method names."""
    return {f"/{service_full_name}/{method}": ra for method, ra in methods.items()}


def rpc_role_policy(actions: RpcActions) -> dict[str, frozenset[str]]:
    """Full method name -> the roles servicekit's server admits (the unit is checked by the handlers)."""
    return {method: resource.roles_for(action) for method, (resource, action) in actions.items()}
