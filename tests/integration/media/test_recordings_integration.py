"""Recordings of media-svc on the real stack (issue 4 items 1–8): a real `python -m media_svc` process on
the real Kafka + FerretDB of the lawtrail_local plugin, real MP4s from ffmpeg, no mocks."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from lawtrail.media.v1 import device_service_pb2 as _device_service  # noqa: F401 - registers DeviceService
from lawtrail.media.v1 import media_events_pb2 as ev
from lawtrail.media.v1 import recording_service_pb2 as pb
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.services import ServiceProcess
from lawtrail_local.stack import Stack
from servicekit.auth.devtoken import ensure_dev_keys

sys.path.insert(0, str(Path(__file__).parent))

from recordings_it import (
    T0,
    Caller,
    GrantIssuer,
    caller,
    classification,
    events_about,
    link_when_known,
    make_video,
    manifest,
    metric,
    open_case_with_activity,
    sha256_of,
    stored_objects,
    upload,
    upload_requests,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (make setup installs it)"
    ),
]


@dataclass
class Media:
    service: ServiceProcess
    channel: grpc.Channel
    case_channel: grpc.Channel
    private_pem: bytes
    officer: Caller
    reviewer: Caller
    archivist: Caller
    issuer: GrantIssuer
    bootstrap: str
    data_dir: Path
    files: Path


@pytest.fixture(scope="module")
def media(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Media]:
    starter = ServiceStarter(stack, tmp_path_factory.mktemp("media-recordings"))
    private_pem = ensure_dev_keys(starter.data_dir)[0].read_bytes()
    files = tmp_path_factory.mktemp("recordings-files")
    issuer = GrantIssuer(files)
    # case-svc: media-svc links recordings only to cases it learned from case-svc's events (R5)
    case_service = starter("case-svc")
    service = starter(
        "media-svc",
        env={
            "LAWTRAIL_MEDIA_GRANT_PUBLIC_KEYS": str(issuer.public_pem),
            "LAWTRAIL_MEDIA_SCRUB_INTERVAL_S": "0",
            "LAWTRAIL_MEDIA_GAP_THRESHOLD_S": "60",
        },
    )
    channel = grpc.insecure_channel(service.grpc_address)
    case_channel = grpc.insecure_channel(case_service.grpc_address)
    try:
        yield Media(
            service=service,
            channel=channel,
            case_channel=case_channel,
            private_pem=private_pem,
            officer=caller(channel, private_pem, "officer-1", "unit-a", ["OFFICER"]),
            reviewer=caller(channel, private_pem, "reviewer-1", "legal", ["LEGAL_OFFICE"]),
            archivist=caller(channel, private_pem, "archivist-1", "unit-a", ["ARCHIVIST"]),
            issuer=issuer,
            bootstrap=stack.kafka_bootstrap,
            data_dir=starter.data_dir,
            files=files,
        )
    finally:
        channel.close()
        case_channel.close()
        starter.stop_all()


def download(m: Media, recording_id: str, grant: str) -> tuple[pb.DownloadHeader, bytes]:
    stream = m.reviewer(
        "DownloadRecording", pb.DownloadRecordingRequest(recording_id=recording_id, access_grant=grant)
    )
    header: pb.DownloadHeader | None = None
    chunks: list[bytes] = []
    for message in stream:  # type: ignore[attr-defined]
        if message.WhichOneof("part") == "header":
            header = message.header
        else:
            chunks.append(message.chunk)
    assert header is not None
    return header, b"".join(chunks)


async def test_r11a_upload_publishes_recording_ingested_and_link_publishes_recording_linked(
    media: Media,
) -> None:
    case_id, activity_id = open_case_with_activity(media.case_channel, media.private_pem)
    path = make_video(media.files / "ingest.mp4", tag="ingest")
    r = upload(media.officer, path, classification(case_id=case_id))
    assert r.sha256 == sha256_of(path)
    assert r.size_bytes == path.stat().st_size
    assert r.facts.codecs == ["h264", "aac"]
    assert r.ingest_delay.seconds > 0

    got = await events_about(media.bootstrap, r.recording_id, ["RecordingIngested", "RecordingLinked"])
    ingested = next(e for e in got if e.type == "lawtrail.media.v1.RecordingIngested")
    assert ingested.subject == r.recording_id
    assert ingested.source == "/lawtrail/media-svc"
    fact = ingested.parse(ev.RecordingIngested)
    assert (fact.sha256, fact.size_bytes, fact.classification.device_number) == (
        r.sha256,
        r.size_bytes,
        "CAM-IT-1",
    )
    linked = next(e for e in got if e.type == "lawtrail.media.v1.RecordingLinked").parse(ev.RecordingLinked)
    assert (linked.case_id, linked.unit, linked.media_kind) == (case_id, "unit-a", 1)

    # R11a: the ingest delay is exported per unit
    assert (
        metric(media.service.metrics_address, 'lawtrail_media_ingest_delay_seconds_count{unit="unit-a"}') >= 1
    )

    # linking later: an activity is added → a second RecordingLinked
    link_when_known(media.officer, r.recording_id, case_id, activity_id)
    deadline = time.monotonic() + 60
    while True:  # the first RecordingLinked (from the upload) may arrive before the second
        got = await events_about(media.bootstrap, r.recording_id, ["RecordingLinked"])
        activities = [
            e.parse(ev.RecordingLinked).activity_id for e in got if e.type.endswith("RecordingLinked")
        ]
        if activity_id in activities or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert activities == ["", activity_id]


def test_r17_search_by_classification_is_paged(media: Media) -> None:
    for i in range(3):
        path = make_video(media.files / f"search-{i}.mp4", tag=f"search-{i}")
        upload(
            media.officer, path, classification(start=T0 + timedelta(days=3, minutes=i), device="CAM-SEARCH")
        )
    seen: list[str] = []
    token = ""
    while True:
        page = media.officer(
            "SearchRecordings",
            pb.SearchRecordingsRequest(
                device_number="CAM-SEARCH", page={"page_size": 2, "page_token": token}
            ),
        )
        seen += [r.classification.device_number for r in page.recordings]  # type: ignore[attr-defined]
        token = page.page.next_page_token  # type: ignore[attr-defined]
        if not token:
            break
    assert seen == ["CAM-SEARCH"] * 3


def test_r19c_unexplained_gap_is_listed_until_explained(media: Media) -> None:
    recs = []
    for i, (start, secs) in enumerate([(0, 2), (300, 2)]):
        path = make_video(media.files / f"gap-{i}.mp4", tag=f"gap-{i}")
        recs.append(
            upload(
                media.officer,
                path,
                classification(
                    start=T0 + timedelta(days=5, seconds=start),
                    seconds=secs,
                    device="CAM-GAP",
                    case_id="case-gap",
                    activity_id="act-gap",
                ),
            )
        )
    gaps = media.officer("ListUnexplainedGaps", pb.ListUnexplainedGapsRequest(case_id="case-gap"))
    assert [g.next_recording_id for g in gaps.gaps] == [recs[1].recording_id]  # type: ignore[attr-defined]
    media.officer(
        "ExplainInterruption",
        pb.ExplainInterruptionRequest(recording_id=recs[1].recording_id, written_text="battery replaced"),
    )
    gaps = media.officer("ListUnexplainedGaps", pb.ListUnexplainedGapsRequest(case_id="case-gap"))
    assert list(gaps.gaps) == []  # type: ignore[attr-defined]


async def test_r16_download_needs_a_grant_and_publishes_content_accessed(media: Media) -> None:
    path = make_video(media.files / "download.mp4", noise=True, seconds=3, tag="download")
    r = upload(media.officer, path, classification(start=T0 + timedelta(days=1)))
    with pytest.raises(grpc.RpcError) as err:
        download(media, r.recording_id, "")
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    header, data = download(
        media, r.recording_id, media.issuer.grant("reviewer-1", recordings=[r.recording_id])
    )
    assert header.sha256 == r.sha256
    assert hashlib.sha256(data).hexdigest() == r.sha256
    got = await events_about(media.bootstrap, r.recording_id, ["ContentAccessed"])
    accessed = next(e for e in got if e.type.endswith("ContentAccessed")).parse(ev.ContentAccessed)
    assert (accessed.accessed.subject, accessed.grant_id, accessed.purpose) == (
        "reviewer-1",
        "grant-1",
        "reconsideration",
    )


def flip_a_byte(path: Path, offset: int) -> None:
    os.chmod(path, 0o644)
    with path.open("r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


async def test_r23_a_flipped_byte_fails_the_download_with_data_loss_and_the_scrub_reports_it(
    media: Media,
) -> None:
    path = make_video(media.files / "tamper.mp4", noise=True, seconds=3, tag="tamper")
    r = upload(media.officer, path, classification(start=T0 + timedelta(days=2)))
    stored = next(p for p in stored_objects(media.data_dir) if p.name == r.sha256)
    flip_a_byte(stored, stored.stat().st_size // 2)

    with pytest.raises(grpc.RpcError) as err:
        download(media, r.recording_id, media.issuer.grant("reviewer-1", recordings=[r.recording_id]))
    assert err.value.code() == grpc.StatusCode.DATA_LOSS
    assert "does not match" in (err.value.details() or "")
    got = await events_about(media.bootstrap, r.recording_id, ["IntegrityCheckFailed"])
    failed = [e.parse(ev.IntegrityCheckFailed) for e in got if e.type.endswith("IntegrityCheckFailed")]
    assert failed[0].detected_by == "download"
    assert failed[0].expected_sha256 == r.sha256

    before = metric(
        media.service.metrics_address, 'lawtrail_media_integrity_failures_total{detected_by="scrub"}'
    )
    run = media.archivist("StartFixityScrub", pb.StartFixityScrubRequest()).run  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while True:
        status = media.archivist("GetFixityScrubStatus", pb.GetFixityScrubStatusRequest())
        last = status.last_finished  # type: ignore[attr-defined]
        if last.run_id == run.run_id and last.state == pb.FIXITY_SCRUB_STATE_FINISHED:
            break
        assert time.monotonic() < deadline, f"scrub did not finish: {status}"
        await asyncio.sleep(0.2)
    assert last.failures >= 1
    assert last.recordings_checked == last.recordings_total >= 1
    assert (
        metric(media.service.metrics_address, 'lawtrail_media_integrity_failures_total{detected_by="scrub"}')
        > before
    )
    got = await events_about(media.bootstrap, r.recording_id, ["IntegrityCheckFailed"])
    assert "scrub" in [e.parse(ev.IntegrityCheckFailed).detected_by for e in got if e.type.endswith("Failed")]
    recording = media.officer("GetRecording", pb.GetRecordingRequest(recording_id=r.recording_id)).recording  # type: ignore[attr-defined]
    assert recording.integrity == 2  # INTEGRITY_STATUS_FAILED
    assert recording.sha256 == r.sha256, "the hash of the original is kept"


def nothing_visible(m: Media, sha: str) -> None:
    assert all(p.name != sha for p in stored_objects(m.data_dir)), "no content stored"
    found = m.officer("SearchRecordings", pb.SearchRecordingsRequest(device_number="CAM-KILL"))
    assert [r.sha256 for r in found.recordings if r.sha256 == sha] == []  # type: ignore[attr-defined]


def test_killing_the_server_mid_upload_leaves_nothing_partial_and_the_upload_resumes(media: Media) -> None:
    path = make_video(media.files / "kill-server.mp4", noise=True, seconds=6, tag="kill-server")
    data = path.read_bytes()
    m = manifest(path, classification(start=T0 + timedelta(days=7), seconds=6, device="CAM-KILL"))
    sent = threading.Event()
    failure: list[BaseException] = []

    def requests() -> Iterator[pb.UploadRecordingRequest]:
        for i, r in enumerate(upload_requests(m, data, pause_s=0.05)):
            if i == 8:
                sent.set()
            yield r

    def run() -> None:
        try:
            media.officer("UploadRecording", requests())
        except grpc.RpcError as e:
            failure.append(e)

    t = threading.Thread(target=run)
    t.start()
    assert sent.wait(30)
    media.service.kill()  # SIGKILL mid-stream
    t.join(30)
    assert failure, "the upload must not have completed"
    media.service.restart()

    nothing_visible(media, m.sha256)
    offer = media.officer("BeginUpload", pb.BeginUploadRequest(manifest=m))
    assert 0 < offer.resume_offset < len(data)  # type: ignore[attr-defined]
    done = media.officer("UploadRecording", upload_requests(m, data, offset=offer.resume_offset))  # type: ignore[attr-defined]
    assert done.recording.sha256 == m.sha256  # type: ignore[attr-defined]
    stored = next(p for p in stored_objects(media.data_dir) if p.name == m.sha256)
    assert sha256_of(stored) == m.sha256


CLIENT = """
import sys, time, grpc
from lawtrail.media.v1 import recording_service_pb2 as pb, recording_service_pb2_grpc as g
address, token, manifest_hex, path = sys.argv[1:5]
m = pb.UploadManifest.FromString(bytes.fromhex(manifest_hex))
data = open(path, "rb").read()
def reqs():
    yield pb.UploadRecordingRequest(header=pb.UploadHeader(manifest=m, offset=0))
    for i in range(0, len(data), 256 * 1024):
        yield pb.UploadRecordingRequest(chunk=data[i : i + 256 * 1024])
        print(i, flush=True)
        time.sleep(0.05)
