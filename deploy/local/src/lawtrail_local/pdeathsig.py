"""`python -m lawtrail_local.pdeathsig <parent pid> <program> [args…]`: a program dying with its parent.

Sets the kernel's parent-death signal (PR_SET_PDEATHSIG → SIGKILL) and then execs the program, which
keeps the setting (it survives execve). Used instead of a Popen ``preexec_fn``: running Python code
between fork and exec in a process with threads (gRPC's, the test runner's) can deadlock or crash the
child — observed as SIGSEGV in ``logging``'s at-fork handler. Here the setting is made in a fresh,
single-threaded interpreter.

The signal follows the *thread* that started this launcher (`lawtrail_local.process` starts it from a
thread that lives as long as its process); `<parent pid>` guards the race where the parent died before
the setting took effect.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: python -m lawtrail_local.pdeathsig <parent pid> <program> [args…]")
    parent, program = int(argv[0]), argv[1:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_PDEATHSIG) failed: errno {ctypes.get_errno()}")
    if os.getppid() != parent:
        sys.exit(f"parent {parent} is already gone: not starting {program[0]}")
    os.execvp(program[0], program)  # noqa: S606 - argv as given, no shell


if __name__ == "__main__":
    main(sys.argv[1:])
