"""Domain <-> protobuf for access-svc: requests, grants, checkpoints and events."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.access.v1 import access_events_pb2 as ev
from lawtrail.access.v1 import access_grant_pb2 as gpb
from lawtrail.access.v1 import access_service_pb2 as api
from lawtrail.common.v1 import common_pb2
from servicekit.errors import InvalidArgument
from servicekit.messaging.outbox import OutboundEvent
from servicekit.topics import events_topic_of

from access_svc.domain import model as m
from access_svc.domain.ledger import Checkpoint

TOPIC = events_topic_of(ev)

KINDS = {
    gpb.GRANT_RESOURCE_KIND_RECORDING: m.ResourceKind.RECORDING,
    gpb.GRANT_RESOURCE_KIND_CASE: m.ResourceKind.CASE,
}
KINDS_PB = {v: k for k, v in KINDS.items()}
ACTIONS = {
    gpb.GRANTED_ACTION_VIEW: m.GrantedAction.VIEW,
    gpb.GRANTED_ACTION_DOWNLOAD: m.GrantedAction.DOWNLOAD,
    gpb.GRANTED_ACTION_EXPORT: m.GrantedAction.EXPORT,
}
ACTIONS_PB = {v: k for k, v in ACTIONS.items()}
STATES_PB = {
    m.RequestState.PENDING: api.ACCESS_REQUEST_STATE_PENDING,
    m.RequestState.APPROVED: api.ACCESS_REQUEST_STATE_APPROVED,
    m.RequestState.DENIED: api.ACCESS_REQUEST_STATE_DENIED,
    m.RequestState.REVOKED: api.ACCESS_REQUEST_STATE_REVOKED,
    m.RequestState.EXPIRED: api.ACCESS_REQUEST_STATE_EXPIRED,
}
STATES = {v: k for k, v in STATES_PB.items()}


def ts(at: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(at.astimezone(UTC))
    return out


def from_ts(value: Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=UTC)


def attribution_pb(a: m.Attribution | None) -> common_pb2.Attribution | None:
    if a is None:
        return None
    return common_pb2.Attribution(subject=a.subject, unit=a.unit, at=ts(a.at))


def resources_from_pb(items: Iterable[gpb.GrantResource]) -> tuple[m.Resource, ...]:
    out = []
    for i, r in enumerate(items):
        if r.kind not in KINDS:
            raise InvalidArgument(f"resources[{i}].kind: name RECORDING or CASE")
        out.append(m.Resource(KINDS[r.kind], r.id))
    return tuple(out)


def actions_from_pb(items: Iterable[int]) -> tuple[m.GrantedAction, ...]:
    out = []
    for i, a in enumerate(items):
        if a not in ACTIONS:
            raise InvalidArgument(f"actions[{i}]: name VIEW, DOWNLOAD or EXPORT")
        out.append(ACTIONS[a])  # type: ignore[index]
    return tuple(out)


def duration_from_pb(d: Duration) -> timedelta:
    return d.ToTimedelta()


def approval_pb(a: m.Approval) -> common_pb2.Attribution:
    out = attribution_pb(a.by)
    assert out is not None
    return out


def resources_pb(resources: tuple[m.Resource, ...]) -> list[gpb.GrantResource]:
    return [gpb.GrantResource(kind=KINDS_PB[r.kind], id=r.id) for r in resources]


def grant_pb(g: m.Grant) -> gpb.AccessGrant:
    return gpb.AccessGrant(
        grant_id=g.grant_id,
        grantee_subject=g.grantee_subject,
        grantee_unit=g.grantee_unit,
        resources=resources_pb(g.resources),
        actions=[ACTIONS_PB[a] for a in g.actions],
        purpose=g.purpose,
        approver_subject=g.approver_subject,
        issued_at=ts(g.issued_at),
        expires_at=ts(g.expires_at),
        issuer=g.issuer,
    )


def request_pb(r: m.AccessRequest, *, with_token: bool) -> api.AccessRequest:
    d = Duration()
    d.FromTimedelta(r.duration)
    out = api.AccessRequest(
        request_id=r.request_id,
        requested=attribution_pb(r.requested),
        resources=resources_pb(r.resources),
        actions=[ACTIONS_PB[a] for a in r.actions],
        purpose=r.purpose,
        duration=d,
        owning_units=list(r.owning_units),
        state=STATES_PB[r.state],
        decision_reason=r.decision_reason,
        revocation_reason=r.revocation_reason,
    )
    out.recipient = r.recipient
    out.standing_order = r.standing_order
    out.filed_by = r.filed_by
    out.approvals.extend(approval_pb(a) for a in r.approvals)
    out.packages.extend(
        api.DisclosurePackage(
            package_sha256=p.package_sha256,
            manifest_sha256=p.manifest_sha256,
            files=p.files,
            retained_copy=p.retained_copy,
            recorded=attribution_pb(p.recorded),
        )
        for p in r.packages
    )
    for target, value in ((out.decided, r.decided), (out.revoked, r.revoked)):
        pb_value = attribution_pb(value)
        if pb_value is not None:
            target.CopyFrom(pb_value)
    if r.grant is not None:
        out.grant_id = r.grant.grant_id
        out.grant_expires_at.CopyFrom(ts(r.grant.expires_at))
    if with_token and r.state is m.RequestState.APPROVED:
        out.grant_token = r.grant_token
    return out


def checkpoint_pb(c: Checkpoint) -> ev.SignedCheckpoint:
    return ev.SignedCheckpoint(
        origin=c.origin,
        tree_size=c.tree_size,
        root_hash=c.root_hash,
        signed_at=ts(c.signed_at),
        key_id=c.key_id,
        signature=c.signature,
    )


def event_pb(e: m.AccessEvent):  # type: ignore[no-untyped-def]
    match e:
        case m.AccessRequested():
            return ev.AccessRequested(
                request_id=e.request_id,
                requested=attribution_pb(e.requested),
                resources=resources_pb(e.resources),
                actions=[ACTIONS_PB[a] for a in e.actions],
                purpose=e.purpose,
                duration_s=int(e.duration.total_seconds()),
                owning_units=list(e.owning_units),
                recipient=e.recipient,
                standing_order=e.standing_order,
                filed_by=e.filed_by,
            )
        case m.AccessRequestApproved():
            return ev.AccessRequestApproved(
                request_id=e.request_id,
                decided=attribution_pb(e.decided),
                reason=e.reason,
                grant=grant_pb(e.grant),
                key_id=e.key_id,
                approvals=[approval_pb(a) for a in e.approvals],
                recipient=e.recipient,
                standing_order=e.standing_order,
            )
        case m.AccessRequestDenied():
            return ev.AccessRequestDenied(
                request_id=e.request_id,
                decided=attribution_pb(e.decided),
                reason=e.reason,
                requester=e.requester,
            )
        case m.AccessRevoked():
            return ev.AccessRevoked(
                grant_id=e.grant_id,
                request_id=e.request_id,
                revoked=attribution_pb(e.revoked),
                reason=e.reason,
                grantee_subject=e.grantee_subject,
            )
        case m.DisclosureApprovalRecorded():
            return ev.DisclosureApprovalRecorded(
                request_id=e.request_id,
                approved=attribution_pb(e.approval.by),
                reason=e.approval.reason,
                capacity=e.approval.capacity,
            )
        case m.DisclosurePackageCreated():
            return ev.DisclosurePackageCreated(
                request_id=e.request_id,
                recipient=e.recipient,
                package_sha256=e.package.package_sha256,
                manifest_sha256=e.package.manifest_sha256,
                files=e.package.files,
                retained_copy=e.package.retained_copy,
                recorded=attribution_pb(e.package.recorded),
            )
        case m.AccessGrantExpired():
            return ev.AccessGrantExpired(
                grant_id=e.grant_id, request_id=e.request_id, expired_at=ts(e.expired_at)
            )
    raise TypeError(f"unknown event {e!r}")


def outbound(request: m.AccessRequest) -> list[OutboundEvent]:
    return [OutboundEvent(TOPIC, event_pb(e), subject=request.request_id) for e in request.pending_events]
