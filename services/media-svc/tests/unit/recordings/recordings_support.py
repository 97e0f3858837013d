"""Helpers of the recordings unit tests (conftest.py makes them fixtures): real media generated with
ffmpeg, a real content store in a temporary directory, and in-memory repositories that honour the same
contracts as the Mongo ones."""

from __future__ import annotations

import copy
import hashlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from media_svc.adapters.content_store import LocalContentStore
from media_svc.adapters.ffprobe import FfprobeProber
from media_svc.domain.access import AccessGrant, ContentAccessed
from media_svc.domain.continuity import Series
from media_svc.domain.fixity import ScrubRun, ScrubState
from media_svc.domain.recordings import Classification, MediaKind, Recording
from media_svc.service_layer.continuity import ContinuityHandlers
from media_svc.service_layer.devices import Actor
from media_svc.service_layer.downloads import DownloadHandlers
from media_svc.service_layer.fixity import FixityScrubber
from media_svc.service_layer.ports import (
    AccessLog,
    GrantVerifier,
    RecordingRepository,
    ScrubItem,
    ScrubRunRepository,
    SearchCursor,
    SearchQuery,
    SeriesRepository,
)
from media_svc.service_layer.recordings import RecordingHandlers, UploadManifest
from servicekit.errors import AlreadyExists, ConcurrencyConflict, NotFound

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# real media (ffmpeg)
# ---------------------------------------------------------------------------------------------


def ffmpeg(*args: str) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is not installed (make setup installs Debian's ffmpeg)")
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


@dataclass(frozen=True)
class Media:
    video: Path  # 2 s H.264 + AAC MP4 with creation_time 2026-05-01T12:34:56Z
    long_video: Path  # 6 s of noise: several 1 MiB blocks
    audio: Path  # 2 s AAC in M4A
    photo: Path  # 320x240 JPEG
    text: Path  # not media


def make_media(d: Path) -> Media:
    video, long_video, audio, photo, text = (
        d / "v.mp4",
        d / "long.mp4",
        d / "a.m4a",
        d / "p.jpg",
        d / "notes.txt",
    )
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=duration=2:size=320x240:rate=25",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast", "-c:a", "aac", "-shortest",
        "-metadata", "creation_time=2026-05-01T12:34:56Z", str(video),
    )  # fmt: skip
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=duration=6:size=320x240:rate=25", "-vf", "noise=alls=40:allf=t+u",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast", "-crf", "20", str(long_video),
    )  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "aac", str(audio))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240", "-frames:v", "1", str(photo))
    text.write_text("not a recording\n" * 100)
    return Media(video, long_video, audio, photo, text)


def data_of(path: Path) -> bytes:
    return path.read_bytes()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def classification(
    kind: MediaKind = MediaKind.VIDEO,
    *,
    start: datetime = T0,
    seconds: float = 2.0,
    unit: str = "unit-a",
    device: str = "CAM-1",
    case_id: str = "",
    activity_id: str = "",
    party_informed: bool = True,
) -> Classification:
    return Classification.create(
        unit=unit,
        device_number=device,
        officer="officer-1",
        recorded_from=start,
        recorded_to=start + timedelta(seconds=seconds),
        media_kind=kind,
        party_informed=party_informed,
        party="Party Ltd",
        case_cause="unlicensed construction",
        case_id=case_id,
        activity_id=activity_id,
    )


def manifest_for(path: Path, c: Classification) -> UploadManifest:
    return UploadManifest(c, sha256_of(path), path.stat().st_size)


