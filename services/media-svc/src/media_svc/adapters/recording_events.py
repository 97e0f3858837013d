"""Domain recordings ↔ protobuf, and domain events → the published media events (one place).

Key and CloudEvents subject of every recording event = the recording id, so one recording's events stay
ordered on `lawtrail.media.v1.events`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.common.v1 import common_pb2
from lawtrail.media.v1 import media_events_pb2 as ev
from lawtrail.media.v1 import recording_pb2 as rpb
from servicekit.messaging.outbox import OutboundEvent

from media_svc.domain.access import ContentAccessed
from media_svc.domain.continuity import Explanation, InterruptionExplained
from media_svc.domain.recordings import (
    Attribution,
    Classification,
    Finding,
    IntegrityCheckFailed,
    IntegrityStatus,
    MediaFacts,
    MediaKind,
    Recording,
    RecordingEvent,
    RecordingIngested,
    RecordingLinked,
)

TOPIC = "lawtrail.media.v1.events"

MEDIA_KIND_TO_PB = {
    MediaKind.VIDEO: rpb.MEDIA_KIND_VIDEO,
    MediaKind.AUDIO: rpb.MEDIA_KIND_AUDIO,
    MediaKind.PHOTO: rpb.MEDIA_KIND_PHOTO,
}
MEDIA_KIND_FROM_PB = {v: k for k, v in MEDIA_KIND_TO_PB.items()}
_INTEGRITY = {
    IntegrityStatus.UNVERIFIED: rpb.INTEGRITY_STATUS_UNSPECIFIED,
    IntegrityStatus.VERIFIED: rpb.INTEGRITY_STATUS_VERIFIED,
    IntegrityStatus.FAILED: rpb.INTEGRITY_STATUS_FAILED,
}


def timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def from_timestamp(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def duration(value: timedelta) -> Duration:
    d = Duration()
    d.FromTimedelta(value)
    return d


def attribution(a: Attribution) -> common_pb2.Attribution:
    return common_pb2.Attribution(subject=a.subject, unit=a.unit, at=timestamp(a.at))


def classification_message(c: Classification) -> rpb.Classification:
    return rpb.Classification(
        unit=c.unit,
        device_number=c.device_number,
        officer=c.officer,
        recorded_from=timestamp(c.recorded_from),
        recorded_to=timestamp(c.recorded_to),
        party=c.party,
        case_cause=c.case_cause,
        media_kind=MEDIA_KIND_TO_PB[c.media_kind],
        party_informed=c.party_informed,
        case_id=c.case_id,
        activity_id=c.activity_id,
    )


def facts_message(f: MediaFacts) -> rpb.MediaFacts:
    msg = rpb.MediaFacts(
        format_name=f.format_name,
        duration=duration(f.duration),
        codecs=list(f.codecs),
        width=f.width,
        height=f.height,
    )
    if f.creation_time is not None:
        msg.creation_time.CopyFrom(timestamp(f.creation_time))
    return msg


def findings_messages(findings: Iterable[Finding]) -> list[rpb.Finding]:
    return [rpb.Finding(code=f.code, requirement=f.requirement, detail=f.detail) for f in findings]


def recording_message(r: Recording) -> rpb.Recording:
    msg = rpb.Recording(
        recording_id=r.recording_id,
        sha256=r.sha256,
        size_bytes=r.size_bytes,
        classification=classification_message(r.classification),
        facts=facts_message(r.facts),
        findings=findings_messages(r.findings),
        ingested=attribution(r.ingested),
        ingest_delay=duration(r.ingest_delay),
        link=rpb.RecordingLink(case_id=r.link.case_id, activity_id=r.link.activity_id),
        integrity=_INTEGRITY[r.integrity],
    )
    if r.link.linked is not None:
        msg.link.linked.CopyFrom(attribution(r.link.linked))
    if r.integrity_checked_at is not None:
        msg.integrity_checked_at.CopyFrom(timestamp(r.integrity_checked_at))
    return msg


def explanation_message(e: Explanation) -> ev.InterruptionExplanation:
    msg = ev.InterruptionExplanation(explained=attribution(e.explained))
    if e.spoken_in_recording_id:
        msg.in_recording.CopyFrom(
            ev.SpokenExplanation(
                recording_id=e.spoken_in_recording_id, offset=duration(e.spoken_offset or timedelta(0))
            )
        )
    else:
        msg.written_text = e.written_text
    return msg


def to_message(event: RecordingEvent | InterruptionExplained | ContentAccessed) -> tuple[str, Message]:
    """(subject = recording id, protobuf message) of a domain event."""
    match event:
        case RecordingIngested(recording=r):
            return r.recording_id, ev.RecordingIngested(
                recording_id=r.recording_id,
                sha256=r.sha256,
                size_bytes=r.size_bytes,
                classification=classification_message(r.classification),
                facts=facts_message(r.facts),
                findings=findings_messages(r.findings),
                ingested=attribution(r.ingested),
                ingest_delay=duration(r.ingest_delay),
            )
        case RecordingLinked(recording=r):
            c = r.classification
            return r.recording_id, ev.RecordingLinked(
                recording_id=r.recording_id,
                case_id=event.case_id,
                activity_id=event.activity_id,
                unit=c.unit,
                media_kind=MEDIA_KIND_TO_PB[c.media_kind],
                recorded_from=timestamp(c.recorded_from),
                recorded_to=timestamp(c.recorded_to),
                device_number=c.device_number,
                officer=c.officer,
                sha256=r.sha256,
                party_informed=c.party_informed,
                linked=attribution(event.linked),
            )
        case IntegrityCheckFailed():
            return event.recording_id, ev.IntegrityCheckFailed(
                recording_id=event.recording_id,
                expected_sha256=event.expected_sha256,
                actual_sha256=event.actual_sha256,
                first_bad_offset=event.first_bad_offset,
                detected_by=event.detected_by,
                unit=event.unit,
                detected_at=timestamp(event.detected_at),
                detail=event.detail,
            )
        case InterruptionExplained(series=s, gap=g, explanation=e):
            return g.next_recording_id, ev.InterruptionExplained(
                recording_id=g.next_recording_id,
                previous_recording_id=g.previous_recording_id,
                device_number=s.device_number,
                case_id=s.case_id,
                activity_id=s.activity_id,
                unit=s.unit,
                gap_from=timestamp(g.gap_from),
                gap_to=timestamp(g.gap_to),
                explanation=explanation_message(e),
            )
        case ContentAccessed():
            return event.recording_id, ev.ContentAccessed(
                recording_id=event.recording_id,
                sha256=event.sha256,
                accessed=common_pb2.Attribution(
                    subject=event.subject, unit=event.subject_unit, at=timestamp(event.at)
                ),
                grant_id=event.grant_id,
                purpose=event.purpose,
                approver=event.approver,
                unit=event.unit,
            )
    raise TypeError(f"no published message for {type(event).__name__}")


def to_outbound(
    events: Iterable[RecordingEvent | InterruptionExplained | ContentAccessed],
) -> list[OutboundEvent]:
    out = []
    for event in events:
        subject, message = to_message(event)
        out.append(OutboundEvent(TOPIC, message, subject=subject))
    return out
