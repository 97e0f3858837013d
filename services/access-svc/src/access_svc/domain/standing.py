"""Standing orders (常设授权): grants a service principal may hold without a person deciding each one.

retention-svc copies held recordings to offline media (R13 第十三条) and backs up each unit's recordings
every month (R11b); it must read them through media-svc's verified download with an access grant like
anyone (R16, R23-3), but nobody can approve every copy by hand. A standing order is that approval given
once, in advance, by a named person, for one grantee, one kind of purpose, some actions, some kinds of
record and at most some duration. It is configuration of access-svc (`config/standing_orders.toml`), so
who may hold which standing grant is read in one place and changed only by changing that file.

Each grant under an order is still a request with its events (`AccessRequested`, then
`AccessRequestApproved` naming the order and its approver), still short-lived, and still revocable
(`AccessRevoked`, honoured by media-svc). The approver is the order's named approver, never the grantee
(R16): an order naming its grantee as approver does not load. Pure Python.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from servicekit.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from servicekit.policy import Actor, Role

from access_svc.domain.model import (
    MAX_DURATION,
    MIN_DURATION,
    GrantedAction,
    Resource,
    ResourceKind,
)

HELD_CASE = "held-case"  # every CASE named is under a long-term hold retention-svc announced (R13)
ONE_UNIT = "one-unit"  # every record named is known to access-svc and all belong to one unit (R11b)
CONDITIONS = frozenset({HELD_CASE, ONE_UNIT})
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_DURATION = re.compile(r"^(\d+)\s*(m|h)$")


class StandingOrderError(ValueError):
    """A standing orders file that cannot be used (the service does not start)."""


@dataclass(frozen=True)
class StandingOrder:
    order_id: str
    grantee: str  # the service principal's subject (its bearer token's `sub`)
    purpose_prefix: str  # every purpose under the order begins with it, e.g. "R13 offline copy"
    actions: frozenset[GrantedAction]
    resource_kinds: frozenset[ResourceKind]
    max_duration: timedelta
    approver: str  # the person who approved the order (never the grantee)
    approver_unit: str
    approved_on: str  # when (a date, as written in the order)
    basis: str  # the legal source and what the order covers, in words
    requires: frozenset[str] = frozenset()  # conditions on the records (CONDITIONS)

    def reason(self) -> str:
        return (
            f"standing order {self.order_id}, approved by {self.approver} ({self.approver_unit}) on "
            f"{self.approved_on}: {self.basis}"
        )

    def admit(
        self,
        actor: Actor,
        *,
        resources: tuple[Resource, ...],
        actions: tuple[GrantedAction, ...],
        purpose: str,
        duration: timedelta,
    ) -> None:
        """Raises unless the order covers this caller asking for these records, actions, purpose and
        duration (R16: a standing grant is exactly what the order approved, nothing more)."""
        if actor.subject != self.grantee or not actor.has(Role.SERVICE):
            raise PermissionDenied(
                f"R16: standing order {self.order_id} is held by service {self.grantee!r} (role SERVICE); "
                f"{actor.subject} [{', '.join(sorted(actor.roles)) or 'no roles'}] cannot use it"
            )
        for i, r in enumerate(resources):
            if r.kind not in self.resource_kinds:
                raise InvalidArgument(
                    f"resources[{i}].kind: standing order {self.order_id} covers "
                    f"{_names(self.resource_kinds)} only, not {r.kind.value}"
                )
        for i, a in enumerate(actions):
            if a not in self.actions:
                raise InvalidArgument(
                    f"actions[{i}]: standing order {self.order_id} allows {_names(self.actions)} only, "
                    f"not {a.value}"
                )
        if not purpose.strip().startswith(self.purpose_prefix):
            raise InvalidArgument(
                f"purpose: under standing order {self.order_id} it begins with {self.purpose_prefix!r}"
            )
        if duration > self.max_duration:
            raise InvalidArgument(
                f"duration: {duration.total_seconds():.0f} s is longer than standing order "
                f"{self.order_id} allows ({self.max_duration.total_seconds():.0f} s)"
            )

    def check_scope(
        self, resources: tuple[Resource, ...], owning_units: tuple[str, ...], held: frozenset[str]
    ) -> None:
        """Raises FailedPrecondition unless the records meet the order's conditions, as access-svc's own
        projections know them (`held`: the named cases under a hold; `owning_units`: one per resource)."""
        if HELD_CASE in self.requires:
            not_held = [r.id for r in resources if r.kind is ResourceKind.CASE and r.id not in held]
            if not_held:
                raise FailedPrecondition(
                    f"R13: standing order {self.order_id} covers held cases only; access-svc knows no "
                    f"long-term hold on {', '.join(not_held)} (retry once its LongTermHoldPlaced arrived)"
                )
        if ONE_UNIT in self.requires:
            unknown = [r.id for r, u in zip(resources, owning_units, strict=True) if not u]
            if unknown:
                raise FailedPrecondition(
                    f"R11b: standing order {self.order_id}: the unit of {', '.join(unknown[:5])} is not "
                    "known to access-svc yet (retry once their RecordingIngested arrived)"
                )
            if len(set(owning_units)) > 1:
                raise InvalidArgument(
                    f"resources: standing order {self.order_id} covers one unit's records per grant; "
                    f"these belong to {', '.join(sorted(set(owning_units)))}"
                )


def _names(values: frozenset[Any]) -> str:
    return ", ".join(sorted(v.value for v in values))


def parse_standing_orders(data: Mapping[str, Any]) -> dict[str, StandingOrder]:
    """The orders of a parsed TOML document (`[[order]]` tables); raises StandingOrderError naming the
    order and the field."""
    unknown = set(data) - {"order"}
    if unknown:
        raise StandingOrderError(f"unknown top-level keys {sorted(unknown)}; use [[order]] tables")
    items = data.get("order", [])
    if not isinstance(items, list):
        raise StandingOrderError("order: write each standing order as an [[order]] table")
    orders: dict[str, StandingOrder] = {}
    for n, item in enumerate(items):
        where = f"order[{n}]"
        if not isinstance(item, dict):
            raise StandingOrderError(f"{where}: not a table")
        order = _order(item, where)
        if order.order_id in orders:
            raise StandingOrderError(f"{where}.id: {order.order_id!r} is defined twice")
        orders[order.order_id] = order
    return orders


_FIELDS = {
    "id",
    "grantee",
    "purpose_prefix",
    "actions",
    "resource_kinds",
    "max_duration",
    "approver",
    "approver_unit",
    "approved_on",
    "basis",
    "requires",
}


def _order(item: Mapping[str, Any], where: str) -> StandingOrder:
    unknown = set(item) - _FIELDS
    if unknown:
        raise StandingOrderError(f"{where}: unknown keys {sorted(unknown)}")

    def string(key: str) -> str:
        value = item.get(key)
        if not isinstance(value, str) or not value.strip():
            raise StandingOrderError(f"{where}.{key}: required, a non-empty string")
        return value.strip()

    def names(key: str, enum_type: Any) -> frozenset[Any]:
        value = item.get(key)
        if not isinstance(value, list) or not value:
            raise StandingOrderError(f"{where}.{key}: required, a non-empty list")
        try:
            return frozenset(enum_type(v) for v in value)
        except ValueError as error:
            allowed = ", ".join(e.value for e in enum_type)
            raise StandingOrderError(f"{where}.{key}: {error}; allowed: {allowed}") from None

    order_id = string("id")
    if not _ID.match(order_id):
        raise StandingOrderError(f"{where}.id: {order_id!r} is not lowercase letters, digits and '-'")
    match = _DURATION.match(string("max_duration"))
    if match is None:
        raise StandingOrderError(f"{where}.max_duration: write minutes or hours, e.g. '30m' or '2h'")
    amount, unit = int(match.group(1)), match.group(2)
    max_duration = timedelta(minutes=amount) if unit == "m" else timedelta(hours=amount)
    if not MIN_DURATION <= max_duration <= MAX_DURATION:
        raise StandingOrderError(f"{where}.max_duration: between 1m and 24h (grants are short-lived)")
    requires = item.get("requires", [])
    if not isinstance(requires, list) or not set(requires) <= CONDITIONS:
        raise StandingOrderError(
            f"{where}.requires: a list of {', '.join(sorted(CONDITIONS))}; got {requires!r}"
        )
    order = StandingOrder(
        requires=frozenset(requires),
        order_id=order_id,
        grantee=string("grantee"),
        purpose_prefix=string("purpose_prefix"),
        actions=names("actions", GrantedAction),
        resource_kinds=names("resource_kinds", ResourceKind),
        max_duration=max_duration,
        approver=string("approver"),
        approver_unit=string("approver_unit"),
        approved_on=string("approved_on"),
        basis=string("basis"),
    )
    if order.approver == order.grantee:
        raise StandingOrderError(
            f"{where}.approver: {order.approver!r} is the grantee; R16: an approver is never the grantee"
        )
    return order
