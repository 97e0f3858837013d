"""Helpers of the recordings unit tests (conftest.py makes them fixtures): real media generated with
ffmpeg, a real content store in a temporary directory, and in-memory repositories that honour the same
contracts as the Mongo ones."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from media_fakes import (
    T0,
    InMemoryAccessLog,
    InMemoryRecordings,
    InMemoryScrubRuns,
    InMemorySeries,
    StaticGrants,
    fake_ports,
)
from media_svc.adapters.content_store import LocalContentStore
from media_svc.adapters.ffprobe import FfprobeProber
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


def build_app(
    tmp_path: Path, clock: Iterable[datetime] | None = None, *, now: Callable[[], datetime] | None = None
) -> App:
    """`clock`: the server times to hand out in turn; `now`: a clock function (default: T0 + 1 h)."""
    ports = fake_ports(store=LocalContentStore(tmp_path / "content"), prober=FfprobeProber())
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
