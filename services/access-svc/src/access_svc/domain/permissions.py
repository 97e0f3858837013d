"""Who may do what with access requests and grants (R16 查阅须经批准, R8). Pure Python.

- ask for access: anyone authenticated (the requester is the caller, never a field of the request);
- decide (approve / deny): **never the requester**; the UNIT_HEAD of the unit owning *every* requested
  record, or the legal affairs office (LEGAL_OFFICE, any unit);
- read a request: the requester, a UNIT_HEAD of an owning unit, LEGAL_OFFICE, INSPECTOR;
- revoke a grant: its approver, a UNIT_HEAD of an owning unit, LEGAL_OFFICE;
- list requests: one's own; a UNIT_HEAD also those for their unit's records; LEGAL_OFFICE, INSPECTOR all;
- a disclosure or export to a receiving body (R14, R15: the request names a recipient) needs two
  approvals by two different people, neither the requester: the legal affairs office *and* the UNIT_HEAD
  of the unit owning every requested record; one denial by either ends it.

The owning unit of a record is access-svc's projection of case-svc's CaseOpened and media-svc's
RecordingIngested. A unit head cannot approve access to a record whose unit is not known yet: it might
belong to another unit (FAILED_PRECONDITION says so); the legal affairs office can.

R8, the one policy (servicekit.policy): the unit part of these rules is declared as data below — an
access request is a record of the units owning the records it names; reading it is `Grant.read` by
that unit's UNIT_HEAD (not its officers: a request may concern an officer's own conduct), deciding and
revoking are `Grant.act` by that unit's UNIT_HEAD, supervised by LEGAL_OFFICE — and the checks here ask
that declaration (`Resource.may`), so docs/permissions.md and the answers agree; refusals of the unit
or role kind name R8 (tests/unit/test_r08_one_policy.py asks access-svc the questions every service is
asked). What R8 does not say is added on top and named R16/R15: the requester always reads their own
request and never decides it, the approver may revoke, a disclosure needs two different approvers.
"""

from __future__ import annotations

import enum

from servicekit.errors import FailedPrecondition, PermissionDenied
from servicekit.policy import Actor, Grant, Resource, Role

from access_svc.domain.model import LEGAL, UNIT, AccessRequest


def may_decide(actor: Actor, request: AccessRequest) -> str:
    """Raises unless `actor` may approve or deny `request`; answers the capacity they decide in
    (LEGAL_OFFICE or UNIT_HEAD).

    A disclosure (R15) needs both capacities, from two different people: a second approval by the same
    person, or in a capacity already given, is refused and says who is still missing."""
    if actor.subject == request.requester:
        raise PermissionDenied(
            f"R16: {actor.subject} asked for this access and cannot decide their own request "
            f"{request.request_id}; another person (the owning unit's head or the legal affairs office) must"
        )
    if request.is_disclosure:
        return _disclosure_capacity(actor, request)
    if actor.roles & ACCESS_REQUESTS.grants[Action.DECIDE].any_unit:
        return LEGAL
    _unit_head_of_all(actor, request)
    return UNIT


def _disclosure_capacity(actor: Actor, request: AccessRequest) -> str:
    if any(a.by.subject == actor.subject for a in request.approvals):
        raise PermissionDenied(
            f"R15: {actor.subject} already approved disclosure {request.request_id}; the second approval "
            "must come from a different person"
        )
    given = request.capacities()
    if actor.has(Role.LEGAL_OFFICE) and LEGAL not in given:
        return LEGAL
    if actor.has(Role.UNIT_HEAD) and UNIT not in given:
        _unit_head_of_all(actor, request)
        return UNIT
    missing = " and ".join(
        what
        for cap, what in ((LEGAL, "the legal affairs office"), (UNIT, "the owning unit's head"))
        if cap not in given
    )
    raise PermissionDenied(
        f"R15: disclosure {request.request_id} still needs the approval of {missing}; {actor.subject} "
        f"[{', '.join(sorted(actor.roles)) or 'no roles'}] cannot give it"
    )


def _unit_head_of_all(actor: Actor, request: AccessRequest) -> None:
    """The unit part of deciding (R8): a unit head decides for records of their own unit only."""
    if actor.roles & ACCESS_REQUESTS.grants[Action.DECIDE].own_unit:
        unknown = [r.id for r, u in zip(request.resources, request.owning_units, strict=True) if not u]
        if unknown:
            raise FailedPrecondition(
                f"R16: the owning unit of {', '.join(unknown)} is not known to access-svc yet, so a unit "
                "head cannot approve it; retry once the record's events arrived, or ask the legal "
                "affairs office"
            )
        if request.owning_units and all(
            ACCESS_REQUESTS.may(actor, Action.DECIDE, unit) for unit in request.owning_units
        ):
            return
        others = sorted({u for u in request.owning_units if u != actor.unit})
        raise PermissionDenied(
            f"R8: {actor.subject} is head of unit {actor.unit!r}, but the request also covers records of "
            f"{', '.join(others)}; their head or the legal affairs office must decide"
        )
    raise PermissionDenied(
        f"R8: deciding access requests needs UNIT_HEAD of the owning unit or LEGAL_OFFICE; {actor.subject} "
        f"has [{', '.join(sorted(actor.roles)) or 'none'}]"
    )


