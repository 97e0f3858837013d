"""pytest fixtures giving integration tests a real Kafka + FerretDB and real Lawtrail service processes.

Enable it in a conftest.py with `pytest_plugins = ["lawtrail_local.pytest_plugin"]`. Everything listens
on free ports of 127.0.0.1 and lives in pytest's temporary directories, so the tests neither need nor
disturb a stack started with `make up`. Example::

    async def test_case_survives_a_crash(stack, start_service):
        case = start_service("case-svc", env={"LAWTRAIL_LOG_LEVEL": "DEBUG"})
        ...  # talk to case.grpc_address; events are on stack.kafka_bootstrap
        case.kill()     # SIGKILL, as in a crash
        case.restart()  # same ports, environment and database; waits for SERVING

Services started by a `ServiceStarter` join their consumer groups under the same names as every other
process of that service in the session (`media-svc.case-projection`, `case-svc.media-events`, ...). Two
processes of one service from different starters running at once split the group's partitions: each
applies only some events, into its own database, and the tests of both see events go missing (a
session-scoped case-svc once kept partitions of `case-svc.media-events` from every later module's
case-svc). So the plugin enforces, and names the fixture when it does not hold:

- no service process started by a starter outlives the module it ran in: at the end of every module, a
  process still running fails the session (an error at the module's last teardown naming the service
  and the fixture or test that started it), and is stopped so the modules after it run clean;
- a starter does not start a service another live starter is running (the start fails the same way).

Why not a consumer-group suffix per starter, as the database name has: a new group starts at offset 0,
so every service started later in a session would first replay every event of the session before its
projections were current; each suffixed group would need a dead-letter topic of its own (topics are never
auto-created); and every test that waits for a group by name would need to learn the suffix. It would
also hide the overlap rather than end it: the two processes would still both run, each applying every
event. The checks keep the production group names and stop the overlap at its cause.
"""

from __future__ import annotations

import inspect
import secrets
from collections import Counter
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

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


# What is being set up or run now (innermost last): who a ServiceStarter made now belongs to.
_owners: list[str] = []
# Every ServiceStarter made in this session whose services may still run (see the module docstring).
_starters: list[ServiceStarter] = []


def _fixture_name(fixturedef: pytest.FixtureDef[Any]) -> str:
    try:
        where = Path(inspect.getsourcefile(fixturedef.func) or "?")
        where = where.relative_to(Path.cwd()) if where.is_relative_to(Path.cwd()) else where
    except TypeError:
        where = Path("?")
    return f"fixture {fixturedef.argname!r} ({fixturedef.scope} scope, {where})"


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    _owners.append(_fixture_name(fixturedef))
    try:
        return (yield)
    finally:
        _owners.pop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    _owners.append(f"test {item.nodeid}")
    try:
        return (yield)
    finally:
        _owners.pop()


def _running(starter: ServiceStarter) -> list[ServiceProcess]:
    return [service for service in starter.started if service.process.running]


@pytest.fixture(scope="module", autouse=True)
def _services_end_with_their_module(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the session when a service process started by a ServiceStarter is still running at the end
    of the module (after the module's own fixtures were torn down), and stops it. Autouse and module
    scope: set up before the module's other module-scoped fixtures, so torn down after them."""
    yield
    leftovers = [(starter, service) for starter in _starters for service in _running(starter)]
    # Every starter made so far belonged to this module or outlived it (its services are stopped below).
    _starters.clear()
    if not leftovers:
        return
    for _, service in leftovers:
        service.stop()
    named = "; ".join(
        f"{service.name} (pid file {service.process.pid_file}) started by {starter.owner}"
        for starter, service in leftovers
    )
    pytest.fail(
        f"service processes outlived module {request.node.nodeid}: {named}. A service left running stays "
        "in its consumer groups and takes partitions from the same service started by later tests; start "
        "services in a module- or function-scoped fixture that stops them (ServiceStarter.stop_all) — they "
        "were stopped now",
        pytrace=False,
    )


class ServiceStarter:
    """Starts Lawtrail services on free ports against a stack, and stops them all at the end.

    The `start_service` fixture is one per test; a test module that wants a service for all its tests
    builds its own: `ServiceStarter(stack, tmp_path_factory.mktemp("svc"))` in a module-scoped fixture.
    Its services must not outlive the module, nor run beside the same service of another starter (module
    docstring: they would share consumer groups).
    """

    def __init__(self, stack: Stack, run_dir: Path) -> None:
        """Pid files and logs go to `run_dir`; so does the LAWTRAIL_DATA_DIR the services share."""
        self.stack = stack
        self.run_dir = run_dir
        self.data_dir = run_dir / "data"
        self.started: list[ServiceProcess] = []
        self._instances: Counter[str] = Counter()
        self._database_suffix = secrets.token_hex(4)
        # Named in the failures of the checks: the fixture (or test) that made this starter.
        self.owner = _owners[-1] if _owners else "code outside any fixture or test"
        _starters.append(self)

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
        self._refuse_beside_another_starter(spec.name)
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

    def _refuse_beside_another_starter(self, name: str) -> None:
        for other in _starters:
            if other is self:
                continue
            for service in _running(other):
                if service.spec.name == name:
                    pytest.fail(
                        f"{self.owner} starts {name} while {service.name}, started by {other.owner}, is "
                        "still running: both would join the same consumer groups and split their "
                        f"partitions. Stop that one first, or start this {name} from the same starter",
                        pytrace=False,
                    )

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
