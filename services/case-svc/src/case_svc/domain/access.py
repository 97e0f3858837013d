"""Reading a document's content (R6, R16 查阅须经批准): who may, and on what basis. Pure Python.

The permission policy:

- **with an access grant** (issued by access-svc after someone else approved it): the grant must name an
  approver other than its grantee, be within its validity (30 s clock leeway), be issued to the caller,
  cover the case (`CASE` resource) and allow VIEW or DOWNLOAD — from any unit;
- **without a grant**: the case's own responsible officer, and the UNIT_HEAD of the case's unit, while the
  case is open (any stage before CLOSED). After closing, everyone needs a grant — archived files are read
  with approval only.

Anyone else is refused with what to do. The signature, key and revocation of a grant are checked by the
adapter before this policy sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from servicekit.errors import PermissionDenied
from servicekit.policy import Actor, Role

from case_svc.domain.model import Stage

CLOCK_LEEWAY = timedelta(seconds=30)
CLOSED_STAGES = frozenset({Stage.CLOSED, Stage.ARCHIVED})
READ_ACTIONS = frozenset({"VIEW", "DOWNLOAD"})


@dataclass(frozen=True)
class GrantClaims:
    """What a verified grant says (lawtrail.access.v1.AccessGrant)."""

    grant_id: str
    grantee_subject: str
    cases: frozenset[str]
    actions: frozenset[str]
    purpose: str
    approver_subject: str
    issued_at: datetime
    expires_at: datetime


def authorize_document_read(
    actor: Actor,
    *,
    case_id: str,
    unit: str,
    responsible_officer: str,
    stage: Stage,
    grant: GrantClaims | None,
    now: datetime,
) -> str:
    """Raises PermissionDenied unless `actor` may read a document of the case; answers the basis."""
    if grant is None:
        if stage not in CLOSED_STAGES:
            if actor.subject == responsible_officer:
                return "responsible officer"
            if actor.has(Role.UNIT_HEAD) and actor.unit == unit:
                return "unit head"
        raise PermissionDenied(
            f"R16: reading the case file of {case_id} needs an access grant approved in access-svc "
            "(pass it in access_grant)"
            + (
                ""
                if stage in CLOSED_STAGES
                else "; without one only its responsible officer and unit head may"
            )
        )
    gid = grant.grant_id
    if not grant.approver_subject.strip():
        raise PermissionDenied(f"access grant {gid} names no approver (R16)")
    if grant.approver_subject == grant.grantee_subject:
        raise PermissionDenied(f"access grant {gid} was approved by its own grantee (R16)")
    if now + CLOCK_LEEWAY < grant.issued_at:
        raise PermissionDenied(f"access grant {gid} is not valid before {grant.issued_at.isoformat()}")
    if now >= grant.expires_at:
        raise PermissionDenied(
            f"access grant {gid} expired at {grant.expires_at.isoformat()}; ask for a new one"
        )
    if actor.subject != grant.grantee_subject:
        raise PermissionDenied(
            f"access grant {gid} was issued to {grant.grantee_subject!r}, not to {actor.subject!r}"
        )
    if case_id not in grant.cases:
        raise PermissionDenied(f"access grant {gid} does not cover case {case_id}")
    if not grant.actions & READ_ACTIONS:
        raise PermissionDenied(
            f"access grant {gid} allows {', '.join(sorted(grant.actions))}, not VIEW or DOWNLOAD"
        )
    return "grant"
