"""Access requests and grants (R16 查阅须经批准): the vocabulary and the request aggregate. Pure Python.

A request names the requester (from the token), the records (cases, recordings), the actions (view,
download, export), a purpose and a duration. It is decided once — approved or denied with a reason — by
someone allowed to (`permissions.may_decide`: never the requester). An approval yields a grant: what the
signed token carries, valid from the decision for the requested duration. A grant ends early when revoked,
or at its expiry. Every transition records an event, stored with the request (embedded outbox).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from servicekit.errors import FailedPrecondition, InvalidArgument
from servicekit.policy import Actor  # R8: the one vocabulary of who

MAX_RESOURCES = 100
MAX_ID = 64
MAX_TEXT = 500
MIN_DURATION = timedelta(minutes=1)
MAX_DURATION = timedelta(hours=24)
ISSUER = "access-svc"


class ResourceKind(enum.Enum):
    RECORDING = "RECORDING"
    CASE = "CASE"


class GrantedAction(enum.Enum):
    VIEW = "VIEW"
    DOWNLOAD = "DOWNLOAD"
    EXPORT = "EXPORT"


class RequestState(enum.Enum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    DENIED = "DENIED"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"


@dataclass(frozen=True)
class Resource:
    kind: ResourceKind
    id: str


@dataclass(frozen=True)
class Attribution:
    subject: str
    unit: str
    at: datetime


@dataclass(frozen=True)
class Approval:
    """One approval: who, when, why, and in which capacity (LEGAL_OFFICE or UNIT_HEAD)."""

    by: Attribution
    reason: str
    capacity: str


@dataclass(frozen=True)
class DisclosurePackage:
    package_sha256: str
    manifest_sha256: str
    files: int
    retained_copy: str
    recorded: Attribution


@dataclass(frozen=True)
class Grant:
    """The content of a signed access grant (lawtrail.access.v1.AccessGrant)."""

    grant_id: str
    grantee_subject: str
    grantee_unit: str
    resources: tuple[Resource, ...]
    actions: tuple[GrantedAction, ...]
    purpose: str
    approver_subject: str
    issued_at: datetime
    expires_at: datetime
    issuer: str = ISSUER


def grant_id_for(request_id: str) -> str:
    """One request yields at most one grant, so its id derives from the request's ("ar-x" → "gr-x"): the
    grant's request is found by `_id`, with no second index to keep in step."""
    return "gr-" + request_id.removeprefix("ar-")


def request_id_of(grant_id: str) -> str | None:
    return "ar-" + grant_id.removeprefix("gr-") if grant_id.startswith("gr-") else None


# --- events -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessRequested:
    request_id: str
    requested: Attribution
    resources: tuple[Resource, ...]
    actions: tuple[GrantedAction, ...]
    purpose: str
    duration: timedelta
    owning_units: tuple[str, ...]
    recipient: str = ""
    standing_order: str = ""
    filed_by: str = ""


@dataclass(frozen=True)
class AccessRequestApproved:
    request_id: str
    decided: Attribution
    reason: str
    grant: Grant
    key_id: str
    approvals: tuple[Approval, ...] = ()
    recipient: str = ""
    standing_order: str = ""


@dataclass(frozen=True)
class DisclosureApprovalRecorded:
    request_id: str
    approval: Approval


@dataclass(frozen=True)
class DisclosurePackageCreated:
    request_id: str
    recipient: str
    package: DisclosurePackage


@dataclass(frozen=True)
class AccessRequestDenied:
    request_id: str
    decided: Attribution
    reason: str
    requester: str


@dataclass(frozen=True)
class AccessRevoked:
    grant_id: str
    request_id: str
    revoked: Attribution
    reason: str
    grantee_subject: str


@dataclass(frozen=True)
class AccessGrantExpired:
    grant_id: str
    request_id: str
    expired_at: datetime


AccessEvent = (
    AccessRequested
    | AccessRequestApproved
    | AccessRequestDenied
    | AccessRevoked
    | AccessGrantExpired
    | DisclosureApprovalRecorded
    | DisclosurePackageCreated
)
LEGAL = "LEGAL_OFFICE"
UNIT = "UNIT_HEAD"
STANDING = "STANDING_ORDER"  # the capacity of an approval given in advance by a standing order
SHA256_HEX = frozenset("0123456789abcdef")


# --- validation ---------------------------------------------------------------------------------------


# NUL cannot be stored in the database and other control characters mean nothing in a record or an id;
# newlines and tabs stay allowed in texts such as a purpose or a reason.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def text(value: str, field_name: str, *, limit: int = MAX_TEXT) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument(f"{field_name} is required (1–{limit} characters)")
    if len(value) > limit:
        raise InvalidArgument(f"{field_name} is {len(value)} characters long; at most {limit} are allowed")
    bad = _CONTROL.search(value)
    if bad:
        raise InvalidArgument(
            f"{field_name} contains the control character U+{ord(bad.group()):04X} at position "
            f"{bad.start()}; use plain text"
        )
    return value


