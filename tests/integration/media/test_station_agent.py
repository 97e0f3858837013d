"""The collection-station agent (`lawtrail station …`) end to end against the real media-svc on the real
Kafka + FerretDB, with real recordings made by ffmpeg: it collects a folder, survives being killed
mid-upload (and the server being killed mid-upload), resumes from the server's offset, and moves a file
into `collected/` only with the server-confirmed SHA-256. Nothing is ever deleted."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lawtrail.media.v1 import device_service_pb2 as dev
from lawtrail.media.v1 import recording_service_pb2 as rec
from lawtrail_client import MediaClient
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.services import ServiceProcess
from lawtrail_local.stack import Stack
from servicekit.auth.devtoken import ensure_dev_keys, mint_token

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (make setup installs it)"
    ),
]

UNIT = "unit-a"


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, timeout=120)


def compact(t: datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%SZ")


def make_video(
    folder: Path, device: str, officer: str, start: datetime, seconds: int, *, big: bool = False
) -> Path:
    end = start + timedelta(seconds=seconds)
    path = folder / f"{device}_{officer}_{compact(start)}_{compact(end)}.mp4"
    size, rate = (
        ("1280x720", ["-b:v", "12M", "-maxrate", "12M", "-bufsize", "4M"]) if big else ("320x240", [])
    )
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=duration={seconds}:size={size}:rate=25",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast", *rate,
        "-c:a", "aac", "-shortest", "-metadata", f"creation_time={start.isoformat()}", str(path),
    )  # fmt: skip
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def media_svc(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, bytes]]:
    starter = ServiceStarter(stack, tmp_path_factory.mktemp("media-station"))
    private_path, _ = ensure_dev_keys(starter.data_dir)
    try:
        yield starter("media-svc"), private_path.read_bytes()
    finally:
        starter.stop_all()


@pytest.fixture
def station_token(media_svc: tuple[ServiceProcess, bytes]) -> str:
    # A collection station is a service account of its unit with the upload scope.
    return mint_token(
        media_svc[1], subject="station-7", unit=UNIT, roles=["SERVICE"], scopes=["media.upload"]
    )


@pytest.fixture
def head(media_svc: tuple[ServiceProcess, bytes]) -> Iterator[MediaClient]:
    token = mint_token(media_svc[1], subject="head-a", unit=UNIT, roles=["UNIT_HEAD", "OFFICER"])
    with MediaClient.connect(media_svc[0].grpc_address, token=token) as client:
        yield client


class Agent:
    """`lawtrail station …` as a separate process, its stderr collected line by line."""

    def __init__(self, *args: str) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lawtrail_client.cli", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))

    def wait_for_line(self, predicate: object, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.output.append(line)
            if callable(predicate) and predicate(line):
                return line
        raise AssertionError(f"no such line within {timeout}s; agent said:\n" + "\n".join(self.output))

    def finish(self, timeout: float = 120) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return code

    @property
    def text(self) -> str:
        return "\n".join(self.output)


def progress_at_least(name: str, percent: float) -> object:
    def check(line: str) -> bool:
        if not line.startswith(f"upload {name} ["):
            return False
        return float(line.split("]")[1].split("%")[0]) >= percent

    return check


def station_args(command: str, folder: Path, service: ServiceProcess, token: str, *extra: str) -> list[str]:
    return [
        "station",
        command,
        str(folder),
        "--server",
        service.grpc_address,
        "--token",
        token,
        "--settle",
        "0",
        *extra,
    ]


def collected(folder: Path) -> dict[str, dict[str, object]]:
    receipts = (folder / "collected").glob("*.receipt.json") if (folder / "collected").exists() else []
    return {r.name.removesuffix(".receipt.json"): json.loads(r.read_text()) for r in receipts}


def test_r11a_station_collects_a_folder_of_real_recordings_end_to_end(
    tmp_path: Path, media_svc: tuple[ServiceProcess, bytes], station_token: str, head: MediaClient
) -> None:
    service = media_svc[0]
    folder = tmp_path / "dock"
    folder.mkdir()
    start = (datetime.now(UTC) - timedelta(minutes=30)).replace(microsecond=0)
    # A registered device that passed its pre-use check (R20) …
    device = f"BC-{os.getpid()}{int(time.time()) % 100000}"
    head.devices.RegisterDevice(dev.RegisterDeviceRequest(device_number=device, model="DSJ-X1"))
    video = make_video(folder, device, "alice", start, 2)
    # … an audio file whose facts come from a sidecar …
    audio = folder / "REC0001.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=660:duration=3", "-c:a", "aac", str(audio))
    (folder / "REC0001.m4a.json").write_text(
        json.dumps(
            {
                "device_number": "BC-AUDIO-1",
                "officer": "bob",
                "recorded_from": start.isoformat(),
                "recorded_to": (start + timedelta(seconds=3)).isoformat(),
                "party_informed": True,
                "case_cause": "fire exits blocked",
            }
        )
    )
    # … and a photo named by the scheme (no end time for a photo).
    photo = folder / f"BC-PHOTO-1_carol_{compact(start)}.jpg"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=640x480", "-frames:v", "1", str(photo))
    notes = folder / "notes.txt"
    notes.write_text("not a recording")
    hashes = {p.name: sha256(p) for p in (video, audio, photo)}

    agent = Agent(*station_args("collect-once", folder, service, station_token))
    code = agent.finish()
    assert code == 0, agent.text
    receipts = collected(folder)
    assert set(receipts) == set(hashes), agent.text
    for name, digest in hashes.items():
        assert receipts[name]["sha256"] == digest
        assert sha256(folder / "collected" / name) == digest  # moved, not altered
        assert not (folder / name).exists()
        stored = head.recordings.GetRecording(
            rec.GetRecordingRequest(recording_id=str(receipts[name]["recording_id"]))
        )
        assert stored.recording.sha256 == digest
    assert (folder / "collected" / "REC0001.m4a.json").exists()  # the sidecar travels with its file
    assert notes.exists()  # not a recording: left alone

    audio_recording = head.recordings.GetRecording(
        rec.GetRecordingRequest(recording_id=str(receipts["REC0001.m4a"]["recording_id"]))
    ).recording
    assert audio_recording.classification.case_cause == "fire exits blocked"
    assert audio_recording.classification.party_informed is True
    # R20: evidence from an unknown device is accepted, with a finding
    assert "R20_UNKNOWN_DEVICE" in [f.code for f in audio_recording.findings]

    # running again finds nothing left to do and touches nothing
    again = Agent(*station_args("collect-once", folder, service, station_token))
    assert again.finish() == 0
    assert "0 collected, 0 not collected" in again.text


def test_station_killed_mid_upload_resumes_from_the_servers_offset(
    tmp_path: Path, media_svc: tuple[ServiceProcess, bytes], station_token: str, head: MediaClient
) -> None:
    service = media_svc[0]
    folder = tmp_path / "dock"
    folder.mkdir()
    start = (datetime.now(UTC) - timedelta(minutes=20)).replace(microsecond=0)
    big = make_video(folder, "BC-BIG-1", "alice", start, 6, big=True)
    size = big.stat().st_size
    assert size > 4 * 1024 * 1024, f"test video too small to interrupt: {size} bytes"
    digest = sha256(big)

    slow = Agent(*station_args("collect-once", folder, service, station_token, "--max-rate", "1M"))
    slow.wait_for_line(progress_at_least(big.name, 25))
    slow.process.send_signal(signal.SIGKILL)  # the station crashes mid-upload
    slow.finish()
    assert big.exists()
    assert collected(folder) == {}
    journal = json.loads((folder / ".lawtrail-station" / "journal.json").read_text())
    assert journal["files"][big.name]["state"] == "uploading"

    resumed = Agent(*station_args("collect-once", folder, service, station_token))
    assert resumed.finish() == 0, resumed.text
    line = next(x for x in resumed.output if x.startswith(f"resuming {big.name} at byte "))
    offset = int(line.split(" at byte ")[1].split()[0])
    assert 0 < offset < size
    receipt = collected(folder)[big.name]
    assert receipt["sha256"] == digest
    assert sha256(folder / "collected" / big.name) == digest
    stored = head.recordings.GetRecording(rec.GetRecordingRequest(recording_id=str(receipt["recording_id"])))
    assert stored.recording.sha256 == digest
    assert stored.recording.size_bytes == size


def test_watching_station_survives_a_server_crash_mid_upload(
    tmp_path: Path, media_svc: tuple[ServiceProcess, bytes], station_token: str
) -> None:
    service = media_svc[0]
    folder = tmp_path / "dock"
    folder.mkdir()
    start = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)
    big = make_video(folder, "BC-BIG-2", "dave", start, 6, big=True)
    digest = sha256(big)

    watcher = Agent(
        *station_args("watch", folder, service, station_token, "--max-rate", "1M", "--interval", "1")
    )
    try:
        watcher.wait_for_line(progress_at_least(big.name, 25))
        service.kill()  # media-svc crashes mid-upload
        assert big.exists()
        service.restart()
        watcher.wait_for_line(lambda line: line.startswith(f"collected {big.name}:"), timeout=120)
    finally:
        watcher.process.send_signal(signal.SIGTERM)
        watcher.finish(30)
    assert f"resuming {big.name} at byte" in watcher.text or "already stored" in watcher.text
    assert collected(folder)[big.name]["sha256"] == digest