async def chunks_of(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


OFFICER = Actor("officer-1", "unit-a", frozenset({"OFFICER"}))
OTHER_UNIT = Actor("officer-9", "unit-b", frozenset({"OFFICER"}))
LEGAL = Actor("legal-1", "legal", frozenset({"LEGAL_OFFICE"}))


# ---------------------------------------------------------------------------------------------
# in-memory repositories
# ---------------------------------------------------------------------------------------------


class InMemoryRecordings(RecordingRepository):
    def __init__(self) -> None:
        self.docs: dict[str, Recording] = {}
        self.published: list[object] = []

    async def get(self, recording_id: str) -> Recording | None:
        r = self.docs.get(recording_id)
        return copy.deepcopy(r) if r else None

    async def get_by_sha256(self, sha256: str) -> Recording | None:
        return next((copy.deepcopy(r) for r in self.docs.values() if r.sha256 == sha256), None)

    async def add(self, recording: Recording) -> None:
        if recording.recording_id in self.docs or any(
            r.sha256 == recording.sha256 for r in self.docs.values()
        ):
            raise AlreadyExists("exists")
        recording.version = 1
        self.published.extend(recording.events)
        recording.events.clear()
        self.docs[recording.recording_id] = copy.deepcopy(recording)

    async def save(self, recording: Recording) -> None:
        stored = self.docs.get(recording.recording_id)
        if stored is None:
            raise NotFound("missing")
        if stored.version != recording.version:
            raise ConcurrencyConflict("conflict")
        assert (stored.sha256, stored.size_bytes, stored.block_hashes) == (
            recording.sha256,
            recording.size_bytes,
            recording.block_hashes,
        ), "content identity must never change"
        recording.version += 1
        self.published.extend(recording.events)
        recording.events.clear()
        self.docs[recording.recording_id] = copy.deepcopy(recording)

    async def search(self, query: SearchQuery, after: SearchCursor | None, limit: int) -> list[Recording]:
        def ok(r: Recording) -> bool:
            c = r.classification
            checks = [
                (query.unit, c.unit),
                (query.device_number, c.device_number),
                (query.officer, c.officer),
                (query.party, c.party),
                (query.case_cause, c.case_cause),
                (query.case_id, r.link.case_id),
            ]
            if any(want and want != have for want, have in checks):
                return False
            if query.media_kind and c.media_kind is not query.media_kind:
                return False
            if query.recorded_after and not c.recorded_to > query.recorded_after:
                return False
            if query.recorded_before and not c.recorded_from < query.recorded_before:
                return False
            key = (c.recorded_from, r.recording_id)
            return after is None or key > (after.recorded_from, after.recording_id)

        found = sorted(
            (r for r in self.docs.values() if ok(r)),
            key=lambda r: (r.classification.recorded_from, r.recording_id),
        )
        return [copy.deepcopy(r) for r in found[:limit]]

    async def pending_continuity(self, limit: int) -> list[Recording]:
        return [copy.deepcopy(r) for r in self.docs.values() if r.continuity_pending][:limit]

    async def mark_in_series(self, recording_id: str) -> None:
        self.docs[recording_id].continuity_pending = False

    async def scrub_batch(self, after_id: str, limit: int) -> list[ScrubItem]:
        ids = sorted(i for i in self.docs if i > after_id)[:limit]
        return [ScrubItem(i, self.docs[i].sha256, self.docs[i].size_bytes) for i in ids]

    async def totals(self) -> tuple[int, int]:
        return len(self.docs), sum(r.size_bytes for r in self.docs.values())


class InMemorySeries(SeriesRepository):
    def __init__(self) -> None:
        self.docs: dict[str, Series] = {}
        self.published: list[object] = []

    async def get(self, series_id: str) -> Series | None:
        s = self.docs.get(series_id)
        return copy.deepcopy(s) if s else None

    async def add(self, series: Series) -> None:
        if series.series_id in self.docs:
            raise AlreadyExists("exists")
        series.version = 1
        self.published.extend(series.events)
        series.events.clear()
        self.docs[series.series_id] = copy.deepcopy(series)

    async def save(self, series: Series) -> None:
        if self.docs[series.series_id].version != series.version:
            raise ConcurrencyConflict("conflict")
        series.version += 1
        self.published.extend(series.events)
        series.events.clear()
        self.docs[series.series_id] = copy.deepcopy(series)

    async def with_unexplained_gaps(
        self, *, unit: str, case_id: str, longer_than_s: float, after_id: str, limit: int
    ) -> list[Series]:
        found = [
            s
            for sid, s in sorted(self.docs.items())
            if sid > after_id
            and (not unit or s.unit == unit)
            and (not case_id or s.case_id == case_id)
            and s.longest_unexplained_gap.total_seconds() > longer_than_s
        ]
        return [copy.deepcopy(s) for s in found[:limit]]


class InMemoryAccessLog(AccessLog):
    def __init__(self) -> None:
        self.records: list[ContentAccessed] = []

    async def record(self, access: ContentAccessed) -> None:
        self.records.append(access)


class InMemoryScrubRuns(ScrubRunRepository):
    def __init__(self) -> None:
        self.runs: dict[str, ScrubRun] = {}
        self.holder: str | None = None

    async def try_lock(self, run_id: str, until: datetime, now: datetime) -> bool:
        if self.holder in (None, run_id):
            self.holder = run_id
            return True
        return False

    async def release(self, run_id: str) -> None:
        if self.holder == run_id:
            self.holder = None

    async def put(self, run: ScrubRun) -> None:
        self.runs[run.run_id] = copy.deepcopy(run)

    async def running(self) -> ScrubRun | None:
        return copy.deepcopy(self.runs[self.holder]) if self.holder in self.runs else None

    async def last_finished(self) -> ScrubRun | None:
        done = [r for r in self.runs.values() if r.state is not ScrubState.RUNNING]
        return max(done, key=lambda r: r.finished_at or T0, default=None)


class StaticGrants(GrantVerifier):
    """Decodes "grant:<n>" tokens to grants registered by the test (the signature is tested separately)."""

    def __init__(self) -> None:
        self.grants: dict[str, AccessGrant] = {}
        self.revoked: set[str] = set()

    def decode(self, token: str) -> AccessGrant:
        from servicekit.errors import InvalidArgument

        if token not in self.grants:
            raise InvalidArgument("unknown test grant")
        return self.grants[token]

    async def is_revoked(self, grant_id: str) -> bool:
        return grant_id in self.revoked


@dataclass
class App:
    recordings: InMemoryRecordings
    series: InMemorySeries
    store: LocalContentStore
    access_log: InMemoryAccessLog
    runs: InMemoryScrubRuns
    grants: StaticGrants
    handlers: RecordingHandlers
    continuity: ContinuityHandlers
    downloads: DownloadHandlers
    scrubber: FixityScrubber

    def events(self) -> list[object]:
        return [*self.recordings.published, *self.series.published]


def build_app(tmp_path: Path, clock: Iterable[datetime] | None = None) -> App:
    recordings, series, access_log, runs, grants = (
        InMemoryRecordings(),
        InMemorySeries(),
        InMemoryAccessLog(),
        InMemoryScrubRuns(),
        StaticGrants(),
    )
    store = LocalContentStore(tmp_path / "content")
    now = (lambda: T0 + timedelta(hours=1)) if clock is None else iter(clock).__next__
    handlers = RecordingHandlers(
        recordings=recordings, store=store, prober=FfprobeProber(), devices=None, clock=now
    )
    continuity = ContinuityHandlers(
        recordings=recordings,
        series=series,
        recording_handlers=handlers,
        gap_threshold=timedelta(seconds=60),
        clock=now,
    )
    handlers.on_linked = continuity.enter_segment  # what bootstrap wires
    downloads = DownloadHandlers(
        recordings=recordings,
        store=store,
        verifier=grants,
        access_log=access_log,
        recording_handlers=handlers,
        clock=lambda: datetime.now(UTC),
    )
    scrubber = FixityScrubber(recordings=recordings, store=store, runs=runs, recording_handlers=handlers)
    return App(recordings, series, store, access_log, runs, grants, handlers, continuity, downloads, scrubber)
