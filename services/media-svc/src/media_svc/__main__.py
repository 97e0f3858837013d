"""`python -m media_svc`: run media-svc (recordings and devices) until SIGTERM."""

from __future__ import annotations

import asyncio

from servicekit.app import run_service

from media_svc.bootstrap import MediaSettings, bootstrap
from media_svc.entrypoints.recording_api import keep_freed_memory


def main() -> None:
    keep_freed_memory()  # process-wide allocator setting for multi-MiB messages: once, before anything runs
    asyncio.run(run_service(MediaSettings(), bootstrap))


if __name__ == "__main__":
    main()
