"""The retention chapter of `make run`'s guided tour (R13): a complaint on the tour's case places a
long-term hold on its recording, and an offline copy is written and verified — step by step.

Through the public APIs only: a recording (a 2-second test video made with ffmpeg) is uploaded to media-svc
linked to the case, a COMPLAINT is recorded in case-svc, retention-svc is asked why the recording is kept
until the hold shows, then for an ISO offline copy (it reads the content through media-svc's verified
download, under a grant access-svc issued to retention-svc under the standing order `r13-offline-copy`),
the image is re-read offline exactly as `lawtrail verify-copy` does, and the legal affairs office finds
that grant in access-svc.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.access.v1 import access_service_pb2, access_service_pb2_grpc
from lawtrail.case.v1 import case_pb2, case_service_pb2, case_service_pb2_grpc
from lawtrail.media.v1 import recording_pb2, recording_service_pb2, recording_service_pb2_grpc
from lawtrail.retention.v1 import retention_pb2, retention_service_pb2, retention_service_pb2_grpc
from lawtrail_client.offline_copy import verify
from servicekit.auth.devtoken import mint_token

from lawtrail_local.errors import StackError

CHUNK = 256 * 1024


def _say(text: str) -> None:
    print(text, flush=True)


def _stamp(value: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(value)
    return result


def _metadata(key: bytes, subject: str, unit: str, role: str) -> tuple[tuple[str, str], ...]:
    token = mint_token(key, subject=subject, unit=unit, roles=[role], ttl_s=600)
    return (("authorization", f"Bearer {token}"),)


def _make_video(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=2:size=320x240:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
         "-preset", "ultrafast", "-c:a", "aac", "-shortest", "-metadata", f"title=tour-{time.time_ns()}",
         str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    return path


def _upload(media_address: str, key: bytes, officer: str, unit: str, case_id: str, video: Path) -> str:
    data = video.read_bytes()
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    manifest = recording_service_pb2.UploadManifest(
        classification=recording_pb2.Classification(
            unit=unit,
            device_number="CAM-TOUR-1",
            officer=officer,
            recorded_from=_stamp(end - timedelta(seconds=2)),
            recorded_to=_stamp(end),
            party="Demo Property Management Ltd",
            case_cause="Fire-safety inspection",
            media_kind=recording_pb2.MEDIA_KIND_VIDEO,
            party_informed=True,
            case_id=case_id,
        ),
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )

    def requests() -> Iterator[recording_service_pb2.UploadRecordingRequest]:
        yield recording_service_pb2.UploadRecordingRequest(
            header=recording_service_pb2.UploadHeader(manifest=manifest)
        )
        for i in range(0, len(data), CHUNK):
            yield recording_service_pb2.UploadRecordingRequest(chunk=data[i : i + CHUNK])

    with grpc.insecure_channel(media_address) as channel:
        response = recording_service_pb2_grpc.RecordingServiceStub(channel).UploadRecording(
            requests(), metadata=_metadata(key, officer, unit, "OFFICER"), timeout=120
        )
    return str(response.recording.recording_id)


async def retention_chapter(
    *,
    case_address: str,
    media_address: str,
    retention_address: str,
    private_key_pem: bytes,
    case_id: str,
    unit: str,
    officer: str,
    work_dir: Path,
    access_address: str | None = None,
) -> str:
    """Runs the chapter on the tour's case; returns the path of the verified offline copy. With
    `access_address`, also shows the standing grant access-svc issued for the copy."""
    key = private_key_pem
    _say("")
    _say("Chapter 2 — retention (R13 第十三条): a complaint places a long-term hold; an offline copy")
    video = await asyncio.to_thread(_make_video, work_dir / "tour-recording.mp4")
    recording_id = await asyncio.to_thread(_upload, media_address, key, officer, unit, case_id, video)
    _say(f"2.1 uploaded recording {recording_id} to media-svc, linked to case {case_id}")

    def complain() -> None:
        with grpc.insecure_channel(case_address) as channel:
            case_service_pb2_grpc.CaseServiceStub(channel).RecordIncident(
                case_service_pb2.RecordIncidentRequest(
                    case_id=case_id,
                    kind=case_pb2.INCIDENT_KIND_COMPLAINT,
                    occurred_at=_stamp(datetime.now(UTC) - timedelta(minutes=5)),
                    reporter="Demo Property Management Ltd",
                    description="The party complains about how the inspection was carried out",
                ),
                metadata=_metadata(key, officer, unit, "OFFICER"),
                timeout=30,
            )

    await asyncio.to_thread(complain)
    _say("2.2 recorded a COMPLAINT incident on the case in case-svc → CaseIncidentRecorded")

    head = _metadata(key, "head-demo", unit, "UNIT_HEAD")
    async with grpc.aio.insecure_channel(retention_address) as channel:
        stub = retention_service_pb2_grpc.RetentionServiceStub(channel)
        deadline = time.monotonic() + 60
        retention: retention_pb2.Retention | None = None
        while time.monotonic() < deadline:
            try:
                answer = await stub.ExplainRetention(
                    retention_service_pb2.ExplainRetentionRequest(recording_id=recording_id),
                    metadata=head,
                    timeout=10,
                )
                if answer.retention.holds:
                    retention = answer.retention
                    break
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            await asyncio.sleep(0.5)
        if retention is None:
            raise StackError(f"retention-svc did not hold recording {recording_id} within 60 s")
        hold = retention.holds[0]
        _say(f"2.3 retention-svc holds the recording: {retention_pb2.RetentionState.Name(retention.state)}")
        _say(f"    reason: {hold.reason}; source event {hold.source_event}")
        for rule in retention.rules:
            _say(f"    rule {rule.rule_class} ({rule.period}): {rule.why}")

        _say("2.4 asked retention-svc for an ISO offline copy (read via media-svc's verified download)")
        copy: retention_pb2.OfflineCopy | None = None
        async for part in stub.CreateOfflineCopy(
            retention_service_pb2.CreateOfflineCopyRequest(
                case_id=case_id,
                format=retention_pb2.COPY_FORMAT_ISO,
                storage_location="archive room, demo shelf",
            ),
            metadata=_metadata(key, "archivist-demo", unit, "ARCHIVIST"),
            timeout=300,
        ):
            if part.HasField("progress"):
                p = part.progress
                _say(
                    f"    {p.step}: {p.bytes_done:,}/{p.bytes_total:,} bytes, {p.files_done}/{p.files_total}"
                )
            else:
                copy = part.copy
    if copy is None:
        raise StackError("retention-svc ended the copy without a result")
    _say(f"    wrote {copy.path}: {len(copy.items)} recording(s), root hash {copy.root_hash}")
    report = await asyncio.to_thread(verify, Path(copy.path))
    if not report.ok or report.root_hash != copy.root_hash:
        raise StackError(f"the offline copy {copy.path} did not verify: {report.problems}")
    _say(
        f"2.5 re-read the image offline (as `lawtrail verify-copy {copy.path}` does): {report.files_checked} "
        f"recording(s), {report.bytes_checked:,} bytes, every SHA-256 matches, root hash {report.root_hash}"
    )
    if access_address is not None:
        await _show_standing_grant(access_address, key, copy.copy_id)
    return str(copy.path)


async def _show_standing_grant(access_address: str, key: bytes, copy_id: str) -> None:
    """2.6: the grant the copy was read under, as the legal affairs office sees it in access-svc."""
    legal = _metadata(key, "legal-demo", "legal-office", "LEGAL_OFFICE")
    async with grpc.aio.insecure_channel(access_address) as channel:
        answer = await access_service_pb2_grpc.AccessServiceStub(channel).ListAccessRequests(
            access_service_pb2.ListAccessRequestsRequest(), metadata=legal, timeout=10
        )
    found = [r for r in answer.requests if r.standing_order and copy_id in r.purpose]
    if not found:
        raise StackError(f"access-svc lists no standing grant for offline copy {copy_id}")
    r = found[0]
    _say(
        f"2.6 the copy was read under access-svc's grant {r.grant_id}: standing order {r.standing_order}, "
        f"taken by {r.requested.subject}, approved by {r.decided.subject} (the order's approver) — "
        "logged as AccessRequested + AccessRequestApproved and revocable with RevokeAccessGrant"
    )
