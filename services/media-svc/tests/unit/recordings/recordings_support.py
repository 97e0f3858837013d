"""Helpers of the recordings unit tests (conftest.py makes them fixtures): test media generated with ffmpeg
(real files, so the adapter tests can probe them), what ffprobe says about each (`PROBES`, taught to the
fake prober), and the handlers built through the one composition root on the in-memory fakes of
media_fakes.py — or, with `real=True`, on the real content store (a temporary directory), ffprobe and the
threaded upload pipeline (the adapter tests in tests/unit/adapters)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from media_fakes import (
    T0,
    FakeProber,
    InMemoryAccessLog,
    InMemoryContentStore,
    InMemoryRecordings,
    InMemoryScrubRuns,
    InMemorySeries,
    StaticGrants,
    fake_ports,
)
from media_svc.adapters.content_store import LocalContentStore
from media_svc.adapters.ffprobe import FfprobeProber
from media_svc.adapters.ingest_pipeline import ThreadedContentReceiver
from media_svc.bootstrap import build_handlers
from media_svc.domain.commands import UploadManifest
from media_svc.domain.recordings import Classification, MediaKind
from media_svc.service_layer.handlers import MediaHandlers
from media_svc.service_layer.ports import ContentStore
from servicekit.policy import Actor

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


# What ffprobe answers (`-show_format -show_streams`, the fields media-svc reads) for each file of `Media`.
PROBES: dict[str, dict[str, object]] = {
    "video": {
        "format": {
            "format_name": "mov,mp4,m4a,3gp,3g2,mj2",
            "duration": "2.000000",
            "tags": {"creation_time": "2026-05-01T12:34:56.000000Z"},
        },
        "streams": [
            {
                "codec_type": "video",
                "codec_name": "h264",
                "width": 320,
                "height": 240,
                "duration": "2.000000",
            },
            {"codec_type": "audio", "codec_name": "aac", "duration": "2.000000"},
        ],
    },
    "long_video": {
        "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "6.000000"},
        "streams": [
            {"codec_type": "video", "codec_name": "h264", "width": 320, "height": 240, "duration": "6.000000"}
        ],
    },
    "audio": {
        "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "2.000000"},
        "streams": [{"codec_type": "audio", "codec_name": "aac", "duration": "2.000000"}],
    },
    "photo": {
        "format": {"format_name": "image2"},
        "streams": [{"codec_type": "video", "codec_name": "mjpeg", "width": 320, "height": 240}],
    },
    # "text": not media — ffprobe cannot read it ({}).
}


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
# the handlers on in-memory repositories (media_fakes.py), through the one composition root
# ---------------------------------------------------------------------------------------------


@dataclass
class App:
    recordings: InMemoryRecordings
    series: InMemorySeries
    store: ContentStore
    access_log: InMemoryAccessLog
    runs: InMemoryScrubRuns
    grants: StaticGrants
    handlers: MediaHandlers

    def events(self) -> list[object]:
        return [*self.recordings.published, *self.series.published]


async def open_case(
    app: App,
    case_id: str = "case-1",
    *,
    unit: str = "unit-a",
    cause: str = "unlicensed construction",
    parties: tuple[str, ...] = ("Party Ltd",),
    activities: tuple[str, ...] = ("act-1", "act-2"),
) -> None:
    """What media-svc's consumer of case-svc's events does for CaseOpened and ActivityRecorded (a unit
    test: the integration tests open cases through case-svc)."""
    await app.handlers.case_opened(case_id, unit, cause, parties)
    for activity_id in activities:
        await app.handlers.activity_recorded(case_id, activity_id)


def build_app(
    tmp_path: Path,
    media: Media | None = None,
    clock: Iterable[datetime] | None = None,
    *,
    now: Callable[[], datetime] | None = None,
    real: bool = False,
) -> App:
    """`clock`: the server times to hand out in turn; `now`: a clock function (default: T0 + 1 h).
    Fakes everywhere unless `real` (then the content store, ffprobe and the upload pipeline are real)."""
    if real:
        ports = fake_ports(
            store=LocalContentStore(tmp_path / "content"),
            prober=FfprobeProber(),
            receiver=ThreadedContentReceiver(),
        )
    else:
        ports = fake_ports()
        assert isinstance(ports.prober, FakeProber)
        for name, probe in PROBES.items():
            if media is not None:
                ports.prober.teach(data_of(getattr(media, name)), probe)
    if now is None:
        now = (lambda: T0 + timedelta(hours=1)) if clock is None else iter(clock).__next__
    handlers = build_handlers(ports, clock=now)
    assert isinstance(ports.recordings, InMemoryRecordings)
    assert isinstance(ports.series, InMemorySeries)
    assert isinstance(ports.access_log, InMemoryAccessLog)
    assert isinstance(ports.scrub_runs, InMemoryScrubRuns)
    assert isinstance(ports.verifier, StaticGrants)
    return App(
        ports.recordings,
        ports.series,
        ports.store,
        ports.access_log,
        ports.scrub_runs,
        ports.verifier,
        handlers,
    )


def stored_objects(app: App) -> list[str]:
    """The SHA-256 of every content the store holds (in memory or on disk)."""
    if isinstance(app.store, InMemoryContentStore):
        return sorted(app.store.objects)
    assert isinstance(app.store, LocalContentStore)
    return sorted(p.name for p in (app.store.root / "objects").rglob("*") if p.is_file())


def held_partials(app: App) -> list[str]:
    """The SHA-256 of every interrupted upload the store keeps for a resume."""
    if isinstance(app.store, InMemoryContentStore):
        return sorted(app.store.partials)
    assert isinstance(app.store, LocalContentStore)
    return sorted(p.name.removesuffix(".part") for p in (app.store.root / "uploads").iterdir())


def flip_stored_byte(app: App, sha256: str, offset: int) -> None:
    """What an intruder or a failing disk does to stored content outside the system."""
    if isinstance(app.store, InMemoryContentStore):
        data = bytearray(app.store.objects[sha256])
        data[offset] ^= 0xFF
        app.store.objects[sha256] = bytes(data)
        return
    assert isinstance(app.store, LocalContentStore)
    path = app.store.path_of(sha256)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def lose_content(app: App, sha256: str) -> None:
    """Stored content destroyed outside the system (R23-5)."""
    if isinstance(app.store, InMemoryContentStore):
        del app.store.objects[sha256]
        return
    assert isinstance(app.store, LocalContentStore)
    app.store.path_of(sha256).unlink()
