"""Verified download (R16, R23-2, R23-3) and the fixity scrub (R23-2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lawtrail.media.v1 import recording_service_pb2 as pb
from media_svc.adapters.grpc_wire import chunk_response
from media_svc.adapters.verified_reader import FRAME_HEADROOM, FramedChunk
from media_svc.domain.access import AccessGrant, GrantedAction, GrantResource, ResourceKind
from media_svc.domain.commands import DownloadRecording, UploadRecording
from media_svc.domain.errors import IntegrityFailure
from media_svc.domain.events import IntegrityCheckFailed
from media_svc.domain.fixity import ScrubState
from media_svc.domain.recordings import IntegrityStatus, Recording
from media_svc.service_layer.ports import Tombstones
from recordings_support import (
    OFFICER,
    App,
    Media,
    build_app,
    chunks_of,
    classification,
    data_of,
    flip_stored_byte,
    lose_content,
    manifest_for,
)
from servicekit.errors import DataLoss, PermissionDenied

MIB = 1024 * 1024


@pytest.fixture
def app(tmp_path: Path, media: Media) -> App:
    """The grants below are issued around the real time, so this app's server clock is the real one."""
    return build_app(tmp_path, media, now=lambda: datetime.now(UTC))


async def stored(app: App, media: Media, *, case_id: str = "") -> Recording:
    m = manifest_for(media.long_video, classification(seconds=6, case_id=case_id))
    return (
        await app.handlers.upload_recording(
            UploadRecording(m, 0), chunks_of(data_of(media.long_video)), OFFICER
        )
    ).recording


def grant(app: App, **kw: object) -> str:
    now = datetime.now(UTC)
    fields: dict[str, object] = {
        "grant_id": "g-1",
        "grantee_subject": "reviewer-1",
        "grantee_unit": "unit-a",
        "resources": (),
        "actions": frozenset({GrantedAction.DOWNLOAD}),
        "purpose": "reconsideration",
        "approver_subject": "head-1",
        "issued_at": now - timedelta(minutes=1),
        "expires_at": now + timedelta(hours=1),
        "issuer": "access-svc",
    }
    fields.update(kw)
    token = f"grant:{len(app.grants.grants)}"
    app.grants.grants[token] = AccessGrant(**fields)  # type: ignore[arg-type]
    return token


REVIEWER = OFFICER.__class__("reviewer-1", "unit-a", frozenset({"INSPECTOR"}))


async def read_all(app: App, recording_id: str, token: str) -> bytes:
    download = await app.handlers.download_recording(DownloadRecording(recording_id, token), REVIEWER)
    # A chunk's buffer is reused for the next one: copy each before asking for the next.
    return b"".join([bytes(b.data) async for b in download.blocks])


async def test_r16_download_with_a_grant_streams_verified_content_and_logs_the_access(
    app: App, media: Media
) -> None:
    r = await stored(app, media)
    token = grant(app, resources=(GrantResource(ResourceKind.RECORDING, r.recording_id),))
    download = await app.handlers.download_recording(DownloadRecording(r.recording_id, token), REVIEWER)
    assert [a.recording_id for a in app.access_log.records] == [r.recording_id], "logged before any byte"
    blocks = [bytes(b.data) async for b in download.blocks]
    assert b"".join(blocks) == data_of(media.long_video)
    assert all(len(b) == 2 * MIB for b in blocks[:-1]), "two verified 1 MiB blocks per message"
    access = app.access_log.records[0]
    assert (access.subject, access.grant_id, access.purpose, access.approver) == (
        "reviewer-1",
        "g-1",
        "reconsideration",
        "head-1",
    )


