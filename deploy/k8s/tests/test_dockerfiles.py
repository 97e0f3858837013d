"""The services' Dockerfiles (no image can be built here: no Docker). What can be checked from their
text and the lock: multi-stage, pinned bases, installs from uv.lock only and exactly its own
workspace package's closure, no build tools in the final image, non-root (the pods' uid), read-only
friendly (bytecode compiled at build), the entry point exists, the ports match the settings."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from codefacts import ROOT, ServiceFacts, service_dirs

BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|make|build-essential|uv sync|uv pip|pip install|git)\b")


def _stages(dockerfile: Path) -> list[list[str]]:
    """The instructions of each stage (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def _project(service_dir: Path) -> dict:
    return tomllib.loads((service_dir / "pyproject.toml").read_text())


@pytest.fixture(params=[d.name for d in service_dirs()])
def service(request: pytest.FixtureRequest, services: list[ServiceFacts]) -> ServiceFacts:
    return next(s for s in services if s.name == request.param)


def _dockerfile(service: ServiceFacts) -> Path:
    path = ROOT / "services" / service.name / "Dockerfile"
    assert path.is_file(), f"services/{service.name}/Dockerfile is missing"
    return path


def test_multi_stage_with_pinned_base_images(service: ServiceFacts) -> None:
    stages = _stages(_dockerfile(service))
    assert len(stages) >= 2, f"{service.name}: build and run stages"
    for stage in stages:
        image = stage[0].split()[1]
        assert re.search(r":\d+\.\d+\.\d+", image), (
            f"{service.name}: base image {image} is not pinned to a version"
        )
    copies = [i for s in stages for i in s if i.startswith("COPY --from=") and "uv" in i.split()[1]]
    for copy in copies:
        assert re.search(r"uv:\d+\.\d+\.\d+", copy), f"{service.name}: uv is not pinned: {copy}"


def test_installs_only_from_the_lock_and_only_its_own_package(service: ServiceFacts) -> None:
    build = "\n".join(_stages(_dockerfile(service))[0])
    name = _project(ROOT / "services" / service.name)["project"]["name"]
    (sync,) = re.findall(r"uv sync [^\n]*", build)
    for flag in ("--frozen", "--no-dev", "--no-editable", f"--package {name}"):
        assert flag in sync, f"{service.name}: `{sync}` lacks {flag}"


def _uv() -> list[str]:
    if os.environ.get("UV"):
        return shlex.split(os.environ["UV"])
    found = shutil.which("uv")
    return [found] if found else ["python3", "-m", "uv"]


def test_the_locked_closure_holds_its_package_and_no_other_service(service: ServiceFacts) -> None:
    """What `uv sync --frozen --package` installs, read from uv.lock: workspace members = the
    service and the libraries it depends on (never another service, the clients or the local stack)."""
    name = _project(ROOT / "services" / service.name)["project"]["name"]
    done = subprocess.run(
        [*_uv(), "export", "--frozen", "--no-dev", "--no-hashes", "--package", name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    members = {line.split()[1] for line in done.stdout.splitlines() if line.startswith("-e ")}
    assert f"./services/{service.name}" in members
    # Libraries (libs/*, the clients SDK a service may call another with) are fine; another service,
    # the local stack or the tools are not.
    others = {m for m in members if m.startswith(("./services/", "./deploy/", "./tools"))}
    others -= {f"./services/{service.name}"}
    assert not others, f"{service.name}'s image would also install {sorted(others)}"
    assert not any(
        re.match(r"(pytest|ruff|mypy|kubernetes-validate)==", line) for line in done.stdout.splitlines()
    )


def test_final_stage_has_no_build_tools_and_runs_as_the_pods_user(service: ServiceFacts) -> None:
    final = _stages(_dockerfile(service))[-1]
    runs = " ".join(i for i in final if i.startswith("RUN "))
    assert not BUILD_TOOLS.search(runs), f"{service.name}: build tools in the final image: {runs}"
    copies = [i for i in final if i.startswith("COPY")]
    assert copies == ["COPY --from=build /app/.venv /app/.venv"], (
        f"{service.name}: final image copies {copies}"
    )
    (user,) = [i.split()[1] for i in final if i.startswith("USER ")]
    assert user == "10001:10001", f"{service.name}: USER {user} (the Deployment's runAsUser is 10001)"
    assert "pip uninstall" in runs, f"{service.name}: pip stays in the final image"
    env = " ".join(i for i in final if i.startswith("ENV "))
    assert "PYTHONDONTWRITEBYTECODE=1" in env, "read-only root: no .pyc written at run time"
    build = " ".join(_stages(_dockerfile(service))[0])
    assert "UV_COMPILE_BYTECODE=1" in build


def test_entry_point_and_ports(service: ServiceFacts) -> None:
    final = _stages(_dockerfile(service))[-1]
    (entrypoint,) = [i for i in final if i.startswith("ENTRYPOINT ")]
    assert entrypoint == f'ENTRYPOINT ["python", "-m", "{service.package}"]'
    src = ROOT / "services" / service.name / "src" / service.package / "__main__.py"
    assert src.is_file(), f"{service.name}: python -m {service.package} needs {src}"
    (expose,) = [i for i in final if i.startswith("EXPOSE ")]
    assert expose.split()[1:] == [str(service.grpc_port), str(service.metrics_port), "8081"]


def test_images_with_ffmpeg_are_the_ones_that_call_it(service: ServiceFacts) -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "services" / service.name / "src").rglob("*.py"))
    calls_ffmpeg = bool(re.search(r"[\"'](ffprobe|ffmpeg)[\"']", source))
    final = " ".join(_stages(_dockerfile(service))[-1])
    assert ("install --yes --no-install-recommends ffmpeg" in final) == calls_ffmpeg, (
        f"{service.name}: ffmpeg in the image must match whether its code runs ffprobe/ffmpeg"
    )


def test_the_build_context_leaves_local_state_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".lawtrail"} <= set(ignored)
