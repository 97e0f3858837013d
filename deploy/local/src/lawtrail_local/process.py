"""Background processes of the stack: started detached, found again through pid files, stopped for sure.

`make up` returns while Kafka, FerretDB and the services keep running, and `make down` runs in another
process, so each process gets its own session (a terminal's Ctrl-C does not reach it; `killpg` reaches
the children it spawns) and a pid file. The pid file also records the kernel's start time of the
process, so a pid reused by an unrelated program after a reboot is never signalled — and `up` refuses
to start over such a pid file (the stack of that run may still be running under other pids, or its
ports be taken), saying which file and what to do, while `down` removes it and says so.

Processes started by a test run or a benchmark (`die_with_parent`) must not outlive the runner even when
it is killed with SIGKILL, which runs no cleanup: they get the kernel's parent-death signal
(PR_SET_PDEATHSIG), set by the `lawtrail_local.pdeathsig` launcher they are started through. The kernel
sends that signal when the *thread* that forked the child ends, not the process: so every such process
is forked by one thread kept for the purpose (`_spawn`), which ends only with the process — a start from
a worker thread (`asyncio.to_thread(stack.start)` in the benchmarks) neither leaves the process behind
when the runner is killed nor kills it when the worker thread finishes.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from lawtrail_local.errors import NotReadyError, StackError

LOG_TAIL_LINES = 30
_POLL_SECONDS = 0.1

_T = TypeVar("_T")
_Job = tuple[Callable[[], Any], "Future[Any]"]
_spawner_lock = threading.Lock()
_spawner: tuple[int, queue.SimpleQueue[_Job]] | None = None  # (pid that made it, its jobs)


def _serve(jobs: queue.SimpleQueue[_Job]) -> None:
    while True:
        fork, result = jobs.get()
        if not result.set_running_or_notify_cancel():
            continue
        try:
            result.set_result(fork())
        except BaseException as error:  # handed to the caller, who raises it
            result.set_exception(error)


def _spawn(fork: Callable[[], _T]) -> _T:
    """Run `fork` (a Popen) in the spawner thread: the one thread of this process that forks the
    processes which must die with it. It never ends before the process does (a daemon thread waiting
    for work), so their parent-death signal comes exactly when this process dies, however it dies."""
    global _spawner
    with _spawner_lock:
        if _spawner is None or _spawner[0] != os.getpid():  # none yet, or inherited through a fork
            jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
            threading.Thread(target=_serve, args=(jobs,), name="lawtrail-spawner", daemon=True).start()
            _spawner = (os.getpid(), jobs)
        jobs = _spawner[1]
    result: Future[_T] = Future()
    jobs.put((fork, result))
    return result.result()


class ForeignProcessError(StackError):
    """A pid file names a live process that is not the one this stack started."""


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()[:200] or "?"


def _start_ticks(pid: int) -> int | None:
    """The start time of `pid` in clock ticks since boot, or None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its closing ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def tail_lines(path: Path, count: int = LOG_TAIL_LINES) -> list[str]:
    """The last `count` lines of a (possibly large) text file; empty when it does not exist."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * 1024))
            data = f.read()
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-count:]


class LogWatch:
    """Looks for a line in what a program appends to its log from now on (earlier runs do not count)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = path.stat().st_size if path.exists() else 0
        self._carry = ""

    def seen(self, needle: str) -> bool:
        """Whether `needle` was written since this watch was created; reads only the new bytes."""
        try:
            with self.path.open("rb") as f:
                if os.fstat(f.fileno()).st_size < self._offset:  # rolled over: start of a new file
                    self._offset = 0
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return False
        self._offset += len(data)
        text = self._carry + data.decode("utf-8", "replace")
        if needle in text:
            return True
        self._carry = text[-len(needle) :]
        return False


