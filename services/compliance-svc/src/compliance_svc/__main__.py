"""`python -m compliance_svc`: run compliance-svc until SIGTERM (settings from LAWTRAIL_* variables)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import traceback

from servicekit.app import run_service

from compliance_svc.bootstrap import ComplianceSettings, bootstrap


def main() -> None:
    try:
        asyncio.run(run_service(ComplianceSettings(), bootstrap))
    except Exception:
        # The service failed (e.g. its stall watchdog stopped a faust app that read nothing) and has
        # stopped what it manages. faust's consumer runs in a non-daemon thread: one that is wedged —
        # which a stall can be — would keep this process alive after its service stopped, out of
        # Kubernetes' reach. Exit without waiting for it.
        traceback.print_exc()
        logging.shutdown()
        sys.stderr.flush()
        os._exit(1)


if __name__ == "__main__":
    main()