async def test_r16_a_case_grant_covers_the_recordings_linked_to_the_case(app: App, media: Media) -> None:
    r = await stored(app, media, case_id="case-7")
    token = grant(
        app, resources=(GrantResource(ResourceKind.CASE, "case-7"),), actions=frozenset({GrantedAction.VIEW})
    )
    assert await read_all(app, r.recording_id, token) == data_of(media.long_video)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"resources": ()}, "does not cover recording"),
        ({"grantee_subject": "someone-else"}, "was issued to 'someone-else'"),
        ({"expires_at": datetime(2020, 1, 1, tzinfo=UTC)}, "expired at 2020-01-01"),
        ({"actions": frozenset({GrantedAction.EXPORT})}, "allows EXPORT, not DOWNLOAD or VIEW"),
        ({"approver_subject": "reviewer-1"}, "approved by its own grantee"),
        ({"approver_subject": ""}, "names no approver"),
        ({"approver_subject": "  "}, "names no approver"),
        ({"issued_at": datetime.now(UTC) + timedelta(hours=1)}, "not valid before"),
    ],
)
async def test_r16_download_is_refused_without_a_valid_grant(
    app: App, media: Media, change: dict[str, object], message: str
) -> None:
    r = await stored(app, media)
    fields: dict[str, object] = {
        "resources": (GrantResource(ResourceKind.RECORDING, r.recording_id),),
        **change,
    }
    with pytest.raises(PermissionDenied, match=message):
        await app.handlers.download_recording(
            DownloadRecording(r.recording_id, grant(app, **fields)), REVIEWER
        )
    assert app.access_log.records == [], "a refused read releases nothing and is not a content access"


async def test_r16_no_grant_or_a_revoked_grant_is_refused(app: App, media: Media) -> None:
    r = await stored(app, media)
    with pytest.raises(PermissionDenied, match="needs an access grant"):
        await app.handlers.download_recording(DownloadRecording(r.recording_id, ""), REVIEWER)
    token = grant(app, resources=(GrantResource(ResourceKind.RECORDING, r.recording_id),))
    app.grants.revoked.add("g-1")
    with pytest.raises(PermissionDenied, match="revoked"):
        await app.handlers.download_recording(DownloadRecording(r.recording_id, token), REVIEWER)


def flip_byte(app: App, r: Recording, offset: int) -> None:
    flip_stored_byte(app, r.sha256, offset)


async def test_r23_a_flipped_byte_stops_the_download_with_data_loss_before_the_bad_block(
    app: App, media: Media
) -> None:
    r = await stored(app, media)
    flip_byte(app, r, 2 * MIB + 5)
    token = grant(app, resources=(GrantResource(ResourceKind.RECORDING, r.recording_id),))
    download = await app.handlers.download_recording(DownloadRecording(r.recording_id, token), REVIEWER)
    released: list[bytes] = []

    async def drain() -> None:
        async for block in download.blocks:
            released.append(bytes(block.data))

    with pytest.raises(IntegrityFailure, match=r"block 2 .* does not match") as err:
        await drain()
    assert isinstance(err.value, DataLoss)
    assert [len(b) for b in released] == [2 * MIB], "only blocks 0–1, verified, before the bad block 2"
    failed = [e for e in app.events() if isinstance(e, IntegrityCheckFailed)]
    assert [(e.recording_id, e.detected_by, e.first_bad_offset) for e in failed] == [
        (r.recording_id, "download", 2 * MIB)
    ]
    assert app.recordings.docs[r.recording_id].integrity is IntegrityStatus.FAILED
    assert app.recordings.docs[r.recording_id].sha256 == r.sha256, "the recorded hash of the original is kept"


async def test_r23_missing_content_is_data_loss(app: App, media: Media) -> None:
    r = await stored(app, media)
    lose_content(app, r.sha256)
    token = grant(app, resources=(GrantResource(ResourceKind.RECORDING, r.recording_id),))
    download = await app.handlers.download_recording(DownloadRecording(r.recording_id, token), REVIEWER)
    with pytest.raises(DataLoss, match="missing"):
        _ = [b async for b in download.blocks]


