"""The guided scenario of `make run`, against a real stack and a real case-svc on free ports."""

from __future__ import annotations

import pytest
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.scenario import tour

pytestmark = pytest.mark.integration


async def test_scenario_opens_a_case_and_reads_its_event_back(
    start_service: ServiceStarter, capsys: pytest.CaptureFixture[str]
) -> None:
    case_svc = start_service("case-svc")
    key = case_svc.dev_private_key.read_bytes()
    case_id = await tour(start_service.stack.kafka_bootstrap, case_svc.grpc_address, key)
    printed = capsys.readouterr().out
    assert f"opened case {case_id}" in printed
    assert f"key={case_id}  ce_type=lawtrail.case.v1.CaseOpened" in printed
    assert "cause='Fire-safety inspection of a civil air-defence basement'" in printed
