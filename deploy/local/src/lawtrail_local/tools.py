"""Finding the external programs (java, mvn, go) with an install hint when one is missing."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from lawtrail_local.errors import MissingToolError, StackError

_HINTS = {
    "java": "Kafka 4.x needs Java 17 or newer: `apt-get install -y openjdk-17-jre-headless`",
    "mvn": "Maven fetches the Kafka jars from Maven Central: `apt-get install -y maven`",
    "go": (
        "building FerretDB needs Go 1.24 or newer (Debian bookworm's golang-go is 1.19, too old); "
        "the machine image puts Go in /usr/local/go/bin"
    ),
}

# Go's official install location is often missing from PATH in non-login shells (CI, make).
_FALLBACKS = {"go": [Path("/usr/local/go/bin/go")]}


def find_tool(name: str, why: str) -> str:
    """The path of program `name`, or `MissingToolError` saying what needed it and how to install it."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in _FALLBACKS.get(name, []):
        if candidate.is_file():
            return str(candidate)
    hint = _HINTS.get(name, "install it")
    raise MissingToolError(f"`{name}` is not on PATH ({why}); {hint}")


def run_tool(
    argv: list[str],
    *,
    what: str,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run a fetch/build step, failing with the end of its output instead of a bare exit code."""
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd, env=env
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{what} did not finish within {timeout:.0f} s: {' '.join(argv)}") from exc
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise StackError(f"{what} failed (exit code {result.returncode}): {' '.join(argv)}\n{output}")
