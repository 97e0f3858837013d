"""Helpers of the recordings integration tests: real media from ffmpeg, tokens, access grants, gRPC stubs
and a reader of the `lawtrail.media.v1.events` topic. No mocks: everything talks to the real media-svc
process on the real Kafka + FerretDB started by the lawtrail_local plugin."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from aiokafka import AIOKafkaConsumer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2
from lawtrail.access.v1 import access_grant_pb2 as gpb
from lawtrail.case.v1 import case_pb2
from lawtrail.case.v1 import case_service_pb2 as capi
from lawtrail.case.v1 import case_service_pb2_grpc as capi_grpc
from lawtrail.media.v1 import recording_pb2 as rpb
from lawtrail.media.v1 import recording_service_pb2 as pb
from lawtrail.media.v1 import recording_service_pb2_grpc as pb_grpc
from media_svc.adapters.access_grants import grant_message, mint_grant
from servicekit.auth.devtoken import mint_token
from servicekit.messaging.envelope import Envelope, decode

TOPIC = "lawtrail.media.v1.events"
T0 = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
CHUNK = 256 * 1024


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, timeout=120)


def make_video(path: Path, seconds: int = 2, *, noise: bool = False, tag: str = "") -> Path:
    """A real H.264/AAC MP4; `noise` makes it large (incompressible), `tag` makes its bytes unique."""
    vf = ["-vf", "noise=alls=40:allf=t+u"] if noise else []
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=320x240:rate=25",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", *vf,
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast", "-c:a", "aac", "-shortest",
        "-metadata", f"title={tag or path.name}", str(path),
    )  # fmt: skip
    return path


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def ts(value: datetime) -> object:

    t = Timestamp()
    t.FromDatetime(value)
    return t


def classification(
    *,
    start: datetime = T0,
    seconds: int = 2,
    unit: str = "unit-a",
    device: str = "CAM-IT-1",
    case_id: str = "",
    activity_id: str = "",
) -> rpb.Classification:
    return rpb.Classification(
        unit=unit,
        device_number=device,
        officer="officer-1",
        recorded_from=ts(start),
        recorded_to=ts(start + timedelta(seconds=seconds)),
        party="Party Ltd",
        case_cause="unlicensed construction",
        media_kind=rpb.MEDIA_KIND_VIDEO,
        party_informed=True,
        case_id=case_id,
        activity_id=activity_id,
    )


def manifest(path: Path, c: rpb.Classification) -> pb.UploadManifest:
    return pb.UploadManifest(classification=c, sha256=sha256_of(path), size_bytes=path.stat().st_size)


def upload_requests(
    m: pb.UploadManifest, data: bytes, offset: int = 0, *, pause_s: float = 0.0
) -> Iterator[pb.UploadRecordingRequest]:
    yield pb.UploadRecordingRequest(header=pb.UploadHeader(manifest=m, offset=offset))
    for i in range(offset, len(data), CHUNK):
        if pause_s:
            time.sleep(pause_s)
        yield pb.UploadRecordingRequest(chunk=data[i : i + CHUNK])


@dataclass
class Caller:
    """A media-svc client with one person's token."""

    stub: pb_grpc.RecordingServiceStub
    metadata: Sequence[tuple[str, str]]

    def __call__(self, method: str, request: object, **kw: object) -> object:
        return getattr(self.stub, method)(request, metadata=self.metadata, timeout=60, **kw)


def caller(
    channel: grpc.Channel, private_pem: bytes, subject: str, unit: str, roles: Sequence[str]
) -> Caller:
    token = mint_token(private_pem, subject=subject, unit=unit, roles=list(roles))
    return Caller(pb_grpc.RecordingServiceStub(channel), [("authorization", f"Bearer {token}")])


def upload(c: Caller, path: Path, cls: rpb.Classification) -> rpb.Recording:
    response = c("UploadRecording", upload_requests(manifest(path, cls), path.read_bytes()))
    assert isinstance(response, pb.UploadRecordingResponse)
    return response.recording


