"""CloudEvents of other services -> the facts the rules read (domain/facts.py).

`FACTS` is the one table of the event types compliance-svc understands: a new topic's events are one
entry each (plus the topic in `LAWTRAIL_COMPLIANCE_TOPICS`). Types not in the table are ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.case.v1 import case_events_pb2 as case_pb
from lawtrail.case.v1 import case_pb2
from lawtrail.media.v1 import media_events_pb2 as media_pb
from servicekit.messaging.envelope import Envelope

from compliance_svc.domain import facts as f


def _time(value: Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=UTC)


def _ingested(e: Envelope, m: media_pb.RecordingIngested) -> f.Fact:
    c = m.classification
    return f.RecordingIngested(
        event_id=e.id,
        time=e.time,
        recording_id=m.recording_id,
        unit=c.unit,
        officer=c.officer,
        device=c.device_number,
        recorded_from=_time(c.recorded_from),
        recorded_to=_time(c.recorded_to),
        case_id=c.case_id,
        activity_id=c.activity_id,
        findings=tuple(f.IngestFinding(x.code, x.requirement, x.detail) for x in m.findings),
        ingest_delay_s=m.ingest_delay.ToTimedelta().total_seconds(),
    )


def _linked(e: Envelope, m: media_pb.RecordingLinked) -> f.Fact:
    return f.RecordingLinked(
        event_id=e.id,
        time=e.time,
        recording_id=m.recording_id,
        case_id=m.case_id,
        activity_id=m.activity_id,
        unit=m.unit,
        officer=m.officer,
        device=m.device_number,
        recorded_from=_time(m.recorded_from),
        recorded_to=_time(m.recorded_to),
    )


def _explained(e: Envelope, m: media_pb.InterruptionExplained) -> f.Fact:
    return f.InterruptionExplained(
        event_id=e.id,
        time=e.time,
        device=m.device_number,
        activity_id=m.activity_id,
        unit=m.unit,
        gap_from=_time(m.gap_from),
        gap_to=_time(m.gap_to),
    )


def _integrity(e: Envelope, m: media_pb.IntegrityCheckFailed) -> f.Fact:
    return f.IntegrityCheckFailed(
        event_id=e.id,
        time=e.time,
        recording_id=m.recording_id,
        unit=m.unit,
        detail=m.detail,
        detected_by=m.detected_by,
    )


def _activity(e: Envelope, m: case_pb.ActivityRecorded) -> f.Fact:
    a = m.activity
    return f.ActivityRecorded(
        event_id=e.id,
        time=e.time,
        case_id=m.case_id,
        unit=m.unit,
        activity_id=a.activity_id,
        officers=tuple(a.officers),
        exempt=a.record_mode == case_pb2.RECORD_MODE_EXEMPT,
        text_record=bool(a.text_record_document_id),
        ended_at=_time(a.ended_at),
    )


def _flagged(e: Envelope, m: case_pb.CaseFlagged) -> f.Fact:
    return f.CaseFlagged(
        event_id=e.id, time=e.time, case_id=m.case_id, unit=m.unit, flag=case_pb2.CaseFlag.Name(m.flag.flag)
    )


def _closed(e: Envelope, m: case_pb.CaseClosed) -> f.Fact:
    return f.CaseClosed(
        event_id=e.id, time=e.time, case_id=m.case_id, unit=m.unit, closed_by=m.transition.changed.subject
    )


def _opened(e: Envelope, m: case_pb.CaseOpened) -> f.Fact:
    return f.CaseOpened(
        event_id=e.id, time=e.time, case_id=m.case_id, unit=m.unit, officer=m.responsible_officer
    )


Mapper = Callable[[Envelope, Any], f.Fact]
_KNOWN: list[tuple[type[Message], Mapper]] = [
    (media_pb.RecordingIngested, _ingested),
    (media_pb.RecordingLinked, _linked),
    (media_pb.InterruptionExplained, _explained),
    (media_pb.IntegrityCheckFailed, _integrity),
    (case_pb.ActivityRecorded, _activity),
    (case_pb.CaseFlagged, _flagged),
    (case_pb.CaseClosed, _closed),
    (case_pb.CaseOpened, _opened),
]
FACTS: dict[str, tuple[type[Message], Mapper]] = {cls.DESCRIPTOR.full_name: (cls, m) for cls, m in _KNOWN}


def to_fact(envelope: Envelope) -> f.Fact | None:
    """The fact of an event, or None for a type compliance-svc does not read.

    Raises `InvalidEnvelope` for a payload that does not parse as its declared type (a poison message).
    """
    entry = FACTS.get(envelope.type)
    if entry is None:
        return None
    message_class, mapper = entry
    return mapper(envelope, envelope.parse(message_class))
