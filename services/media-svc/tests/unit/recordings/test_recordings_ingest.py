"""Upload and ingest (issue 4 items 1–2; R7, R9, R11a, R17, R19b, R20, R23-2): the service layer on the
in-memory fakes (content store, ffprobe's answers, repositories). The same paths on the real content
store, ffprobe and upload pipeline: tests/unit/adapters/test_content_store_ffprobe_pipeline.py."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from media_svc.domain.commands import BeginUpload, UploadManifest, UploadRecording
from media_svc.domain.devices import FINDING_UNKNOWN_DEVICE
from media_svc.domain.errors import ContentAlreadyStored, HashMismatch, UploadIncomplete
from media_svc.domain.events import RecordingIngested, RecordingLinked
from media_svc.domain.recordings import (
    FINDING_DURATION_MISMATCH,
    FINDING_LATE_INGEST,
    FINDING_PARTY_NOT_INFORMED,
    MediaKind,
)
from media_svc.service_layer.handlers import MediaHandlers
from media_svc.service_layer.ports import UploadInProgress
from recordings_support import (
    LEGAL,
    OFFICER,
    OTHER_UNIT,
    T0,
    App,
    Media,
    build_app,
    chunks_of,
    classification,
    data_of,
    held_partials,
    manifest_for,
    sha256_of,
    stored_objects,
)
from servicekit.errors import InvalidArgument, PermissionDenied, ResourceExhausted


async def test_r23_upload_stores_content_write_once_by_its_sha256(app: App, media: Media) -> None:
    data = data_of(media.video)
    m = manifest_for(media.video, classification())
    result = await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data), OFFICER)

    r = result.recording
    assert not result.already_stored
    assert r.sha256 == m.sha256 == sha256_of(media.video)
    assert r.size_bytes == len(data)
    assert stored_objects(app) == [r.sha256]
    assert app.store.open_content(r.sha256).read() == data
    assert held_partials(app) == []
    assert [type(e) for e in app.events()] == [RecordingIngested]


async def test_media_facts_come_from_the_probe(app: App, media: Media) -> None:
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
async def test_r07_bytes_that_are_not_the_declared_kind_are_rejected(
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
    assert app.recordings.docs == {}


@pytest.mark.parametrize(("file", "kind"), [("audio", MediaKind.AUDIO), ("photo", MediaKind.PHOTO)])
async def test_r07_audio_and_photo_are_accepted_as_declared(
    app: App, media: Media, file: str, kind: MediaKind
) -> None:
    path: Path = getattr(media, file)
    c = classification(kind, seconds=0 if kind is MediaKind.PHOTO else 2)
    r = (
        await app.handlers.upload_recording(
            UploadRecording(manifest_for(path, c), 0), chunks_of(data_of(path)), OFFICER
        )
    ).recording
    assert r.classification.media_kind is kind
    assert r.findings == ()


async def test_hash_mismatch_stores_nothing(app: App, media: Media) -> None:
    data = data_of(media.video)
    m = UploadManifest(classification(), "0" * 64, len(data))
    with pytest.raises(HashMismatch, match="nothing was stored"):
        await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data), OFFICER)
    assert stored_objects(app) == []
    assert held_partials(app) == []
    assert app.recordings.docs == {}


async def test_more_bytes_than_declared_stores_nothing(app: App, media: Media) -> None:
    data = data_of(media.video)
    m = UploadManifest(classification(), sha256_of(media.video), len(data) - 10)
    with pytest.raises(InvalidArgument, match="more than the declared size"):
        await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data), OFFICER)
    assert stored_objects(app) == []
    assert held_partials(app) == []
    assert app.recordings.docs == {}


async def test_size_over_the_limit_is_refused_before_any_byte(tmp_path: Path, media: Media) -> None:
    app = build_app(tmp_path, media)
    app.handlers.max_upload_bytes = 1000
    m = manifest_for(media.video, classification())
    with pytest.raises(ResourceExhausted, match="over the upload limit of 1000 bytes"):
        await app.handlers.begin_upload(BeginUpload(m), OFFICER)
    with pytest.raises(ResourceExhausted):
        await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data_of(media.video)), OFFICER)
    assert stored_objects(app) == []
    assert held_partials(app) == []


async def test_truncated_stream_leaves_nothing_visible_and_the_upload_resumes(app: App, media: Media) -> None:
    data = data_of(media.long_video)
    assert len(data) > 2 * 1024 * 1024
    m = manifest_for(media.long_video, classification(seconds=6))
    half = len(data) // 2

    with pytest.raises(UploadIncomplete, match=f"after {half} of {len(data)} bytes"):
        await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data[:half]), OFFICER)
    assert stored_objects(app) == [], "nothing visible"
    assert app.recordings.docs == {}

    offer = await app.handlers.begin_upload(BeginUpload(m), OFFICER)
    assert offer.resume_offset == half
    assert offer.recording is None
    result = await app.handlers.upload_recording(UploadRecording(m, half), chunks_of(data[half:]), OFFICER)
    assert result.recording.sha256 == m.sha256
    assert app.store.open_content(m.sha256).read() == data
    assert held_partials(app) == []


async def test_a_partial_holding_every_byte_but_never_committed_is_finished_by_an_empty_stream(
    app: App, media: Media
) -> None:
    """Found by the S1 crash suite: media-svc killed after the last byte was written, before the commit."""
    data = data_of(media.video)
    m = manifest_for(media.video, classification())
    partial = app.store.open_partial(m.sha256, 0)
    partial.write(data)
    partial.sync()
    partial.close()  # the process died here: no commit
    assert stored_objects(app) == []
    offer = await app.handlers.begin_upload(BeginUpload(m), OFFICER)
    assert (offer.resume_offset, offer.recording) == (len(data), None)
    result = await app.handlers.upload_recording(UploadRecording(m, len(data)), chunks_of(b""), OFFICER)
    assert result.recording.sha256 == m.sha256
    assert app.store.open_content(m.sha256).read() == data
    assert held_partials(app) == []


async def test_resume_from_an_offset_beyond_what_the_server_holds_is_refused(app: App, media: Media) -> None:
    data = data_of(media.video)
    m = manifest_for(media.video, classification())
    with pytest.raises(UploadIncomplete):
        await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data[:1000]), OFFICER)
    with pytest.raises(Exception, match="resume from 1000"):
        await app.handlers.upload_recording(UploadRecording(m, 5000), chunks_of(data[5000:]), OFFICER)


async def test_a_second_concurrent_stream_of_the_same_content_is_refused(app: App, media: Media) -> None:
    sha = sha256_of(media.video)
    held = app.store.open_partial(sha, 0)
    try:
        with pytest.raises(UploadInProgress):
            app.store.open_partial(sha, 0)
    finally:
        held.close()


async def test_reuploading_identical_content_is_idempotent(app: App, media: Media) -> None:
    data = data_of(media.video)
    m = manifest_for(media.video, classification())
    first = await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data), OFFICER)
    offer = await app.handlers.begin_upload(BeginUpload(m), OFFICER)
    assert offer.recording is not None
    assert offer.recording.recording_id == first.recording.recording_id
    again = await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data), OFFICER)
    assert again.already_stored
    assert again.recording.recording_id == first.recording.recording_id
    assert len(app.recordings.docs) == 1
    assert len(stored_objects(app)) == 1


async def test_same_content_with_another_classification_is_already_exists(app: App, media: Media) -> None:
    data = data_of(media.video)
    await app.handlers.upload_recording(
        UploadRecording(manifest_for(media.video, classification()), 0), chunks_of(data), OFFICER
    )
    other = manifest_for(media.video, classification(device="CAM-2"))
    with pytest.raises(ContentAlreadyStored, match="different classification"):
        await app.handlers.upload_recording(UploadRecording(other, 0), chunks_of(data), OFFICER)


async def test_r09_a_unit_uploads_only_its_own_recordings(app: App, media: Media) -> None:
    m = manifest_for(media.video, classification(unit="unit-a"))
    for actor in (OTHER_UNIT, LEGAL):
        with pytest.raises(PermissionDenied, match="stored per unit"):
            await app.handlers.begin_upload(BeginUpload(m), actor)


async def test_r19b_party_not_informed_is_a_finding(app: App, media: Media) -> None:
    m = manifest_for(media.video, classification(party_informed=False))
    r = (
        await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data_of(media.video)), OFFICER)
    ).recording
    assert [(f.code, f.requirement) for f in r.findings] == [(FINDING_PARTY_NOT_INFORMED, "R19b")]


async def test_r11a_ingest_delay_is_stored_and_a_late_ingest_is_a_finding(
    tmp_path: Path, media: Media
) -> None:
    app = build_app(tmp_path, media, clock=[T0 + timedelta(hours=30)] * 10)
    m = manifest_for(media.video, classification())
    r = (
        await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data_of(media.video)), OFFICER)
    ).recording
    assert r.ingest_delay == timedelta(hours=30) - timedelta(seconds=2)
    assert [f.code for f in r.findings] == [FINDING_LATE_INGEST]
    assert "ingested 30.0 h after" in r.findings[0].detail


async def test_declared_duration_far_from_the_probed_one_is_a_finding(app: App, media: Media) -> None:
    m = manifest_for(media.video, classification(seconds=60))
    r = (
        await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data_of(media.video)), OFFICER)
    ).recording
    assert [f.code for f in r.findings] == [FINDING_DURATION_MISMATCH]


async def test_r20_recording_from_an_unregistered_device_is_accepted_and_flagged(
    tmp_path: Path, media: Media
) -> None:
    class NoDevices:
        async def get(self, number: str) -> None:
            return None

        async def checks_for(self, number: str, since: object, until: object) -> list[object]:
            return []

    app = build_app(tmp_path, media)
    app.handlers.devices = NoDevices()  # type: ignore[assignment]
    m = manifest_for(media.video, classification())
    r = (
        await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data_of(media.video)), OFFICER)
    ).recording
    assert [(f.code, f.requirement) for f in r.findings] == [(FINDING_UNKNOWN_DEVICE, "R20")]


async def test_r17_upload_naming_a_case_and_activity_links_it(app: App, media: Media) -> None:
    m = manifest_for(media.video, classification(case_id="case-1", activity_id="act-1"))
    r = (
        await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data_of(media.video)), OFFICER)
    ).recording
    assert (r.link.case_id, r.link.activity_id) == ("case-1", "act-1")
    assert [type(e) for e in app.events()] == [RecordingIngested, RecordingLinked]
    assert not app.recordings.docs[r.recording_id].continuity_pending, "entered into its series"


def test_the_content_store_has_no_way_to_delete_or_overwrite() -> None:
    """R23-2: the interface offers no delete, remove or overwrite (only discarding an unfinished upload)."""
    from media_svc.service_layer.ports import ContentStore

    names = {n for n in dir(ContentStore) if not n.startswith("_")}
    assert names == {
        "partial_size",
        "open_partial",
        "discard_partial",
        "commit",
        "contains",
        "open_content",
        "digest",
    }


def test_handlers_need_no_real_clock(tmp_path: Path) -> None:
    assert isinstance(build_app(tmp_path).handlers, MediaHandlers)
