"""The adapters the recordings use cases stand on, through the handlers: the write-once content store on
disk (LocalContentStore), ffprobe (FfprobeProber), the threaded upload pipeline (ThreadedContentReceiver)
and the verified reader on stored files (R7, R23-2, R23-5). The service layer's own rules are tested on
fakes in ../recordings."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from media_svc.adapters.content_store import LocalContentStore
from media_svc.domain.access import AccessGrant, GrantedAction, GrantResource, ResourceKind
from media_svc.domain.commands import BeginUpload, DownloadRecording, UploadRecording
from media_svc.domain.errors import IntegrityFailure, UploadIncomplete
from media_svc.domain.recordings import MediaKind
from media_svc.service_layer.ports import UploadInProgress
from recordings_support import (
    OFFICER,
    T0,
    App,
    Media,
    build_app,
    chunks_of,
    classification,
    data_of,
    flip_stored_byte,
    held_partials,
    lose_content,
    manifest_for,
    sha256_of,
    stored_objects,
)
from servicekit.errors import DataLoss, InvalidArgument

MIB = 1024 * 1024


def disk(app: App) -> LocalContentStore:
    assert isinstance(app.store, LocalContentStore)
    return app.store


async def test_r23_content_is_stored_write_once_read_only_under_its_sha256(app: App, media: Media) -> None:
    data = data_of(media.video)
    m = manifest_for(media.video, classification())
    r = (await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data), OFFICER)).recording
    stored = disk(app).path_of(r.sha256)
    assert stored == disk(app).root / "objects" / r.sha256[:2] / r.sha256[2:4] / r.sha256
    assert data_of(stored) == data
    assert stat.S_IMODE(stored.stat().st_mode) == 0o444, "stored content is read-only"
    assert held_partials(app) == []


async def test_media_facts_come_from_ffprobe(app: App, media: Media) -> None:
    m = manifest_for(media.video, classification())
    r = (
        await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data_of(media.video)), OFFICER)
    ).recording
    assert abs(r.facts.duration - timedelta(seconds=2)) < timedelta(milliseconds=200)
    assert r.facts.codecs == ("h264", "aac")
    assert (r.facts.width, r.facts.height) == (320, 240)
    assert r.facts.creation_time == T0.replace(minute=34, second=56)
    assert "mp4" in r.facts.format_name
    assert r.findings == ()


@pytest.mark.parametrize(
    ("file", "declared"),
    [
        ("text", MediaKind.VIDEO),
        ("audio", MediaKind.VIDEO),
        ("photo", MediaKind.VIDEO),
        ("video", MediaKind.PHOTO),
        ("video", MediaKind.AUDIO),
        ("photo", MediaKind.AUDIO),
    ],
)
async def test_r07_what_ffprobe_reads_must_be_the_declared_kind(
    app: App, media: Media, file: str, declared: MediaKind
) -> None:
    path: Path = getattr(media, file)
    m = manifest_for(path, classification(declared, seconds=0 if declared is MediaKind.PHOTO else 2))
    with pytest.raises(
        InvalidArgument, match=f"not the declared {declared.value}|declared {declared.value}\\)"
    ):
        await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data_of(path)), OFFICER)
    assert stored_objects(app) == []
    assert held_partials(app) == []


@pytest.mark.parametrize(("file", "kind"), [("audio", MediaKind.AUDIO), ("photo", MediaKind.PHOTO)])
async def test_r07_ffprobe_recognises_audio_and_photo(
    app: App, media: Media, file: str, kind: MediaKind
) -> None:
    path: Path = getattr(media, file)
    c = classification(kind, seconds=0 if kind is MediaKind.PHOTO else 2)
    upload = UploadRecording(manifest_for(path, c), 0)
    r = (await app.handlers.upload_recording(upload, chunks_of(data_of(path)), OFFICER)).recording
    assert r.classification.media_kind is kind


async def test_a_truncated_upload_resumes_from_the_bytes_on_disk(app: App, media: Media) -> None:
    data = data_of(media.long_video)
    m = manifest_for(media.long_video, classification(seconds=6))
    half = len(data) // 2
    with pytest.raises(UploadIncomplete, match=f"after {half} of {len(data)} bytes"):
        await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data[:half]), OFFICER)
    assert stored_objects(app) == [], "nothing visible"
    assert (await app.handlers.begin_upload(BeginUpload(m), OFFICER)).resume_offset == half
    await app.handlers.upload_recording(UploadRecording(m, half), chunks_of(data[half:]), OFFICER)
    assert disk(app).path_of(m.sha256).read_bytes() == data
    assert held_partials(app) == []


async def test_resume_from_an_offset_beyond_what_the_disk_holds_is_refused(app: App, media: Media) -> None:
    data = data_of(media.video)
    m = manifest_for(media.video, classification())
    with pytest.raises(UploadIncomplete):
        await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data[:1000]), OFFICER)
    with pytest.raises(Exception, match="resume from 1000"):
        await app.handlers.upload_recording(UploadRecording(m, 5000), chunks_of(data[5000:]), OFFICER)


def test_a_second_concurrent_stream_of_the_same_content_is_refused_by_the_file_lock(
    tmp_path: Path, media: Media
) -> None:
    store = LocalContentStore(tmp_path / "content")
    sha = sha256_of(media.video)
    held = store.open_partial(sha, 0)
    try:
        with pytest.raises(UploadInProgress):
            store.open_partial(sha, 0)
    finally:
        held.close()


async def test_r23_committing_content_that_is_already_stored_never_rewrites_it(
    app: App, media: Media
) -> None:
    data = data_of(media.video)
    m = manifest_for(media.video, classification())
    await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data), OFFICER)
    stored = disk(app).path_of(m.sha256)
    before = os.stat(stored)
    partial = app.store.open_partial(m.sha256, 0)
    partial.write(data)
    app.store.commit(partial)
    after = os.stat(stored)
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert held_partials(app) == []


def _grant(app: App, recording_id: str) -> str:
    now = datetime.now(UTC)
    app.grants.grants["grant:0"] = AccessGrant(
        grant_id="g-1",
        grantee_subject="reviewer-1",
        grantee_unit="unit-a",
        resources=(GrantResource(ResourceKind.RECORDING, recording_id),),
        actions=frozenset({GrantedAction.DOWNLOAD}),
        purpose="reconsideration",
        approver_subject="head-1",
        issued_at=now - timedelta(minutes=1),
        expires_at=now + timedelta(hours=1),
        issuer="access-svc",
    )
    return "grant:0"


REVIEWER = OFFICER.__class__("reviewer-1", "unit-a", frozenset({"INSPECTOR"}))


async def test_r23_a_byte_flipped_on_disk_stops_the_download_and_the_scrub_finds_it(
    tmp_path: Path, media: Media
) -> None:
    app = build_app(tmp_path, real=True, now=lambda: datetime.now(UTC))
    m = manifest_for(media.long_video, classification(seconds=6))
    r = (
        await app.handlers.upload_recording(
            UploadRecording(m, 0), chunks_of(data_of(media.long_video)), OFFICER
        )
    ).recording
    intact = await app.handlers.download_recording(
        DownloadRecording(r.recording_id, _grant(app, r.recording_id)), REVIEWER
    )
    assert b"".join([bytes(b.data) async for b in intact.blocks]) == data_of(media.long_video)
    flip_stored_byte(app, r.sha256, 2 * MIB + 5)
    download = await app.handlers.download_recording(DownloadRecording(r.recording_id, "grant:0"), REVIEWER)
    with pytest.raises(IntegrityFailure, match=r"block 2 .* does not match"):
        _ = [bytes(b.data) async for b in download.blocks]
    run = await app.handlers.run_fixity_scrub(triggered_by="test")
    assert run is not None
    assert run.failures == 1


async def test_r23_content_deleted_from_disk_is_data_loss(tmp_path: Path, media: Media) -> None:
    app = build_app(tmp_path, real=True, now=lambda: datetime.now(UTC))
    m = manifest_for(media.video, classification())
    r = (
        await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data_of(media.video)), OFFICER)
    ).recording
    lose_content(app, r.sha256)
    download = await app.handlers.download_recording(
        DownloadRecording(r.recording_id, _grant(app, r.recording_id)), REVIEWER
    )
    with pytest.raises(DataLoss, match="missing"):
        _ = [b async for b in download.blocks]