def check_resources(resources: tuple[Resource, ...]) -> tuple[Resource, ...]:
    if not resources:
        raise InvalidArgument("resources: name at least one case or recording")
    if len(resources) > MAX_RESOURCES:
        raise InvalidArgument(f"resources: {len(resources)} named; at most {MAX_RESOURCES} per request")
    out: list[Resource] = []
    for i, r in enumerate(resources):
        rid = text(r.id, f"resources[{i}].id", limit=MAX_ID)
        item = Resource(r.kind, rid)
        if item not in out:
            out.append(item)
    return tuple(out)


def check_actions(actions: tuple[GrantedAction, ...]) -> tuple[GrantedAction, ...]:
    if not actions:
        raise InvalidArgument("actions: name at least one of VIEW, DOWNLOAD, EXPORT")
    return tuple(dict.fromkeys(actions))


def check_duration(duration: timedelta) -> timedelta:
    if not MIN_DURATION <= duration <= MAX_DURATION:
        raise InvalidArgument(
            f"duration: {duration.total_seconds():.0f} s is outside 60 s to 24 h (grants are short-lived)"
        )
    return duration


# --- the aggregate ------------------------------------------------------------------------------------


@dataclass
class AccessRequest:
    request_id: str
    requested: Attribution
    resources: tuple[Resource, ...]
    actions: tuple[GrantedAction, ...]
    purpose: str
    duration: timedelta
    owning_units: tuple[str, ...]
    state: RequestState = RequestState.PENDING
    decided: Attribution | None = None
    decision_reason: str = ""
    grant: Grant | None = None
    grant_token: str = ""
    key_id: str = ""
    revoked: Attribution | None = None
    revocation_reason: str = ""
    recipient: str = ""
    approvals: list[Approval] = field(default_factory=list)
    packages: list[DisclosurePackage] = field(default_factory=list)
    standing_order: str = ""  # set when a standing order (not a person) approved it
    filed_by: str = ""  # the service that filed it for the requester (on_behalf_of)
    version: int = 0
    pending_events: list[AccessEvent] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        *,
        request_id: str,
        requester: Actor,
        resources: tuple[Resource, ...],
        actions: tuple[GrantedAction, ...],
        purpose: str,
        duration: timedelta,
        owning_units: tuple[str, ...],
        now: datetime,
        recipient: str = "",
        standing_order: str = "",
        filed_by: str = "",
    ) -> AccessRequest:
        resources = check_resources(resources)
        recipient = text(recipient, "recipient", limit=200) if recipient.strip() else ""
        request = cls(
            request_id=request_id,
            requested=Attribution(requester.subject, requester.unit, now),
            resources=resources,
            actions=check_actions(actions),
            purpose=text(purpose, "purpose"),
            duration=check_duration(duration),
            owning_units=owning_units,
            recipient=recipient,
            standing_order=standing_order,
            filed_by=filed_by,
        )
        request.pending_events.append(
            AccessRequested(
                request_id,
                request.requested,
                request.resources,
                request.actions,
                request.purpose,
                request.duration,
                owning_units,
                recipient,
                standing_order,
                filed_by,
            )
        )
        return request

    @property
    def is_disclosure(self) -> bool:
        """An export or disclosure to a receiving body (R14, R15): two approvers."""
        return bool(self.recipient)

    def capacities(self) -> frozenset[str]:
        return frozenset(a.capacity for a in self.approvals)

    @property
    def requester(self) -> str:
        return self.requested.subject

    def _pending(self, what: str) -> None:
        if self.state is not RequestState.PENDING:
            raise FailedPrecondition(
                f"R16: request {self.request_id} is {self.state.value}, not PENDING: "
                f"it cannot be {what} again"
            )

    def approve(
        self, approver: Actor, reason: str, *, grant_id: str, now: datetime, capacity: str = UNIT
    ) -> Grant | None:
        """Records an approval in `capacity` (the caller checked `permissions.may_decide`). Returns the grant
        to sign once the request is approved: at once for an access request; for a disclosure only when the
        legal affairs office and the owning unit's head (two different people) have both approved."""
        self._pending("decided")
        reason = text(reason, "reason")
        approval = Approval(Attribution(approver.subject, approver.unit, now), reason, capacity)
        self.approvals.append(approval)
        if self.is_disclosure and self.capacities() != {LEGAL, UNIT}:
            self.pending_events.append(DisclosureApprovalRecorded(self.request_id, approval))
            return None
        return self._approve(grant_id, Attribution(approver.subject, approver.unit, now), reason)

    def approve_by_standing_order(
        self, *, approver: str, approver_unit: str, reason: str, grant_id: str, now: datetime
    ) -> Grant:
        """Approves a request made under a standing order: the approval is the order's, given in advance
        by its named approver (never the grantee, R16), recorded with the capacity STANDING_ORDER."""
        self._pending("decided")
        if not self.standing_order:
            raise FailedPrecondition(f"request {self.request_id} was not made under a standing order")
        if approver == self.requester:
            raise FailedPrecondition(f"R16: {approver} cannot approve a grant to themselves")
        by = Attribution(approver, approver_unit, now)
        self.approvals.append(Approval(by, text(reason, "reason"), STANDING))
        return self._approve(grant_id, by, self.approvals[-1].reason)

    def _approve(self, grant_id: str, by: Attribution, reason: str) -> Grant:
        """The request approved by `by`: its grant, for the requested records, actions, purpose and time."""
        self.grant = Grant(
            grant_id=grant_id,
            grantee_subject=self.requester,
            grantee_unit=self.requested.unit,
            resources=self.resources,
            actions=self.actions,
            purpose=self.purpose,
            approver_subject=by.subject,
            issued_at=by.at,
            expires_at=by.at + self.duration,
        )
        self.state = RequestState.APPROVED
        self.decided = by
        self.decision_reason = reason
        return self.grant

    def attach_token(self, token: str, key_id: str) -> None:
        """Records the signed token of the grant just approved, and the approval event with its key id."""
        assert self.grant is not None
        assert self.decided is not None
        self.grant_token, self.key_id = token, key_id
        self.pending_events.append(
            AccessRequestApproved(
                self.request_id,
                self.decided,
                self.decision_reason,
                self.grant,
                key_id,
                tuple(self.approvals),
                self.recipient,
                self.standing_order,
            )
        )

    def deny(self, approver: Actor, reason: str, *, now: datetime) -> None:
        self._pending("decided")
        self.state = RequestState.DENIED
        self.decided = Attribution(approver.subject, approver.unit, now)
        self.decision_reason = text(reason, "reason")
        self.pending_events.append(
            AccessRequestDenied(self.request_id, self.decided, self.decision_reason, self.requester)
        )

    def revoke(self, actor: Actor, reason: str, *, now: datetime) -> None:
        if self.grant is None:
            raise FailedPrecondition(f"request {self.request_id} has no grant to revoke ({self.state.value})")
        if self.state is RequestState.REVOKED:
            raise FailedPrecondition(f"grant {self.grant.grant_id} is already revoked")
        if self.state is RequestState.EXPIRED or now >= self.grant.expires_at:
            raise FailedPrecondition(
                f"grant {self.grant.grant_id} expired at {self.grant.expires_at.isoformat()}; "
                "nothing to revoke"
            )
        self.state = RequestState.REVOKED
        self.revoked = Attribution(actor.subject, actor.unit, now)
        self.revocation_reason = text(reason, "reason")
        self.grant_token = ""
        self.pending_events.append(
            AccessRevoked(
                self.grant.grant_id, self.request_id, self.revoked, self.revocation_reason, self.requester
            )
        )

    def record_package(
        self,
        actor: Actor,
        *,
        package_sha256: str,
        manifest_sha256: str,
        files: int,
        retained_copy: str,
        now: datetime,
    ) -> DisclosurePackage:
        """R14, R15: the package built for this approved disclosure and where its retained copy is."""
        if not self.is_disclosure:
            raise FailedPrecondition(f"request {self.request_id} is not a disclosure (it names no recipient)")
        if self.state not in (RequestState.APPROVED, RequestState.EXPIRED):
            raise FailedPrecondition(
                f"R15: disclosure {self.request_id} is {self.state.value}; a package is recorded only once "
                "it was approved by both the legal affairs office and the owning unit"
            )
        for name, value in (("package_sha256", package_sha256), ("manifest_sha256", manifest_sha256)):
            if len(value) != 64 or not set(value) <= SHA256_HEX:
                raise InvalidArgument(f"{name} must be 64 lowercase hex characters (a SHA-256)")
        if files < 0:
            raise InvalidArgument("files must not be negative")
        package = DisclosurePackage(
            package_sha256,
            manifest_sha256,
            files,
            text(retained_copy, "retained_copy"),
            Attribution(actor.subject, actor.unit, now),
        )
        self.packages.append(package)
        self.pending_events.append(DisclosurePackageCreated(self.request_id, self.recipient, package))
        return package

    def expire(self, now: datetime) -> bool:
        """Marks an approved grant past its expiry as EXPIRED (once); False when there is nothing to do."""
        if self.state is not RequestState.APPROVED or self.grant is None or now < self.grant.expires_at:
            return False
        self.state = RequestState.EXPIRED
        self.grant_token = ""
        self.pending_events.append(
            AccessGrantExpired(self.grant.grant_id, self.request_id, self.grant.expires_at)
        )
        return True
