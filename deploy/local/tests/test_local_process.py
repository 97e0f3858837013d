"""Background process handling: pid files across processes, stop escalation, readiness failures."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lawtrail_local.errors import NotReadyError, StackError
from lawtrail_local.process import ForeignProcessError, LogWatch, ManagedProcess, tail_lines


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


def test_a_pid_file_naming_a_foreign_process_is_refused_clearly_and_never_signalled(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "60"])
    try:
        process = _process(tmp_path)
        process.pid_file.parent.mkdir(parents=True)
        process.pid_file.write_text(f"{other.pid} 1\n")  # same pid, another start time
        with pytest.raises(
            ForeignProcessError, match=rf"stale pid file .*pid {other.pid} is now another program"
        ):
            process.start(["sleep", "60"])  # what `make up` does
        assert process.pid_file.exists()
        assert other.poll() is None
        # `make down` removes the stale file and leaves the program alone
        assert not process.adopt(drop_foreign=True)
        assert not process.pid_file.exists()
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("starting_thread", ["main", "worker"])
def test_a_process_started_for_tests_dies_with_its_starter_even_on_sigkill(
    tmp_path: Path, starting_thread: str
) -> None:
    """The test runner or a benchmark killed with SIGKILL runs no finalizer: the kernel must take its
    processes along — also those started from a worker thread (the benchmarks' `asyncio.to_thread(
    stack.start)`), and those must not die when that thread ends (the parent-death signal follows the
    thread that forked the process)."""
    script = f"""
import sys, threading, time
from pathlib import Path
from lawtrail_local.process import ManagedProcess
d = Path({str(tmp_path)!r})
p = ManagedProcess("child", pid_file=d / "child.pid", log_file=d / "c.log")
p.die_with_parent = True
if {starting_thread!r} == "main":
    p.start(["sleep", "120"])
else:
    worker = threading.Thread(target=p.start, args=(["sleep", "120"],))
    worker.start()
    worker.join()  # the thread that asked for the start is gone
print(p.pid, flush=True)
time.sleep(120)
"""
    starter = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert starter.stdout is not None
        child = int(starter.stdout.readline())
        time.sleep(1.0)  # a parent-death signal tied to the finished worker thread would have come by now
        assert _alive(child), f"pid {child} died although the process that started it still runs"
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), f"pid {child} outlived the process that started it"
    finally:
        starter.kill()
        starter.wait()
        with contextlib.suppress(NameError, ProcessLookupError):
            os.kill(child, signal.SIGKILL)  # a failed run leaves nothing behind


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


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
