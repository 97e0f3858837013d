"""Entry point of `python -m lawtrail_local`."""

from lawtrail_local.cli import main

raise SystemExit(main())
