"""The plugin's guard against services that share consumer groups across fixtures (pytest_plugin module
docstring): a service outliving its module fails the session naming the service and the fixture, and is
stopped; a second starter's service beside a running one of the same name is refused. Each case is a real
pytest session in a subprocess starting real processes of the launcher's health-only fake service (the
guard is about processes, not Kafka: the sessions' `stack` is a Stack object that is never started)."""

from __future__ import annotations

import pytest
from lawtrail_local.services import ServiceSpec

pytest_plugins = ["pytester"]

CONFTEST = """
import pytest
from lawtrail_local.ports import free_ports
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.services import ServiceSpec
from lawtrail_local.stack import Stack

FAKE = ServiceSpec("fake-svc", "lawtrail_fake_svc", grpc_port=1, metrics_port=2)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    return Stack(tmp_path_factory.mktemp("stack"), *free_ports(3))


@pytest.fixture(scope="session")
def leaky(stack, tmp_path_factory):
    starter = ServiceStarter(stack, tmp_path_factory.mktemp("leaky"))
    starter(FAKE)
    yield starter
    starter.stop_all()


@pytest.fixture(scope="module")
def per_module(stack, tmp_path_factory):
    starter = ServiceStarter(stack, tmp_path_factory.mktemp("per-module"))
    starter(FAKE)
    yield starter
    starter.stop_all()
"""


@pytest.fixture
def session(pytester: pytest.Pytester, fake_spec: ServiceSpec) -> pytest.Pytester:
    """A pytest session with the plugin and the fixtures above (`fake_spec` puts the fake service on the
    PYTHONPATH the subprocess and its services inherit)."""
    pytester.makeconftest('pytest_plugins = ["lawtrail_local.pytest_plugin"]\n' + CONFTEST)
    return pytester


def test_a_session_scoped_service_fails_the_session_at_its_first_module_end_and_is_stopped(
    session: pytest.Pytester,
) -> None:
    session.makepyfile(
        test_a="def test_uses_it(leaky):\n    assert leaky.started[0].process.running\n",
        test_b=(
            "def test_later_module_runs_clean(stack, start_service):\n"
            "    from conftest import FAKE\n"
            "    assert start_service(FAKE).process.running\n"
        ),
    )
    result = session.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*service processes outlived module test_a.py: fake-svc (pid file *) started by fixture 'leaky' "
            "(session scope, *conftest.py)*",
        ]
    )
    # stopped by the guard: the later module's start was not refused beside it
    assert "still running" not in result.stdout.str()


def test_a_service_of_another_starter_beside_a_running_one_is_refused_naming_both(
    session: pytest.Pytester,
) -> None:
    session.makepyfile(
        test_c=(
            "def test_second_one(per_module, start_service):\n"
            "    from conftest import FAKE\n"
            "    start_service(FAKE)\n"
        )
    )
    result = session.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*fixture 'start_service' (function scope, *) starts fake-svc while fake-svc, started by "
            "fixture 'per_module' (module scope, *conftest.py), is still running*",
        ]
    )


def test_module_scoped_services_stopped_by_their_fixture_pass(session: pytest.Pytester) -> None:
    session.makepyfile(
        test_d="def test_one(per_module):\n    assert per_module.started[0].process.running\n",
        test_e="def test_two(per_module):\n    assert per_module.started[0].process.running\n",
    )
    result = session.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
