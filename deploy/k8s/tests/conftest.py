"""Fixtures of the deploy/k8s tests: each overlay rendered once by the pinned kustomize, the facts of
every service read from its code (codefacts.py), the published CRD schemas (deploy/k8s/crds).

The tools come from `make k8s-tools` (kustomize v5.8.1 via `go install` into the cache, promtool from
Debian's `prometheus`); a missing tool fails the run with what to do, never skips it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import codefacts
from k8s_support import configured_env, overlay_dirs, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """overlay name -> its rendered resources."""
    overlays = {path.name: render(path) for path in overlay_dirs()}
    assert {"dev", "prod"} <= set(overlays), f"overlays dev and prod must exist, found {sorted(overlays)}"
    return overlays


@pytest.fixture(scope="session")
def services(
    tmp_path_factory: pytest.TempPathFactory, rendered: dict[str, list[dict[str, Any]]]
) -> list[codefacts.ServiceFacts]:
    """Every service's facts, derived from its code as prod configures it (codefacts.py)."""
    facts = [
        codefacts.service_facts(d, tmp_path_factory.mktemp(d.name), configured_env(rendered["prod"], d.name))
        for d in codefacts.service_dirs()
    ]
    assert facts, "no services found under services/"
    return facts
