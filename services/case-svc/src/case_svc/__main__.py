"""`python -m case_svc`: run case-svc until SIGTERM (settings from LAWTRAIL_* variables)."""

from __future__ import annotations

import asyncio

from servicekit.app import run_service

from case_svc.bootstrap import CaseSettings, bootstrap


def main() -> None:
    asyncio.run(run_service(CaseSettings(), bootstrap))


if __name__ == "__main__":
    main()
