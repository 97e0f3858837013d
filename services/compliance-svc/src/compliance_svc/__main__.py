"""`python -m compliance_svc`: run compliance-svc until SIGTERM (settings from LAWTRAIL_* variables)."""

from __future__ import annotations

import asyncio

from servicekit.app import run_service

from compliance_svc.bootstrap import ComplianceSettings, bootstrap


def main() -> None:
    asyncio.run(run_service(ComplianceSettings(), bootstrap))


if __name__ == "__main__":
    main()
