"""Background process handling: pid files across processes, stop escalation, readiness failures."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from lawtrail_local.errors import NotReadyError, StackError
from lawtrail_local.process import LogWatch, ManagedProcess, tail_lines


def _process(tmp_path: Path, name: str = "sleeper") -> ManagedProcess:
    return ManagedProcess(
        name, pid_file=tmp_path / "run" / f"{name}.pid", log_file=tmp_path / "logs" / f"{name}.log"
    )


def test_another_instance_adopts_and_stops_the_process(tmp_path: Path) -> None:
    first = _process(tmp_path)
    first.start(["sleep", "60"])
    assert first.running
    assert first.pid_file.exists()

    second = _process(tmp_path)  # as `down` in another process sees it
    assert second.adopt()
    assert second.pid == first.pid
    second.stop(timeout=5)

    assert not first.running
    assert not first.pid_file.exists()


def test_starting_twice_is_refused(tmp_path: Path) -> None:
    first = _process(tmp_path)
    first.start(["sleep", "60"])
    try:
        with pytest.raises(StackError, match="already running"):
            _process(tmp_path).start(["sleep", "60"])
    finally:
        first.stop()


def test_stale_pid_file_is_dropped(tmp_path: Path) -> None:
    done = subprocess.run(["true"], check=True)
    assert done.returncode == 0
    process = _process(tmp_path)
    process.pid_file.parent.mkdir(parents=True)
    process.pid_file.write_text("999999999 12345\n")
    assert not process.adopt()
    assert not process.pid_file.exists()


def test_reused_pid_is_not_adopted(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "60"])
    try:
        process = _process(tmp_path)
        process.pid_file.parent.mkdir(parents=True)
        process.pid_file.write_text(f"{other.pid} 1\n")  # same pid, another start time
        assert not process.adopt()
    finally:
        other.kill()
        other.wait()


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    process = _process(tmp_path)
    process.start(["sh", "-c", "trap '' TERM; echo stubborn; while :; do sleep 0.1; done"])
    process.wait_until(lambda: "stubborn" in process.log_file.read_text(), what="started", timeout=10)
    began = time.monotonic()
    process.stop(timeout=0.5)
    assert not process.running
    assert time.monotonic() - began < 5


def test_exit_before_ready_fails_with_the_log_tail(tmp_path: Path) -> None:
    process = _process(tmp_path, "broken")
    process.start(["sh", "-c", "for i in $(seq 1 40); do echo line $i; done; exit 7"])
    with pytest.raises(NotReadyError) as excinfo:
        process.wait_until(lambda: False, what="ready", timeout=30)
    message = str(excinfo.value)
    assert "broken exited with exit code 7 before ready" in message
    assert "last 30 lines of" in message
    assert "line 40" in message
    assert "line 10\n" not in message


def test_not_ready_in_time_fails_and_names_what_is_missing(tmp_path: Path) -> None:
    process = _process(tmp_path, "slow")
    process.start(["sleep", "60"])
    try:
        with pytest.raises(NotReadyError, match=r"slow \(pid \d+\) did not get ready within 0 s"):
            process.wait_until(lambda: False, what="ready", timeout=0.3)
    finally:
        process.kill()
    assert not process.running


def test_log_watch_sees_only_new_lines(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("Kafka Server started (last run)\n")
    watch = LogWatch(log)
    assert not watch.seen("Kafka Server started")
    with log.open("a") as f:
        f.write("INFO Kafka Server sta")
    assert not watch.seen("Kafka Server started")
    with log.open("a") as f:
        f.write("rted\n")
    assert watch.seen("Kafka Server started")


def test_tail_lines_of_missing_file_is_empty(tmp_path: Path) -> None:
    assert tail_lines(tmp_path / "nope.log") == []