async def test_r23_fixity_scrub_verifies_everything_and_reports_a_mismatch(app: App, media: Media) -> None:
    good = await stored(app, media)
    other = manifest_for(media.video, classification())
    bad = (
        await app.handlers.upload_recording(
            UploadRecording(other, 0), chunks_of(data_of(media.video)), OFFICER
        )
    ).recording
    flip_byte(app, bad, 100)

    run = await app.handlers.run_fixity_scrub(triggered_by="test")
    assert run is not None
    assert run.state is ScrubState.FINISHED
    assert (run.recordings_total, run.recordings_checked, run.failures) == (2, 2, 1)
    assert run.bytes_checked == run.bytes_total == good.size_bytes + bad.size_bytes
    assert run.progress == 1.0
    assert app.recordings.docs[good.recording_id].integrity is IntegrityStatus.VERIFIED
    assert app.recordings.docs[bad.recording_id].integrity is IntegrityStatus.FAILED
    failed = [e for e in app.events() if isinstance(e, IntegrityCheckFailed)]
    assert [(e.recording_id, e.detected_by) for e in failed] == [(bad.recording_id, "scrub")]
    running, last = await app.handlers.fixity_scrub_status()
    assert running is None
    assert last is not None
    assert last.run_id == run.run_id


async def test_fixity_scrub_runs_once_at_a_time(app: App, media: Media) -> None:
    await stored(app, media)
    assert await app.runs.try_lock("someone-else", datetime.now(UTC), datetime.now(UTC))
    assert await app.handlers.run_fixity_scrub(triggered_by="test") is None


@pytest.mark.parametrize("size", [1, 127, 128, 16383, 16384, MIB, 2 * MIB, 3 * MIB])
def test_a_chunk_response_parsed_from_its_headroom_is_the_message_built_from_the_bytes(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    buffer = bytearray(b"\xff" * FRAME_HEADROOM) + data + b"\xee" * 7  # a reused, larger buffer
    chunk = FramedChunk(buffer, size)
    built = pb.DownloadRecordingResponse(chunk=data)
    assert chunk_response(chunk) == built
    assert chunk_response(chunk).SerializeToString() == built.SerializeToString()


def test_the_allocator_thresholds_are_left_to_the_operator_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from media_svc.adapters import grpc_wire as recording_api

    monkeypatch.setattr(recording_api, "_allocator_tuned", False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1048576")
    assert recording_api.keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    assert recording_api.keep_freed_memory() is True  # glibc (the service's platform) has mallopt
    assert recording_api.keep_freed_memory() is True  # once


async def test_r23_the_scrub_does_not_report_content_disposed_of_under_an_order_as_lost(
    app: App, media: Media
) -> None:
    """R12/R23-5: a disposed recording's content is gone on purpose (its tombstone says under which
    order); the scrub visits it without raising IntegrityCheckFailed. Content gone without a tombstone
    is still an integrity failure."""
    disposed = await stored(app, media)
    other = manifest_for(media.video, classification())
    lost = (
        await app.handlers.upload_recording(
            UploadRecording(other, 0), chunks_of(data_of(media.video)), OFFICER
        )
    ).recording
    assert disposed.sha256 != lost.sha256

    class Disposed(Tombstones):
        async def disposed(self, recording_id: str) -> bool:
            return recording_id == disposed.recording_id

    app.handlers.tombstones = Disposed()
    lose_content(app, disposed.sha256)
    lose_content(app, lost.sha256)

    run = await app.handlers.run_fixity_scrub(triggered_by="test")
    assert run is not None
    assert (run.recordings_total, run.recordings_checked, run.failures) == (2, 2, 1)
    assert run.progress == 1.0
    failed = [e for e in app.events() if isinstance(e, IntegrityCheckFailed)]
    assert [e.recording_id for e in failed] == [lost.recording_id]
    assert app.recordings.docs[disposed.recording_id].integrity is not IntegrityStatus.FAILED
