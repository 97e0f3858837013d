"""Progress lines of the launcher: one line per step on stderr, so stdout stays free for output."""

from __future__ import annotations

import sys
from collections.abc import Callable

#: Receives one human-readable line per step ("kafka ready in 4.2 s").
Progress = Callable[[str], None]


def stderr_progress(message: str) -> None:
    """The default `Progress`: print the line on stderr at once (make shows it while we wait)."""
    print(message, file=sys.stderr, flush=True)


def no_progress(message: str) -> None:
    """A `Progress` that drops every line."""