class ManagedProcess:
    """One background process of the stack, with its log file(s) and pid file."""

    def __init__(
        self,
        name: str,
        *,
        pid_file: Path,
        log_file: Path,
        extra_logs: Sequence[Path] = (),
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        """`log_file` receives stdout and stderr; `extra_logs` are files the program writes itself;
        `stop_signal` asks the program to stop (PostgreSQL's SIGTERM waits for clients to disconnect)."""
        self.name = name
        self.stop_signal = stop_signal
        self.pid_file = pid_file
        self.log_file = log_file
        self.log_files = (log_file, *extra_logs)
        self._popen: subprocess.Popen[bytes] | None = None
        # True for processes of a test run: killed by the kernel when their starter dies.
        self.die_with_parent = False
        self._pid: int | None = None
        self._ticks: int | None = None
        self._started_at: float | None = None

    @property
    def pid(self) -> int | None:
        """The process id while it is known (started here or adopted from the pid file)."""
        return self._pid

    @property
    def running(self) -> bool:
        """Whether the process is alive (for a child of ours, this also reaps it once it exited)."""
        if self._popen is not None:
            return self._popen.poll() is None
        return self._pid is not None and _start_ticks(self._pid) == self._ticks

    def start(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: pwd.struct_passwd | None = None,
    ) -> None:
        """Start `argv` detached, appending its output to the log file, and write the pid file.

        `user`: run as that (unprivileged) account, with its primary group only (needs root).
        """
        if self.adopt():
            raise StackError(f"{self.name} is already running (pid {self._pid}, pid file {self.pid_file})")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        # Through a launcher, not a preexec_fn: see lawtrail_local.pdeathsig. The kernel sends the signal
        # when the *thread* that forked the process ends, so it is forked by the spawner thread (module
        # doc), whichever thread calls (the benchmarks start their stack from `asyncio.to_thread`).
        dies_with_parent = self.die_with_parent and sys.platform == "linux"
        if dies_with_parent:
            if user is None:
                argv = [sys.executable, "-m", "lawtrail_local.pdeathsig", str(os.getpid()), *argv]
            else:
                # An unprivileged account (PostgreSQL's) may not be able to run this interpreter (it can
                # live under root's home): util-linux's setpriv sets the signal after the switch of
                # account (which clears it) and execs the program.
                argv = ["setpriv", "--pdeathsig", "KILL", "--", *argv]
        with self.log_file.open("ab") as log:

            def fork() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(env) if env is not None else None,
                    cwd=cwd,
                    start_new_session=True,
                    user=user.pw_uid if user else None,
                    group=user.pw_gid if user else None,
                    extra_groups=[] if user else None,
                )

            self._popen = _spawn(fork) if dies_with_parent else fork()
        self._started_at = time.monotonic()
        self._pid = self._popen.pid
        self._ticks = _start_ticks(self._pid)
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(f"{self._pid} {self._ticks}\n")
        tmp.replace(self.pid_file)

    def adopt(self, *, drop_foreign: bool = False) -> bool:
        """Take over the process named by the pid file if it still runs (the `down`/`status` case).

        A pid file whose process is gone is removed. One whose pid now belongs to another live
        program (another start time) raises ForeignProcessError naming the file and the program —
        unless `drop_foreign` (the `down` case), which removes it and reports it on stderr.
        """
        if self.running:
            return True
        try:
            pid_text, ticks_text = self.pid_file.read_text().split()
            pid, ticks = int(pid_text), int(ticks_text)
        except (OSError, ValueError):
            self.pid_file.unlink(missing_ok=True)
            return False
        actual = _start_ticks(pid)
        if actual is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        if actual != ticks:
            message = (
                f"stale pid file {self.pid_file}: it names pid {pid} for {self.name}, but pid {pid} is now "
                f"another program ({_cmdline(pid)!r}, started at another time), so it is not ours"
            )
            if drop_foreign:
                self.pid_file.unlink(missing_ok=True)
                print(f"{message}; removed the pid file and left that program alone", file=sys.stderr)
                return False
            raise ForeignProcessError(
                f"{message}. The run that wrote it did not stop cleanly: run `make down` (it removes stale "
                f"pid files without signalling anyone), check that nothing of that run still holds the "
                f"stack's ports, then `make up` again"
            )
        self._popen, self._pid, self._ticks, self._started_at = None, pid, ticks, None
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Send the stop signal to the process group, wait up to `timeout` seconds, then SIGKILL it."""
        if self.running:
            self._signal(self.stop_signal)
            if not self._wait_exit(timeout):
                self._signal(signal.SIGKILL)
                if not self._wait_exit(10.0):
                    raise StackError(f"{self.name} (pid {self._pid}) survived SIGKILL")
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the process group at once: a crash, for tests of recovery."""
        if self.running:
            self._signal(signal.SIGKILL)
            if not self._wait_exit(10.0):
                raise StackError(f"{self.name} (pid {self._pid}) survived SIGKILL")
        self.pid_file.unlink(missing_ok=True)

    def wait_until(self, ready: Callable[[], bool], *, what: str, timeout: float) -> float:
        """Poll `ready` until it is true; return the seconds since the start (or since this call).

        Fails with `NotReadyError` (ending in the log tail) as soon as the process exits, or when
        `timeout` passes, so a broken start never hangs.
        """
        started = time.monotonic()
        while True:
            if ready():
                return time.monotonic() - (self._started_at or started)
            if not self.running:
                code = self._popen.returncode if self._popen is not None else None
                how = f" with exit code {code}" if code is not None else ""
                raise NotReadyError(f"{self.name} exited{how} before {what}\n{self.log_tail()}")
            if time.monotonic() - started > timeout:
                raise NotReadyError(
                    f"{self.name} (pid {self._pid}) did not get {what} within {timeout:.0f} s\n"
                    + self.log_tail()
                )
            time.sleep(_POLL_SECONDS)

    def log_tail(self, count: int = LOG_TAIL_LINES) -> str:
        """The last lines of every non-empty log of this process, each under a header naming the file."""
        parts = []
        for path in self.log_files:
            lines = tail_lines(path, count)
            if lines:
                parts.append(f"--- last {len(lines)} lines of {path} ---\n" + "\n".join(lines))
        return "\n".join(parts) if parts else f"(no log output in {', '.join(map(str, self.log_files))})"

    def _signal(self, sig: signal.Signals) -> None:
        assert self._pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._pid, sig)

    def _wait_exit(self, timeout: float) -> bool:
        if self._popen is not None:
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while self.running:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True