g.RecordingServiceStub(grpc.insecure_channel(address)).UploadRecording(
    reqs(), metadata=[("authorization", token)])
"""


def test_killing_the_client_mid_upload_leaves_nothing_partial_and_the_upload_resumes(media: Media) -> None:
    path = make_video(media.files / "kill-client.mp4", noise=True, seconds=6, tag="kill-client")
    data = path.read_bytes()
    m = manifest(path, classification(start=T0 + timedelta(days=8), seconds=6, device="CAM-KILL"))
    token = dict(media.officer.metadata)["authorization"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLIENT,
            media.service.grpc_address,
            token,
            m.SerializeToString().hex(),
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for _ in range(8):
        proc.stdout.readline()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    nothing_visible(media, m.sha256)
    deadline = time.monotonic() + 20
    while True:  # the server notices the broken stream and releases the partial
        try:
            offer = media.officer("BeginUpload", pb.BeginUploadRequest(manifest=m))
            done = media.officer(
                "UploadRecording",
                upload_requests(m, data, offset=offer.resume_offset),  # type: ignore[attr-defined]
            )
            break
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.ABORTED or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert offer.resume_offset > 0  # type: ignore[attr-defined]
    assert done.recording.sha256 == m.sha256  # type: ignore[attr-defined]


def test_r23_no_rpc_deletes_or_overwrites_content_or_its_hash(media: Media) -> None:
    """Calls every RPC of every service media-svc serves (enumerated from the descriptors) with requests
    aimed at a stored original — including an upload of other bytes under its hash and a re-link — and
    proves afterwards that its bytes, file and recorded hash are untouched."""
    path = make_video(media.files / "original.mp4", tag="original")
    original = upload(media.officer, path, classification(start=T0 + timedelta(days=9), case_id="case-r23"))
    stored = next(p for p in stored_objects(media.data_dir) if p.name == original.sha256)
    before = os.stat(stored)
    other = make_video(media.files / "other.mp4", tag="other").read_bytes()
    rid, sha = original.recording_id, original.sha256
    forged = pb.UploadManifest(
        classification=classification(start=T0 + timedelta(days=9), case_id="case-r23"),
        sha256=sha,
        size_bytes=len(other),
    )
    relabelled = pb.UploadManifest(
        classification=classification(start=T0 + timedelta(days=9), device="CAM-OTHER"),
        sha256=sha,
        size_bytes=len(other),
    )

    def upload_attempts() -> Iterator[pb.UploadRecordingRequest]:
        yield from upload_requests(forged, other)

    requests: dict[str, list[object]] = {
        "BeginUpload": [pb.BeginUploadRequest(manifest=forged), pb.BeginUploadRequest(manifest=relabelled)],
        "UploadRecording": [upload_attempts(), upload_requests(relabelled, other)],
        "GetRecording": [pb.GetRecordingRequest(recording_id=rid)],
        "SearchRecordings": [pb.SearchRecordingsRequest(case_id="case-r23")],
        "LinkRecording": [
            pb.LinkRecordingRequest(recording_id=rid, case_id="case-r23", activity_id="a-9"),
            pb.LinkRecordingRequest(recording_id=rid, case_id="another-case"),
        ],
        "ExplainInterruption": [pb.ExplainInterruptionRequest(recording_id=rid, written_text="x")],
        "ListUnexplainedGaps": [pb.ListUnexplainedGapsRequest(case_id="case-r23")],
        "DownloadRecording": [
            pb.DownloadRecordingRequest(
                recording_id=rid, access_grant=media.issuer.grant("officer-1", recordings=[rid])
            )
        ],
        "StartFixityScrub": [pb.StartFixityScrubRequest()],
        "GetFixityScrubStatus": [pb.GetFixityScrubStatusRequest()],
    }
    pool = descriptor_pool.Default()
    services = [
        pool.FindServiceByName(n)
        for n in ("lawtrail.media.v1.RecordingService", "lawtrail.media.v1.DeviceService")
    ]
    called = []
    for service in services:
        for method in service.methods:
            path_ = f"/{service.full_name}/{method.name}"
            request_class = message_factory.GetMessageClass(method.input_type)
            response_class = message_factory.GetMessageClass(method.output_type)
            if service.name == "RecordingService":
                assert method.name in requests, f"add {method.name} to this test: every RPC must be tried"
                attempts = requests[method.name]
            else:
                attempts = [request_class()]  # device RPCs: whatever they do, they cannot reach content
            for request in attempts:
                kind = (method.client_streaming, method.server_streaming)
                call = {
                    (False, False): media.channel.unary_unary,
                    (True, False): media.channel.stream_unary,
                    (False, True): media.channel.unary_stream,
                    (True, True): media.channel.stream_stream,
                }[kind](
                    path_,
                    request_serializer=lambda x: x.SerializeToString(),
                    response_deserializer=response_class.FromString,
                )
                for who in (media.officer, media.archivist, media.reviewer):
                    try:
                        result = call(
                            request,
                            metadata=who.metadata,
                            timeout=30,
                        )
                        if method.server_streaming:
                            list(result)
                    except grpc.RpcError:
                        pass
                    if method.client_streaming:
                        break  # a request iterator is consumed once
                called.append(path_)
    assert {c.rsplit("/", 1)[1] for c in called} >= set(requests)

    after = os.stat(stored)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert sha256_of(stored) == sha
    now = media.officer("GetRecording", pb.GetRecordingRequest(recording_id=rid)).recording  # type: ignore[attr-defined]
    assert (now.sha256, now.size_bytes) == (sha, original.size_bytes)
    assert now.link.case_id == "case-r23", "a link is never moved"
