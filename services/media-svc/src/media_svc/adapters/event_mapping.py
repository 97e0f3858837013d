"""Domain events -> the published events of media-svc on `lawtrail.media.v1.events` (one place).

Key and CloudEvents subject: the recording id for recording events (one recording's events stay
ordered), the viewer's subject for a search (RecordingsSearched, as case-svc's CasesSearched), the device
number for device events. Messages describe recordings with the same mapping as the
API (adapters/proto_mapping.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta

from google.protobuf.message import Message
from lawtrail.media.v1 import device_events_pb2
from lawtrail.media.v1 import media_events_pb2 as ev
from lawtrail.media.v1 import recording_pb2 as rpb
from servicekit import protomap
from servicekit.messaging.outbox import OutboundEvent
from servicekit.protomap import duration_pb, timestamp_pb
from servicekit.topics import events_topic_of

from media_svc.adapters.proto_mapping import (
    MEDIA_KIND_TO_PB,
    attribution_pb,
    classification_message,
    explanation_message,
    facts_message,
    findings_messages,
)
from media_svc.domain.events import (
    ContentAccessed,
    DeviceChecked,
    DeviceEvent,
    DeviceFaultReported,
    DeviceMaintained,
    DeviceRegistered,
    DeviceReturnedToService,
    IntegrityCheckFailed,
    InterruptionExplained,
    RecordingEvent,
    RecordingIngested,
    RecordingLinked,
    RecordingsSearched,
    RecordingViewed,
)

TOPIC = events_topic_of(ev)  # lawtrail.media.v1.events (device events share it: device_events.proto)

MediaEvent = RecordingEvent | InterruptionExplained | ContentAccessed | RecordingViewed | RecordingsSearched


def recording_message_of(event: MediaEvent) -> tuple[str, Message]:
    """(subject, protobuf message) of a recording event: the subject is the recording id, or the viewer
    for a search."""
    match event:
        case RecordingIngested(recording=r):
            return r.recording_id, ev.RecordingIngested(
                recording_id=r.recording_id,
                sha256=r.sha256,
                size_bytes=r.size_bytes,
                classification=classification_message(r.classification),
                facts=facts_message(r.facts),
                findings=findings_messages(r.findings),
                ingested=attribution_pb(r.ingested),
                ingest_delay=duration_pb(r.ingest_delay),
            )
        case RecordingLinked(recording=r):
            c = r.classification
            return r.recording_id, ev.RecordingLinked(
                recording_id=r.recording_id,
                case_id=event.case_id,
                activity_id=event.activity_id,
                unit=c.unit,
                media_kind=MEDIA_KIND_TO_PB[c.media_kind],
                recorded_from=timestamp_pb(c.recorded_from),
                recorded_to=timestamp_pb(c.recorded_to),
                device_number=c.device_number,
                officer=c.officer,
                sha256=r.sha256,
                party_informed=c.party_informed,
                linked=attribution_pb(event.linked),
                linked_by_legal_office=event.by_legal_office,
            )
        case IntegrityCheckFailed():
            return event.recording_id, ev.IntegrityCheckFailed(
                recording_id=event.recording_id,
                expected_sha256=event.expected_sha256,
                actual_sha256=event.actual_sha256,
                first_bad_offset=event.first_bad_offset,
                detected_by=event.detected_by,
                unit=event.unit,
                detected_at=timestamp_pb(event.detected_at),
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
                gap_from=timestamp_pb(g.gap_from),
                gap_to=timestamp_pb(g.gap_to),
                explanation=explanation_message(e),
            )
        case ContentAccessed():
            return event.recording_id, ev.ContentAccessed(
                recording_id=event.recording_id,
                sha256=event.sha256,
                accessed=protomap.attribution_pb(event.subject, event.subject_unit, event.at),
                grant_id=event.grant_id,
                purpose=event.purpose,
                approver=event.approver,
                unit=event.unit,
            )
        case RecordingViewed():
            return event.recording_id, ev.RecordingViewed(
                recording_id=event.recording_id,
                unit=event.unit,
                viewer=event.viewer,
                viewer_unit=event.viewer_unit,
                at=timestamp_pb(event.at),
                rpc=event.rpc,
            )
        case RecordingsSearched(query=q):
            return event.viewer, ev.RecordingsSearched(
                viewer=event.viewer,
                viewer_unit=event.viewer_unit,
                at=timestamp_pb(event.at),
                rpc=event.rpc,
                unit=q.unit,
                recording_ids=event.recording_ids,
                device_number=q.device_number,
                officer=q.officer,
                party=q.party,
                case_cause=q.case_cause,
                case_id=q.case_id,
                media_kind=MEDIA_KIND_TO_PB[q.media_kind] if q.media_kind else rpb.MEDIA_KIND_UNSPECIFIED,
                recorded_after=timestamp_pb(q.recorded_after) if q.recorded_after else None,
                recorded_before=timestamp_pb(q.recorded_before) if q.recorded_before else None,
            )
    raise TypeError(f"no published message for {type(event).__name__}")


def device_message_of(event: DeviceEvent) -> Message:
    match event:
        case DeviceRegistered():
            return device_events_pb2.DeviceRegistered(
                device_number=event.device_number,
                unit=event.unit,
                model=event.model,
                registered=protomap.attribution_pb(event.by, event.unit, event.at),
            )
        case DeviceChecked(check=c):
            return device_events_pb2.DeviceChecked(
                device_number=c.device_number,
                unit=c.unit,
                check_id=c.check_id,
                battery_percent=c.battery_percent,
                free_storage_bytes=c.free_storage_bytes,
                clock_offset=duration_pb(timedelta(seconds=c.clock_offset_s)),
                shift_start=timestamp_pb(c.shift_start),
                shift_end=timestamp_pb(c.shift_end),
                passed=c.passed,
                failures=list(c.failures),
                checked=protomap.attribution_pb(c.checked_by, c.unit, c.checked_at),
            )
        case DeviceMaintained(maintenance=m):
            return device_events_pb2.DeviceMaintained(
                device_number=m.device_number,
                unit=m.unit,
                maintenance_id=m.maintenance_id,
                description=m.description,
                performed=protomap.attribution_pb(m.performed_by, m.unit, m.performed_at),
            )
        case DeviceFaultReported(fault=f):
            return device_events_pb2.DeviceFaultReported(
                device_number=event.device_number,
                unit=event.unit,
                fault_id=f.fault_id,
                description=f.description,
                reported=protomap.attribution_pb(f.reported_by, event.unit, f.reported_at),
            )
        case DeviceReturnedToService(fault=f):
            assert f.repaired_at is not None
            assert f.repaired_by is not None
            return device_events_pb2.DeviceReturnedToService(
                device_number=event.device_number,
                unit=event.unit,
                fault_id=f.fault_id,
                repair_note=f.repair_note or "",
                out_of_service_since=timestamp_pb(f.reported_at),
                repaired=protomap.attribution_pb(f.repaired_by, event.unit, f.repaired_at),
            )
    raise TypeError(f"not a device event: {event!r}")


def device_number_of(event: DeviceEvent) -> str:
    match event:
        case DeviceChecked(check=c):
            return c.device_number
        case DeviceMaintained(maintenance=m):
            return m.device_number
        case _:
            return event.device_number


def to_outbound(events: Iterable[MediaEvent]) -> list[OutboundEvent]:
    """The outbox records of recording, continuity and access events."""
    out = []
    for event in events:
        subject, message = recording_message_of(event)
        out.append(OutboundEvent(TOPIC, message, subject=subject))
    return out


def device_outbound(events: Iterable[DeviceEvent]) -> Sequence[OutboundEvent]:
    """The outbox records of device events."""
    return [OutboundEvent(TOPIC, device_message_of(e), subject=device_number_of(e)) for e in events]
