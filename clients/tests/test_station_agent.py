"""The station agent against an in-process RecordingService: collect, confirm, resume, never delete."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path

import pytest
from lawtrail_client.client import MediaClient
from lawtrail_client.station.agent import StationAgent, StationConfig, StationStopped
from lawtrail_client.station.journal import Journal, JournalLocked

from .conftest import FakeRecordingService

NAME = "BC-0001_alice_20260501T120000Z_20260501T120500Z.mp4"


def dock(folder: Path, name: str = NAME, size: int = 700_000, seed: int = 1) -> Path:
    path = folder / name
    path.write_bytes(hashlib.sha256(str(seed).encode()).digest() * (size // 32) + b"x" * (size % 32))
    old = time.time() - 60
    os.utime(path, (old, old))
    return path


def agent(media: MediaClient, folder: Path, **overrides: object) -> tuple[StationAgent, io.StringIO]:
    out = io.StringIO()
    config = StationConfig(folder=folder, unit="unit-a", **overrides)  # type: ignore[arg-type]
    return StationAgent(media, config, out=out), out


def test_r11a_collects_file_and_marks_it_only_after_hash_confirmed(
    tmp_path: Path, media: MediaClient, fake_media: tuple[FakeRecordingService, str]
) -> None:
    service, _ = fake_media
    path = dock(tmp_path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    station, out = agent(media, tmp_path)
    [outcome] = station.collect_once()
    assert outcome.status == "collected"
    assert outcome.sha256 == sha
    assert not path.exists()
    moved = tmp_path / "collected" / NAME
    assert hashlib.sha256(moved.read_bytes()).hexdigest() == sha
    receipt = json.loads((tmp_path / "collected" / f"{NAME}.receipt.json").read_text())
    assert receipt["sha256"] == sha
    assert receipt["recording_id"] == outcome.recording_id
    assert service.content[sha] == moved.read_bytes()
    assert f"SHA-256 {sha} confirmed" in out.getvalue()
    assert station.collect_once() == []  # nothing left


def test_resumes_an_interrupted_upload_from_the_servers_offset(
    tmp_path: Path, media: MediaClient, fake_media: tuple[FakeRecordingService, str]
) -> None:
    service, _ = fake_media
    path = dock(tmp_path, size=3 * 1024 * 1024 + 5)
    service.drop_after = 1024 * 1024
    station, _ = agent(media, tmp_path)
    [first] = station.collect_once()
    assert first.status == "deferred"
    assert path.exists()  # not confirmed → untouched
    assert not (tmp_path / "collected").exists()
    entry = Journal(tmp_path)
    entry.load()
    assert entry.entries[NAME].state == "uploading"
    # a new agent process (restart) continues where the server left off
    station2, out2 = agent(media, tmp_path)
    [second] = station2.collect_once()
    assert second.status == "collected"
    assert "resuming " + NAME + " at byte 1048576 of 3145733" in out2.getvalue()
    assert (tmp_path / "collected" / NAME).exists()


def test_identical_content_already_stored_is_confirmed_without_sending(
    tmp_path: Path, media: MediaClient, fake_media: tuple[FakeRecordingService, str]
) -> None:
    dock(tmp_path)
    agent(media, tmp_path)[0].collect_once()
    dock(tmp_path)  # the same file docked again
    [again] = agent(media, tmp_path)[0].collect_once()
    assert again.status == "collected"
    assert again.detail == "already stored"
    # collected files are never overwritten
    collected = sorted(p.name for p in (tmp_path / "collected").iterdir() if not p.name.endswith(".json"))
    assert collected == sorted([NAME, NAME.replace(".mp4", ".1.mp4")])


def test_refused_file_stays_in_place_and_is_retried_only_when_changed(
    tmp_path: Path, media: MediaClient, fake_media: tuple[FakeRecordingService, str]
) -> None:
    service, _ = fake_media
    path = dock(tmp_path)
    service.refuse = "bytes are not a VIDEO: ffprobe found no video stream"
    station, _ = agent(media, tmp_path)
    [outcome] = station.collect_once()
    assert outcome.status == "failed"
    assert "not a VIDEO" in outcome.detail
    assert path.exists()
    service.refuse = None
    begins = service.begin_calls
    [again] = station.collect_once()
    assert again.status == "failed"
    assert service.begin_calls == begins  # unchanged file: not sent again
    (tmp_path / f"{NAME}.json").write_text(json.dumps({"media_kind": "VIDEO"}))  # fixing the sidecar retries
    [fixed] = station.collect_once()
    assert fixed.status == "collected"
    assert (tmp_path / "collected" / f"{NAME}.json").exists()  # the sidecar travels with its file


def test_bad_metadata_is_reported_and_nothing_is_sent(
    tmp_path: Path, media: MediaClient, fake_media: tuple[FakeRecordingService, str]
) -> None:
    service, _ = fake_media
    dock(tmp_path, name="clip.mp4")
    [outcome] = agent(media, tmp_path)[0].collect_once()
    assert outcome.status == "failed"
    assert "missing device_number" in outcome.detail
    assert service.begin_calls == 0


def test_files_still_being_written_and_other_files_are_left_alone(tmp_path: Path, media: MediaClient) -> None:
    (tmp_path / NAME).write_bytes(b"fresh")  # mtime = now
    dock(tmp_path, name="notes.txt")
    dock(tmp_path, name="BC-1_a_20260501T120000Z_20260501T120500Z.mp4.part")
    dock(tmp_path, name=".hidden.mp4")
    (tmp_path / "sub").mkdir()
    station = agent(media, tmp_path, settle_s=30)[0]
    outcomes = {o.name: o for o in station.collect_once()}
    assert (tmp_path / NAME).exists()
    # every entry is named with its reason; nothing was collected
    assert set(outcomes) == {
        NAME,
        "notes.txt",
        "BC-1_a_20260501T120000Z_20260501T120500Z.mp4.part",
        ".hidden.mp4",
        "sub/",
    }
    assert all(o.status == "skipped" for o in outcomes.values())
    assert outcomes[NAME].detail.startswith("still settling")
    assert "ignored name (*.part)" in outcomes["BC-1_a_20260501T120000Z_20260501T120500Z.mp4.part"].detail
    assert outcomes[".hidden.mp4"].detail == "ignored name: hidden file"
    assert not outcomes["notes.txt"].media
    assert not outcomes["sub/"].media
    # media files are present and not collected: the run is not complete
    assert not station.complete(list(outcomes.values()))


def test_a_run_is_complete_when_only_non_media_files_remain(tmp_path: Path, media: MediaClient) -> None:
    dock(tmp_path, name="notes.txt")
    station = agent(media, tmp_path)[0]
    outcomes = station.collect_once()
    assert [(o.name, o.media) for o in outcomes] == [("notes.txt", False)]
    assert station.complete(outcomes)


def test_server_unavailable_defers_without_marking(tmp_path: Path) -> None:
    path = dock(tmp_path)
    with MediaClient.connect(f"unix:{tmp_path / 'nobody.sock'}", token="t", timeout_s=1, retries=1) as media:
        [outcome] = agent(media, tmp_path)[0].collect_once()
    assert outcome.status == "deferred"
    assert outcome.detail.startswith("server unreachable")
    assert path.exists()


def test_transient_unavailable_is_retried_by_the_channel(
    tmp_path: Path, media: MediaClient, fake_media: tuple[FakeRecordingService, str]
) -> None:
    service, _ = fake_media
    dock(tmp_path)
    service.unavailable_begins = 1
    [outcome] = agent(media, tmp_path)[0].collect_once()
    assert outcome.status == "collected"


def test_bad_token_stops_the_station(tmp_path: Path, fake_media: tuple[FakeRecordingService, str]) -> None:
    dock(tmp_path)
    with (
        MediaClient.connect(fake_media[1], token="forged", timeout_s=2) as media,
        pytest.raises(StationStopped, match="bearer token is not valid"),
    ):
        agent(media, tmp_path)[0].collect_once()
    assert (tmp_path / NAME).exists()


def test_one_agent_per_folder(tmp_path: Path, media: MediaClient) -> None:
    with Journal(tmp_path).locked(), pytest.raises(JournalLocked, match="already collecting"):
        agent(media, tmp_path)[0].collect_once()


def test_file_changed_during_upload_is_not_marked(
    tmp_path: Path,
    media: MediaClient,
    fake_media: tuple[FakeRecordingService, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = dock(tmp_path)
    station, _ = agent(media, tmp_path)
    import lawtrail_client.station.agent as agent_module

    real_upload = agent_module.upload_file

    def upload_then_touch(*args: object, **kwargs: object) -> object:
        result = real_upload(*args, **kwargs)  # type: ignore[arg-type]
        os.utime(path, None)  # the dock rewrote the file meanwhile
        return result

    monkeypatch.setattr(agent_module, "upload_file", upload_then_touch)
    [outcome] = station.collect_once()
    assert outcome.status == "deferred"
    assert path.exists()


def test_waits_while_a_dead_stream_of_the_same_content_is_still_open(
    tmp_path: Path, media: MediaClient, fake_media: tuple[FakeRecordingService, str]
) -> None:
    service, _ = fake_media
    dock(tmp_path)
    service.aborted_uploads = 2
    waits: list[float] = []
    station = StationAgent(
        media, StationConfig(folder=tmp_path, unit="unit-a"), out=io.StringIO(), sleep=waits.append
    )
    [outcome] = station.collect_once()
    assert outcome.status == "collected"
    assert waits == [0.5, 1.0]
