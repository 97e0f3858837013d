"""Fixtures of the launcher's own tests; the `stack` fixture comes from the plugin they test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lawtrail_local.services import ServiceSpec

pytest_plugins = ["lawtrail_local.pytest_plugin"]

FAKE_SERVICES = Path(__file__).parent / "fake_services"


@pytest.fixture
def fake_spec(monkeypatch: pytest.MonkeyPatch) -> ServiceSpec:
    """A service that only answers health checks, importable here and in the processes we start."""
    monkeypatch.syspath_prepend(str(FAKE_SERVICES))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(FAKE_SERVICES), os.environ.get("PYTHONPATH")]))
    )
    return ServiceSpec("fake-svc", "lawtrail_fake_svc", grpc_port=1, metrics_port=2)
