"""`python -m media_svc`: run media-svc (recordings and devices) until SIGTERM."""

from __future__ import annotations

import asyncio

from servicekit.app import run_service

from media_svc.adapters.grpc_wire import keep_freed_memory
from media_svc.bootstrap import MediaSettings, bootstrap


def main() -> None:
    keep_freed_memory()  # process-wide allocator setting for multi-MiB messages: once, before anything runs
    asyncio.run(run_service(MediaSettings(), bootstrap))


if __name__ == "__main__":
    main()
