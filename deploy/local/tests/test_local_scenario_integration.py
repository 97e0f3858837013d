"""The guided scenario of `make run`, against a real stack and a real case-svc on free ports."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.scenario import TOUR_OFFICER, TOUR_UNIT, tour
from lawtrail_local.scenario_access import access_tour
from lawtrail_local.tour_retention import retention_chapter

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


async def test_r13_tour_chapter_a_complaint_holds_the_recording_and_a_verified_copy_is_written(
    start_service: ServiceStarter, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (make setup installs it)")
    access = start_service("access-svc")  # first: media-svc trusts the grant key it creates
    case_svc = start_service("case-svc")
    media = start_service("media-svc")
    retention = start_service(
        "retention-svc",
        env={
            "LAWTRAIL_RETENTION_MEDIA_ADDRESS": media.grpc_address,
            "LAWTRAIL_RETENTION_ACCESS_ADDRESS": access.grpc_address,
            "LAWTRAIL_RETENTION_AUTO_COPY_INTERVAL_S": "0",
        },
    )
    key = case_svc.dev_private_key.read_bytes()
    case_id = await tour(start_service.stack.kafka_bootstrap, case_svc.grpc_address, key)
    path = await retention_chapter(
        case_address=case_svc.grpc_address,
        media_address=media.grpc_address,
        retention_address=retention.grpc_address,
        private_key_pem=key,
        case_id=case_id,
        unit=TOUR_UNIT,
        officer=TOUR_OFFICER,
        work_dir=tmp_path,
        access_address=access.grpc_address,
    )
    printed = capsys.readouterr().out
    assert "2.2 recorded a COMPLAINT incident" in printed
    assert "2.3 retention-svc holds the recording: RETENTION_STATE_PERMANENT" in printed
    assert "every SHA-256 matches" in printed
    assert "standing order r13-offline-copy, taken by retention-svc, approved by legal-demo" in printed
    assert path.endswith(".iso")


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (make setup installs it)")
def test_scenario_access_chapter_refuses_approves_downloads_and_verifies_the_ledger_offline(
    start_service: ServiceStarter, capsys: pytest.CaptureFixture[str]
) -> None:
    access = start_service("access-svc")
    media = start_service("media-svc", env={"LAWTRAIL_MEDIA_SCRUB_INTERVAL_S": "0"})
    event_id = access_tour(
        media.grpc_address,
        access.grpc_address,
        media.dev_private_key.read_bytes(),
        access.data_dir / "keys" / "access-grant-dev-public.pem",
    )
    printed = capsys.readouterr().out
    assert "download without a grant was refused" in printed
    assert "approving their own request was refused" in printed
    assert "head-demo approved it" in printed
    assert "SHA-256 matches" in printed
    assert f"lawtrail.media.v1.ContentAccessed {event_id}" in printed
