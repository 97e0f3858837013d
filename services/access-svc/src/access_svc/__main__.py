"""`python -m access_svc`: run access-svc until SIGTERM (settings from LAWTRAIL_* variables)."""

from __future__ import annotations

import asyncio

from servicekit.app import run_service

from access_svc.bootstrap import AccessSettings, bootstrap


def main() -> None:
    asyncio.run(run_service(AccessSettings(), bootstrap))


if __name__ == "__main__":
    main()
