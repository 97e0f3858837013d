"""One case-svc process writes its FerretDB database (issue 9, ADR 0007): a second process of the same
service on the same database refuses to start with a message naming the holder; after the holder is
killed (SIGKILL) a new process takes the lease over at once and serves."""

from __future__ import annotations

import pytest
from lawtrail_local.errors import NotReadyError
from lawtrail_local.pytest_plugin import ServiceStarter

pytestmark = pytest.mark.integration


def test_a_second_case_svc_on_the_same_ferretdb_database_refuses_to_start(
    start_service: ServiceStarter,
) -> None:
    first = start_service("case-svc")
    with pytest.raises(NotReadyError) as refused:
        start_service("case-svc")  # same database (the starter's suffix), other ports
    message = str(refused.value)
    assert "refusing to start a second writer" in message
    assert f"process {first.process.pid}" in message
    assert first.process.running  # the holder keeps serving

    first.kill()  # a crash: the lease is still unexpired in the database
    again = start_service("case-svc")  # taken over at once: the holder's process is gone
    assert again.process.running
