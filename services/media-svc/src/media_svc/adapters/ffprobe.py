"""Media facts with ffprobe (Debian's `ffmpeg` package): format, streams, duration, creation time."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from media_svc.service_layer.ports import MediaProber

log = logging.getLogger(__name__)


class FfprobeProber(MediaProber):
    def __init__(self, executable: str = "ffprobe", timeout_s: float = 60.0) -> None:
        found = shutil.which(executable)
        if found is None:
            raise RuntimeError(
                f"'{executable}' is not on PATH: media-svc needs ffprobe to read media facts "
                "(Debian: apt-get install ffmpeg; or `make setup`)"
            )
        self._exe = found
        self._timeout = timeout_s

    async def probe(self, path: Path) -> Mapping[str, Any]:
        proc = await asyncio.create_subprocess_exec(
            self._exe,
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            str(path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self._timeout)
        except TimeoutError:
            log.warning("ffprobe timed out after %.0f s on %s", self._timeout, path.name)
            return {}
        finally:
            if proc.returncode is None:  # timed out, or the upload was cancelled: leave no process behind
                proc.kill()
        if proc.returncode != 0:
            log.info("ffprobe could not read %s: %s", path.name, err.decode(errors="replace").strip()[:500])
            return {}
        try:
            parsed = json.loads(out)
        except json.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
