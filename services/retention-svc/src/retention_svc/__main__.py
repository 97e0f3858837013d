"""`python -m retention_svc`: run retention-svc until SIGTERM (settings from LAWTRAIL_* variables)."""

from __future__ import annotations

import asyncio

from servicekit.app import run_service

from retention_svc.bootstrap import RetentionSettings, bootstrap


def main() -> None:
    asyncio.run(run_service(RetentionSettings(), bootstrap))


if __name__ == "__main__":
    main()
