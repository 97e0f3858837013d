"""Shared runtime of every Lawtrail service (see libs/servicekit/README.md).

Domains import only ``servicekit.errors``; everything else is for entry points, adapters and bootstrap.
"""
