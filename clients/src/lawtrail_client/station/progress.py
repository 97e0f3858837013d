"""A small progress bar on a text stream: redrawn in place on a terminal, a line per 25 % otherwise."""

from __future__ import annotations

import time
from typing import TextIO

_WIDTH = 30


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class ProgressBar:
    def __init__(self, label: str, total: int, stream: TextIO, *, start_at: int = 0) -> None:
        self.label = label
        self.total = max(total, 1)
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._start = time.monotonic()
        self._start_at = start_at
        self._last_draw = 0.0
        self._last_step = -1
        self._done = start_at

    def update(self, done: int, total: int | None = None) -> None:
        self._done = done
        now = time.monotonic()
        if self.tty:
            if now - self._last_draw >= 0.1 or done >= self.total:
                self._last_draw = now
                self.stream.write("\r" + self._line(now))
                self.stream.flush()
            return
        step = int(done * 4 / self.total)
        if step != self._last_step:
            self._last_step = step
            self.stream.write(self._line(now) + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r" + self._line(time.monotonic()) + "\n")
            self.stream.flush()

    def _line(self, now: float) -> str:
        fraction = min(1.0, self._done / self.total)
        filled = int(fraction * _WIDTH)
        elapsed = max(now - self._start, 1e-6)
        rate = (self._done - self._start_at) / elapsed
        return (
            f"{self.label} [{'#' * filled}{'.' * (_WIDTH - filled)}] {fraction * 100:5.1f}% "
            f"{human_bytes(self._done)}/{human_bytes(self.total)} {human_bytes(rate)}/s"
        )
