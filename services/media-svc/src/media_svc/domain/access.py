"""Access grants (R16 查阅须经批准) as media-svc checks them before releasing content.

The token format and its signature are in `lawtrail/access/v1/access_grant.proto`; the adapter checks
the signature and decodes the grant into `AccessGrant`; this module holds the rules that follow
(validity window, grantee, scope, action). Pure Python.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from servicekit.errors import PermissionDenied

# Tolerated clock difference between the issuer and this service.
CLOCK_LEEWAY = timedelta(seconds=30)


class GrantedAction(enum.Enum):
    VIEW = "VIEW"
    DOWNLOAD = "DOWNLOAD"
    EXPORT = "EXPORT"


class ResourceKind(enum.Enum):
    RECORDING = "RECORDING"
    CASE = "CASE"


@dataclass(frozen=True)
class GrantResource:
    kind: ResourceKind
    id: str


@dataclass(frozen=True)
class AccessGrant:
    grant_id: str
    grantee_subject: str
    grantee_unit: str
    resources: tuple[GrantResource, ...]
    actions: frozenset[GrantedAction]
    purpose: str
    approver_subject: str
    issued_at: datetime
    expires_at: datetime
    issuer: str

    def authorize_content_read(
        self,
        *,
        subject: str,
        recording_id: str,
        case_id: str,
        now: datetime,
        actions: Collection[GrantedAction] = (GrantedAction.VIEW, GrantedAction.DOWNLOAD),
    ) -> None:
        """Raises `PermissionDenied` unless this grant lets `subject` read the content of the recording
        (itself, or the case it is linked to) at `now` with one of `actions`."""
        if not self.grant_id:
            raise PermissionDenied("the access grant has no grant id")
        if not self.approver_subject.strip():
            raise PermissionDenied(
                f"access grant {self.grant_id} names no approver; a grant is valid only once someone other "
                "than the requester approved it (R16)"
            )
        if self.approver_subject == self.grantee_subject:
            raise PermissionDenied(
                f"access grant {self.grant_id} was approved by its own grantee {self.grantee_subject!r}; "
                "an approver is never the requester (R16)"
            )
        if now + CLOCK_LEEWAY < self.issued_at:
            raise PermissionDenied(
                f"access grant {self.grant_id} is not valid before {self.issued_at.isoformat()}"
            )
        if now >= self.expires_at:
            raise PermissionDenied(
                f"access grant {self.grant_id} expired at {self.expires_at.isoformat()}; "
                "ask access-svc for a new one"
            )
        if subject != self.grantee_subject:
            raise PermissionDenied(
                f"access grant {self.grant_id} was issued to {self.grantee_subject!r}, not to {subject!r}"
            )
        covered = any(
            (r.kind is ResourceKind.RECORDING and r.id == recording_id)
            or (r.kind is ResourceKind.CASE and case_id and r.id == case_id)
            for r in self.resources
        )
        if not covered:
            raise PermissionDenied(
                f"access grant {self.grant_id} does not cover recording {recording_id}"
                + (f" nor its case {case_id}" if case_id else " (the recording is not linked to a case)")
            )
        if not self.actions & set(actions):
            wanted = " or ".join(sorted(a.value for a in actions))
            have = ", ".join(sorted(a.value for a in self.actions)) or "none"
            raise PermissionDenied(f"access grant {self.grant_id} allows {have}, not {wanted}")
