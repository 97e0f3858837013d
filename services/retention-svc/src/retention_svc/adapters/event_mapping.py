"""Domain ↔ protobuf: the Retention message (API and events) and the events retention-svc publishes."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.retention.v1 import retention_events_pb2 as ev
from lawtrail.retention.v1 import retention_pb2 as pb
from servicekit.messaging.outbox import OutboundEvent
from servicekit.topics import events_topic_of

from retention_svc.domain.retention import (
    CaseRecord,
    Decision,
    Hold,
    RecordingRecord,
    RecordKind,
    RetentionEvent,
    RetentionState,
)

TOPIC = events_topic_of(ev)

_STATE = {
    RetentionState.DATED: pb.RETENTION_STATE_DATED,
    RetentionState.PENDING: pb.RETENTION_STATE_PENDING,
    RetentionState.PERMANENT: pb.RETENTION_STATE_PERMANENT,
}
_KIND = {RecordKind.CASE_FILE: pb.RECORD_KIND_CASE_FILE, RecordKind.RECORDING: pb.RECORD_KIND_RECORDING}


def stamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    result = Timestamp()
    result.FromDatetime(value)
    return result


def hold_message(hold: Hold) -> pb.LongTermHold:
    return pb.LongTermHold(
        incident_id=hold.incident_id,
        incident_kind=hold.incident_kind,
        reason=hold.reason,
        case_id=hold.case_id,
        source_event=hold.source_event,
        placed_at=stamp(hold.placed_at),
    )


def retention_message(record: CaseRecord | RecordingRecord) -> pb.Retention:
    decision = record.decision
    assert decision is not None
    if isinstance(record, CaseRecord):
        message = _decision(decision, RecordKind.CASE_FILE, record.case_id, record.unit, record.case_id)
    else:
        message = _decision(decision, RecordKind.RECORDING, record.recording_id, record.unit, record.case_id)
        message.holds.extend(
            hold_message(h) for h in sorted(record.holds.values(), key=lambda h: (h.placed_at, h.incident_id))
        )
    if record.extended_until is not None:
        message.extended_until.FromDatetime(record.extended_until)
    return message


def _decision(decision: Decision, kind: RecordKind, record_id: str, unit: str, case_id: str) -> pb.Retention:
    return pb.Retention(
        record_kind=_KIND[kind],
        record_id=record_id,
        unit=unit,
        case_id=case_id,
        state=_STATE[decision.state],
        retain_until=stamp(decision.retain_until),
        rules=[
            pb.AppliedRule(
                rule_class=r.rule_class, period=r.period, source=r.source, until=stamp(r.until), why=r.why
            )
            for r in decision.rules
        ],
        summary=decision.summary,
    )


def to_outbound(record: CaseRecord | RecordingRecord, events: list[RetentionEvent]) -> list[OutboundEvent]:
    out: list[OutboundEvent] = []
    for event in events:
        if event.kind == "RetentionAssigned":
            message: object = ev.RetentionAssigned(retention=retention_message(record))
        elif event.kind == "RetentionChanged":
            assert event.previous_state is not None
            message = ev.RetentionChanged(
                retention=retention_message(record), previous_state=_STATE[event.previous_state]
            )
        elif event.kind == "LongTermHoldPlaced":
            assert event.hold is not None
            message = ev.LongTermHoldPlaced(
                recording_id=event.record_id,
                sha256=event.sha256,
                unit=record.unit,
                hold=hold_message(event.hold),
            )
        else:  # pragma: no cover - the domain emits only the kinds above
            raise ValueError(f"unknown retention event {event.kind}")
        # Key = the record the event is about: the recording (holds, its retention) or the case file.
        out.append(OutboundEvent(TOPIC, message, subject=event.record_id))  # type: ignore[arg-type]
    return out
