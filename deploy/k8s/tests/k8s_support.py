"""Helpers of the deploy/k8s tests (a module of its own name: `conftest` is not importable by name
when pytest collects several test folders in one run)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

K8S = Path(__file__).resolve().parents[1]
KUSTOMIZE_VERSION = "5.8.1"  # the Makefile's KUSTOMIZE_VERSION


def tool(name: str, env: str, cached: Path | None = None) -> str:
    candidates = [os.environ.get(env), str(cached) if cached else None, shutil.which(name)]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"{name} not found (looked at ${env}, {cached}, PATH): run `make k8s-tools`", pytrace=False)


def kustomize_path() -> str:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lawtrail"
    return tool("kustomize", "KUSTOMIZE", cache / f"kustomize-{KUSTOMIZE_VERSION}" / "kustomize")


def overlay_dirs() -> list[Path]:
    return sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))


def render(path: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [kustomize_path(), "build", str(path)], capture_output=True, text=True, check=False, timeout=120
    )
    if done.returncode != 0:
        pytest.fail(f"kustomize build {path.relative_to(K8S)} failed:\n{done.stderr}", pytrace=False)
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def configured_env(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    """The literal environment a Deployment gives its container named `name` ({} when not deployed)."""
    deployment = of_kind(docs, "Deployment").get(name)
    if deployment is None:
        return {}
    configmaps = of_kind(docs, "ConfigMap")
    env: dict[str, str] = {}
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        if container["name"] != name:
            continue
        for source in container.get("envFrom", []):
            env.update(configmaps[source["configMapRef"]["name"]]["data"])
        env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d.get("kind") == kind}
