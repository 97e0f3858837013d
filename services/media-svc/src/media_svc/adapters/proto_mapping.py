"""Domain objects <-> the protobuf messages of `lawtrail.media.v1` (and `common.v1`): recordings, gaps,
scrub runs and devices, for the gRPC servicers and the event mapping alike (one place, so the API and the
events describe a recording with the same messages).

Times, durations and attributions map with servicekit.protomap (request times are checked — an invalid one
is INVALID_ARGUMENT naming the field — and truncated to milliseconds, the precision the database stores).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from lawtrail.common.v1 import common_pb2
from lawtrail.media.v1 import device_service_pb2 as dpb
from lawtrail.media.v1 import media_events_pb2 as ev
from lawtrail.media.v1 import recording_pb2 as rpb
from lawtrail.media.v1 import recording_service_pb2 as pb
from servicekit import paging, protomap
from servicekit.errors import InvalidArgument
from servicekit.protomap import duration_pb, optional_time, timestamp_pb

from media_svc.domain.commands import UploadManifest
from media_svc.domain.continuity import Explanation
from media_svc.domain.devices import Device, DeviceStatus, Fault, MaintenanceRecord, PreUseCheck
from media_svc.domain.fixity import ScrubRun, ScrubState
from media_svc.domain.recordings import (
    Attribution,
    Classification,
    Finding,
    IntegrityStatus,
    MediaFacts,
    MediaKind,
    Recording,
)
from media_svc.service_layer.handlers import SeriesGap

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
_SCRUB_STATE = {
    ScrubState.RUNNING: pb.FIXITY_SCRUB_STATE_RUNNING,
    ScrubState.FINISHED: pb.FIXITY_SCRUB_STATE_FINISHED,
    ScrubState.ABORTED: pb.FIXITY_SCRUB_STATE_ABORTED,
}
_DEVICE_STATUS = {
    DeviceStatus.IN_SERVICE: dpb.DEVICE_STATUS_IN_SERVICE,
    DeviceStatus.OUT_OF_SERVICE: dpb.DEVICE_STATUS_OUT_OF_SERVICE,
}


def attribution_pb(a: Attribution) -> common_pb2.Attribution:
    return protomap.attribution_pb(a.subject, a.unit, a.at)


# -- recordings: protobuf -> domain -----------------------------------------------------------------


def classification_from(c: rpb.Classification) -> Classification:
    return Classification.create(
        unit=c.unit,
        device_number=c.device_number,
        officer=c.officer,
        recorded_from=optional_time(c, "recorded_from"),
        recorded_to=optional_time(c, "recorded_to"),
        media_kind=MEDIA_KIND_FROM_PB.get(c.media_kind),
        party_informed=c.party_informed,
        party=c.party,
        case_cause=c.case_cause,
        case_id=c.case_id,
        activity_id=c.activity_id,
    )


def manifest_from(m: pb.UploadManifest) -> UploadManifest:
    if not m.HasField("classification"):
        raise InvalidArgument(
            "manifest.classification is required (R17: unit, device, officer, times, kind…)"
        )
    return UploadManifest(classification_from(m.classification), m.sha256, m.size_bytes)


# -- recordings: domain -> protobuf -----------------------------------------------------------------


def classification_message(c: Classification) -> rpb.Classification:
    return rpb.Classification(
        unit=c.unit,
        device_number=c.device_number,
        officer=c.officer,
        recorded_from=timestamp_pb(c.recorded_from),
        recorded_to=timestamp_pb(c.recorded_to),
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
        duration=duration_pb(f.duration),
        codecs=list(f.codecs),
        width=f.width,
        height=f.height,
    )
    if f.creation_time is not None:
        msg.creation_time.CopyFrom(timestamp_pb(f.creation_time))
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
        ingested=attribution_pb(r.ingested),
        ingest_delay=duration_pb(r.ingest_delay),
        link=rpb.RecordingLink(
            case_id=r.link.case_id,
            activity_id=r.link.activity_id,
            linked_by_legal_office=r.link.by_legal_office,
            case_cause=r.case_particulars.cause if r.case_particulars else "",
            case_parties=r.case_particulars.parties if r.case_particulars else (),
        ),
        integrity=_INTEGRITY[r.integrity],
    )
    if r.link.linked is not None:
        msg.link.linked.CopyFrom(attribution_pb(r.link.linked))
    if r.integrity_checked_at is not None:
        msg.integrity_checked_at.CopyFrom(timestamp_pb(r.integrity_checked_at))
    return msg


def explanation_message(e: Explanation) -> ev.InterruptionExplanation:
    msg = ev.InterruptionExplanation(explained=attribution_pb(e.explained))
    if e.spoken_in_recording_id:
        msg.in_recording.CopyFrom(
            ev.SpokenExplanation(
                recording_id=e.spoken_in_recording_id, offset=duration_pb(e.spoken_offset or timedelta(0))
            )
        )
    else:
        msg.written_text = e.written_text
    return msg


def gap_message(g: SeriesGap) -> pb.RecordingGap:
    msg = pb.RecordingGap(
        device_number=g.series.device_number,
        case_id=g.series.case_id,
        activity_id=g.series.activity_id,
        unit=g.series.unit,
        previous_recording_id=g.gap.previous_recording_id,
        next_recording_id=g.gap.next_recording_id,
        gap_from=timestamp_pb(g.gap.gap_from),
        gap_to=timestamp_pb(g.gap.gap_to),
        duration=duration_pb(g.gap.duration),
    )
    if g.explanation is not None:
        msg.explanation.CopyFrom(explanation_message(g.explanation))
    return msg


def scrub_message(run: ScrubRun) -> pb.FixityScrubRun:
    msg = pb.FixityScrubRun(
        run_id=run.run_id,
        state=_SCRUB_STATE[run.state],
        started_at=timestamp_pb(run.started_at),
        recordings_total=run.recordings_total,
        recordings_checked=run.recordings_checked,
        bytes_total=run.bytes_total,
        bytes_checked=run.bytes_checked,
        failures=run.failures,
        triggered_by=run.triggered_by,
    )
    if run.finished_at is not None:
        msg.finished_at.CopyFrom(timestamp_pb(run.finished_at))
    return msg


# -- devices ----------------------------------------------------------------------------------------


def fault_message(fault: Fault, unit: str) -> dpb.Fault:
    message = dpb.Fault(
        fault_id=fault.fault_id,
        description=fault.description,
        reported=protomap.attribution_pb(fault.reported_by, unit, fault.reported_at),
        repair_note=fault.repair_note or "",
    )
    if fault.repaired_at is not None and fault.repaired_by is not None:
        message.repaired.CopyFrom(protomap.attribution_pb(fault.repaired_by, unit, fault.repaired_at))
    return message


def device_message(device: Device, maintenance: list[MaintenanceRecord] | None = None) -> dpb.Device:
    return dpb.Device(
        device_number=device.device_number,
        unit=device.unit,
        model=device.model,
        status=_DEVICE_STATUS[device.status],
        registered=protomap.attribution_pb(device.registered_by, device.unit, device.registered_at),
        faults=[fault_message(f, device.unit) for f in device.faults],
        recent_maintenance=[maintenance_message(m) for m in maintenance or []],
    )


def check_message(check: PreUseCheck) -> dpb.PreUseCheck:
    return dpb.PreUseCheck(
        check_id=check.check_id,
        device_number=check.device_number,
        unit=check.unit,
        battery_percent=check.battery_percent,
        free_storage_bytes=check.free_storage_bytes,
        clock_offset=duration_pb(timedelta(seconds=check.clock_offset_s)),
        checked=protomap.attribution_pb(check.checked_by, check.unit, check.checked_at),
        shift_start=timestamp_pb(check.shift_start),
        shift_end=timestamp_pb(check.shift_end),
        passed=check.passed,
        failures=list(check.failures),
    )


def maintenance_message(record: MaintenanceRecord) -> dpb.MaintenanceRecord:
    return dpb.MaintenanceRecord(
        maintenance_id=record.maintenance_id,
        device_number=record.device_number,
        unit=record.unit,
        description=record.description,
        performed=protomap.attribution_pb(record.performed_by, record.unit, record.performed_at),
    )


def encode_device_page_token(after: str | None) -> str:
    """The token of the device page after device number `after`; empty after the last page."""
    return "" if after is None else paging.encode_page_token([after])


def decode_device_page_token(token: str) -> str | None:
    position = paging.decode_page_token(token)
    if position is None:
        return None
    if len(position) != 1 or not isinstance(position[0], str):
        raise paging.foreign_page_token()
    return position[0]