class GrantIssuer:
    """Stands in for access-svc (which issues grants in its own issue): a test Ed25519 key."""

    def __init__(self, directory: Path) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.public_pem = directory / "grant-issuer-public.pem"
        self.public_pem.write_bytes(
            self.key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self._n = 0

    def grant(self, grantee: str, *, recordings: Sequence[str] = (), cases: Sequence[str] = ()) -> str:
        self._n += 1
        return mint_grant(
            self.key,
            grant_message(
                grant_id=f"grant-{self._n}",
                grantee=grantee,
                recordings=recordings,
                cases=cases,
                actions=[gpb.GRANTED_ACTION_DOWNLOAD],
                purpose="reconsideration",
                approver="head-1",
                expires_at=datetime.now(UTC) + timedelta(minutes=10),
            ),
        )


async def events_about(
    bootstrap: str, subject: str, wanted: Sequence[str], timeout_s: float = 60
) -> list[Envelope]:
    """Reads the topic from the start until events of every `wanted` type about `subject` arrived."""
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    found: list[Envelope] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if record.key == subject.encode():
                        found.append(decode(record))
            types = {e.type.rsplit(".", 1)[-1] for e in found}
            if all(w in types for w in wanted):
                return found
        raise AssertionError(f"events {wanted} about {subject} did not arrive; got {[e.type for e in found]}")
    finally:
        await consumer.stop()


def metric(metrics_address: str, name: str) -> float:
    """Sum of every sample of `name` on the service's /metrics page."""
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def stored_objects(data_dir: Path) -> list[Path]:
    root = data_dir / "content" / "objects"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


# ---------------------------------------------------------------------------------------------
# cases, through case-svc's public API (media-svc links only to cases it learned from case-svc's events)
# ---------------------------------------------------------------------------------------------

# media-svc's refusals while its projection of case-svc's events has not seen the case or activity yet.
NOT_YET_KNOWN = frozenset({"R5_CASE_NOT_KNOWN", "R5_UNKNOWN_ACTIVITY"})


def open_case_with_activity(
    channel: grpc.Channel,
    private_pem: bytes,
    *,
    unit: str = "unit-a",
    cause: str = "unlicensed construction",
    party: str = "Party Ltd",
    activity_start: datetime = T0,
) -> tuple[str, str]:
    """(case id, activity id) of a new case with one activity, opened through case-svc's API."""
    stub = capi_grpc.CaseServiceStub(channel)
    token = mint_token(private_pem, subject="officer-1", unit=unit, roles=["OFFICER"])
    metadata = [("authorization", f"Bearer {token}")]
    case = stub.OpenCase(
        capi.OpenCaseRequest(
            act_type=case_pb2.ACT_TYPE_INSPECTION,
            unit=unit,
            cause=cause,
            responsible_officer="officer-1",
            parties=[case_pb2.Party(name=party, kind=case_pb2.PARTY_KIND_ORGANIZATION)],
        ),
        metadata=metadata,
        timeout=30,
    ).case
    start, end = Timestamp(), Timestamp()
    start.FromDatetime(activity_start)
    end.FromDatetime(activity_start + timedelta(hours=1))
    activity = stub.RecordActivity(
        capi.RecordActivityRequest(
            case_id=case.case_id,
            kind=case_pb2.ACTIVITY_KIND_EVIDENCE_COLLECTION,
            started_at=start,
            ended_at=end,
            place="site",
            officers=["officer-1", "officer-2"],
            record_mode=case_pb2.RECORD_MODE_CONTINUOUS_AV,
        ),
        metadata=metadata,
        timeout=30,
    ).activity
    return case.case_id, activity.activity_id


def error_reason(error: grpc.RpcError) -> str:
    """The `google.rpc.ErrorInfo.reason` of a refusal (AIP-193), "" when it carries none."""
    trailer = dict(error.trailing_metadata() or ())  # type: ignore[attr-defined]
    raw = trailer.get("grpc-status-details-bin")
    if not raw:
        return ""
    for detail in status_pb2.Status.FromString(raw).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


def link_when_known(
    c: Caller, recording_id: str, case_id: str, activity_id: str = "", within_s: float = 60.0
) -> pb.LinkRecordingResponse:
    """LinkRecording right after the case was opened through case-svc: retried while media-svc answers
    that the case or activity has not reached it yet (FAILED_PRECONDITION, see docs/media-svc.md)."""
    request = pb.LinkRecordingRequest(recording_id=recording_id, case_id=case_id, activity_id=activity_id)
    deadline = time.monotonic() + within_s
    while True:
        try:
            response = c("LinkRecording", request)
            assert isinstance(response, pb.LinkRecordingResponse)
            return response
        except grpc.RpcError as error:
            lagging = (
                error.code() == grpc.StatusCode.FAILED_PRECONDITION and error_reason(error) in NOT_YET_KNOWN
            )
            if not lagging or time.monotonic() > deadline:
                raise
            time.sleep(0.3)
