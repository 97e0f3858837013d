"""Finding <-> protobuf (lawtrail.compliance.v1)."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.common.v1 import common_pb2
from lawtrail.compliance.v1 import compliance_events_pb2 as events_pb
from lawtrail.compliance.v1 import finding_pb2 as pb
from servicekit.errors import InvalidArgument

from compliance_svc.domain.model import Attribution, Finding, Severity, State

SEVERITY_PB = {Severity.MINOR: pb.SEVERITY_MINOR, Severity.SERIOUS: pb.SEVERITY_SERIOUS}
STATE_PB = {
    State.OPEN: pb.FINDING_STATE_OPEN,
    State.ACKNOWLEDGED: pb.FINDING_STATE_ACKNOWLEDGED,
    State.RESOLVED: pb.FINDING_STATE_RESOLVED,
}


def ts(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def attribution_pb(value: Attribution) -> common_pb2.Attribution:
    return common_pb2.Attribution(subject=value.subject, unit=value.unit, at=ts(value.at))


def finding_pb(finding: Finding) -> pb.Finding:
    message = pb.Finding(
        finding_id=finding.finding_id,
        article=finding.article,
        code=finding.code,
        severity=SEVERITY_PB[finding.severity],
        consequence=finding.consequence,
        unit=finding.unit,
        officer=finding.officer,
        subject=finding.subject,
        detail=finding.detail,
        evidence_event_ids=list(finding.evidence),
        raised_at=ts(finding.raised_at),
        state=STATE_PB[finding.state],
        disposition=finding.disposition,
    )
    if finding.acknowledged:
        message.acknowledged.CopyFrom(attribution_pb(finding.acknowledged))
    if finding.resolved:
        message.resolved.CopyFrom(attribution_pb(finding.resolved))
    return message


def severity_from_pb(value: int) -> Severity | None:
    if value == pb.SEVERITY_UNSPECIFIED:
        return None
    for severity, number in SEVERITY_PB.items():
        if number == value:
            return severity
    raise InvalidArgument(f"severity: unknown value {value}")


def state_from_pb(value: int) -> State | None:
    if value == pb.FINDING_STATE_UNSPECIFIED:
        return None
    for state, number in STATE_PB.items():
        if number == value:
            return state
    raise InvalidArgument(f"state: unknown value {value}")


def raised_event(finding: Finding) -> events_pb.FindingRaised:
    return events_pb.FindingRaised(finding=finding_pb(finding))


def changed_event(finding: Finding) -> events_pb.FindingAcknowledged | events_pb.FindingResolved:
    if finding.state is State.RESOLVED and finding.resolved:
        return events_pb.FindingResolved(
            finding_id=finding.finding_id,
            unit=finding.unit,
            severity=SEVERITY_PB[finding.severity],
            disposition=finding.disposition,
            resolved=attribution_pb(finding.resolved),
        )
    assert finding.acknowledged is not None
    return events_pb.FindingAcknowledged(
        finding_id=finding.finding_id, unit=finding.unit, acknowledged=attribution_pb(finding.acknowledged)
    )