def _may_on_some_unit(actor: Actor, action: Action, request: AccessRequest) -> bool:
    """Whether the declared grant lets `actor` take `action` on a record of one of the owning units."""
    grant = ACCESS_REQUESTS.grants[action]
    return bool(actor.roles & grant.any_unit) or any(
        ACCESS_REQUESTS.may(actor, action, unit) for unit in request.owning_units if unit
    )


def may_read(actor: Actor, request: AccessRequest) -> None:
    if actor.subject == request.requester:  # R16: one's own request, whatever one's role
        return
    if _may_on_some_unit(actor, Action.READ_REQUESTS, request):
        return
    raise PermissionDenied(
        f"R8: request {request.request_id} is visible to its requester, the owning units' heads, the legal "
        f"affairs office and inspectors; not to {actor.subject} (unit {actor.unit!r})"
    )


def may_revoke(actor: Actor, request: AccessRequest) -> None:
    if request.decided is not None and actor.subject == request.decided.subject:  # R16: the approver
        return
    if _may_on_some_unit(actor, Action.REVOKE, request):
        return
    raise PermissionDenied(
        f"R8: a grant is revoked by its approver, a head of an owning unit or the legal affairs office; "
        f"not by {actor.subject} (unit {actor.unit!r})"
    )


def list_scope(actor: Actor) -> tuple[bool, str | None]:
    """(sees everything, unit whose records' requests the actor also sees) — besides their own."""
    grant = ACCESS_REQUESTS.grants[Action.READ_REQUESTS]
    if actor.roles & grant.any_unit:
        return True, None
    return False, actor.unit if actor.roles & grant.own_unit else None


class Action(enum.StrEnum):
    """What the server admits per RPC (the rules above then decide, not a unit scope)."""

    REQUEST_ACCESS = "ask for access"
    DECIDE = "decide an access request"
    READ_REQUESTS = "read access requests"
    REVOKE = "revoke a grant"
    RECORD_PACKAGE = "record a disclosure package"
    GRANT_STATUS = "tell a grant's status"
    STANDING_GRANT = "take a grant under a standing order"
    READ_LEDGER = "read the audit ledger"
    SIGN_CHECKPOINT = "sign a ledger checkpoint"


_AUDITORS = frozenset({Role.LEGAL_OFFICE, Role.INSPECTOR, Role.SERVICE})
_DECIDED_HERE = "R16: access-svc's permission policy decides (requester, owning unit, two approvers)"

ACCESS_REQUESTS: Resource[Action] = Resource(
    name="access request",
    plural="access requests",
    service="access-svc",
    grants={
        # Anyone authenticated (no role needed): the requester is the caller; the policy above decides.
        Action.REQUEST_ACCESS: Grant.everywhere(frozenset(), _DECIDED_HERE),
        # The server admits any caller to these two (the requester may hold any role: `READ_ANYONE`).
        Action.READ_REQUESTS: Grant.read(
            {Role.UNIT_HEAD},
            note="R16: and the requester, whatever their role (the server admits any caller); not the unit's "
            "officers: a request may concern an officer's own conduct",
        ),
        Action.RECORD_PACKAGE: Grant.everywhere(frozenset(), "R15: only the requester of the disclosure"),
        Action.DECIDE: Grant.act(
            {Role.UNIT_HEAD},
            supervised=True,
            note="never the requester (R16); a disclosure needs both, two different people (R15)",
        ),
        Action.REVOKE: Grant.act({Role.UNIT_HEAD}, supervised=True, note="and the grant's approver (R16)"),
        Action.GRANT_STATUS: Grant.everywhere({Role.SERVICE}, "services verifying grants online"),
        Action.STANDING_GRANT: Grant.everywhere(
            {Role.SERVICE},
            "R13, R11b: only the service a configured standing order names, within the order (R16)",
        ),
    },
)
LEDGER: Resource[Action] = Resource(
    name="ledger entry",
    plural="ledger entries",
    service="access-svc",
    grants={
        Action.READ_LEDGER: Grant.everywhere(_AUDITORS, "R23-3: the audit ledger, every unit"),
        Action.SIGN_CHECKPOINT: Grant.everywhere({Role.LEGAL_OFFICE, Role.SERVICE}, "R23-3: on demand"),
    },
)
RESOURCES = (ACCESS_REQUESTS, LEDGER)
# Actions the server admits any authenticated caller to, whatever the grant's roles: a requester may
# hold any role and always reads their own requests (the checks above then decide).
READ_ANYONE = frozenset({Action.READ_REQUESTS})
