"""pytest fixtures giving integration tests a real Kafka + FerretDB and real Lawtrail service processes.

Enable it in a conftest.py with `pytest_plugins = ["lawtrail_local.pytest_plugin"]`. Everything listens
on free ports of 127.0.0.1 and lives in pytest's temporary directories, so the tests neither need nor
disturb a stack started with `make up`. Example::

    async def test_case_survives_a_crash(stack, start_service):
        case = start_service("case-svc", env={"LAWTRAIL_LOG_LEVEL": "DEBUG"})
        ...  # talk to case.grpc_address; events are on stack.kafka_bootstrap
        case.kill()     # SIGKILL, as in a crash
        case.restart()  # same ports, environment and database; waits for SERVING
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from lawtrail_local.ports import free_ports
from lawtrail_local.progress import Progress, stderr_progress
from lawtrail_local.services import ServiceProcess, ServiceSpec, service_spec
from lawtrail_local.stack import Stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[Stack]:
    """Kafka + FerretDB for the whole test session, with the topics of deploy/local/topics.toml.

    FerretDB's backend is `$LAWTRAIL_LOCAL_DB` (default PostgreSQL, in a throw-away cluster)."""
    kafka_port, controller_port, mongo_port = free_ports(3)
    local_stack = Stack(
        tmp_path_factory.mktemp("lawtrail-stack"),
        kafka_port,
        controller_port,
        mongo_port,
        progress=_live_progress(pytestconfig),
        throwaway=True,
        # Killed with the test runner, even by SIGKILL (no finalizer runs then): no orphans.
        die_with_parent=True,
    )
    local_stack.start()
    try:
        yield local_stack
    finally:
        local_stack.stop()


def _live_progress(config: pytest.Config) -> Progress:
    """Progress lines shown while pytest captures output: a first run fetches and builds for ~2 minutes,
    which must not look like a hang in CI."""
    capture = config.pluginmanager.get_plugin("capturemanager")

    def progress(message: str) -> None:
        line = f"lawtrail-local: {message}"
        if capture is None:
            stderr_progress(line)
            return
        with capture.global_and_fixture_disabled():
            writer = config.get_terminal_writer()
            if writer.width_of_current_line:  # after a row of progress dots
                writer.line()
            writer.line(line)

    return progress


def query_shapes_file(stack: Stack) -> Path:
    """Where the services started by this test session record the shapes of their queries."""
    return stack.data_dir / "query-shapes.jsonl"


class ServiceStarter:
    """Starts Lawtrail services on free ports against a stack, and stops them all at the end.

    The `start_service` fixture is one per test; a test module that wants a service for all its tests
    builds its own: `ServiceStarter(stack, tmp_path_factory.mktemp("svc"))` in a module-scoped fixture.
    """

    def __init__(self, stack: Stack, run_dir: Path) -> None:
        """Pid files and logs go to `run_dir`; so does the LAWTRAIL_DATA_DIR the services share."""
        self.stack = stack
        self.run_dir = run_dir
        self.data_dir = run_dir / "data"
        self.started: list[ServiceProcess] = []
        self._instances: Counter[str] = Counter()
        self._database_suffix = secrets.token_hex(4)

    def __call__(
        self, name: str | ServiceSpec, *, env: Mapping[str, str] | None = None, ready_timeout: float = 60.0
    ) -> ServiceProcess:
        """Start service `name` (`case-svc`, `case_svc`, a spec); wait until its health check says SERVING.

        Skips the test when the service has no `__main__` yet. Its database is its own name plus a
        suffix unique to this starter (tests do not see each other's documents; a restart keeps them);
        `env` adds or overrides variables, e.g. {"LAWTRAIL_MONGO_DATABASE": "case_svc"}.
        """
        spec = service_spec(name) if isinstance(name, str) else name
        reason = spec.unavailable_reason()
        if reason:
            pytest.skip(f"{spec.name} cannot run yet: {reason}")
        self._instances[spec.name] += 1
        count = self._instances[spec.name]
        grpc_port, metrics_port = free_ports(2)
        service = self.stack.service(
            spec,
            run_dir=self.run_dir,
            data_dir=self.data_dir,
            grpc_port=grpc_port,
            metrics_port=metrics_port,
            env={
                "LAWTRAIL_MONGO_DATABASE": f"{spec.module}_{self._database_suffix}",
                # Every query the services issue, for the index-coverage test (servicekit.queryshapes).
                "LAWTRAIL_QUERY_SHAPES_FILE": str(query_shapes_file(self.stack)),
                **(env or {}),
            },
            instance=spec.name if count == 1 else f"{spec.name}-{count}",
        )
        self.started.append(service)
        service.start()
        service.wait_ready(ready_timeout)
        return service

    def stop_all(self) -> None:
        """Stop every service this starter started (SIGTERM, then SIGKILL after 30 s)."""
        for service in reversed(self.started):
            service.stop()


@pytest.fixture
def start_service(stack: Stack, tmp_path: Path) -> Iterator[ServiceStarter]:
    """A `ServiceStarter` for this test: `start_service("case-svc")` returns a ready `ServiceProcess`."""
    starter = ServiceStarter(stack, tmp_path / "lawtrail")
    try:
        yield starter
    finally:
        starter.stop_all()
