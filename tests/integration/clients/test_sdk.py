"""The Python client SDK against the real case-svc and media-svc processes (real Kafka + FerretDB):
bearer token, typed results, typed errors, and a call that rides out a restart of the service."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from lawtrail.case.v1 import case_pb2
from lawtrail.case.v1 import case_service_pb2 as cases
from lawtrail.media.v1 import device_service_pb2 as dev
from lawtrail_client import CaseClient, MediaClient
from lawtrail_client.errors import NotFound, PermissionDenied
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.services import ServiceProcess
from lawtrail_local.stack import Stack
from servicekit.auth.devtoken import ensure_dev_keys, mint_token

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def services(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, ServiceProcess, bytes]]:
    starter = ServiceStarter(stack, tmp_path_factory.mktemp("sdk"))
    private_path, _ = ensure_dev_keys(starter.data_dir)
    try:
        yield starter("case-svc"), starter("media-svc"), private_path.read_bytes()
    finally:
        starter.stop_all()


def token(key: bytes, *roles: str, unit: str = "unit-a") -> str:
    return mint_token(key, subject="alice", unit=unit, roles=roles)


def test_case_client_opens_and_reads_a_case(services: tuple[ServiceProcess, ServiceProcess, bytes]) -> None:
    case_svc, _, key = services
    with CaseClient.connect(case_svc.grpc_address, token=lambda: token(key, "OFFICER")) as client:
        opened = client.cases.OpenCase(
            cases.OpenCaseRequest(
                act_type=case_pb2.ACT_TYPE_INSPECTION,
                unit="unit-a",
                cause="fire exits blocked",
                responsible_officer="alice",
                parties=[case_pb2.Party(name="Shop 12", kind=case_pb2.PARTY_KIND_ORGANIZATION)],
                request_id=uuid.uuid4().hex,
            )
        ).case
        got = client.cases.GetCase(cases.GetCaseRequest(case_id=opened.case_id)).case
        assert got.cause == "fire exits blocked"
        with pytest.raises(NotFound):
            client.cases.GetCase(cases.GetCaseRequest(case_id=uuid.uuid4().hex))


def test_media_client_typed_errors(services: tuple[ServiceProcess, ServiceProcess, bytes]) -> None:
    _, media_svc, key = services
    with MediaClient.connect(media_svc.grpc_address, token=token(key, "OFFICER")) as media:
        with pytest.raises(PermissionDenied, match="UNIT_HEAD"):
            media.devices.RegisterDevice(dev.RegisterDeviceRequest(device_number="BC-SDK-1", model="X"))
        with pytest.raises(NotFound, match="register it first"):
            media.devices.GetDevice(dev.GetDeviceRequest(device_number="BC-SDK-missing"))


def test_unavailable_is_retried_across_a_service_restart(
    services: tuple[ServiceProcess, ServiceProcess, bytes],
) -> None:
    _, media_svc, key = services
    number = f"BC-SDK-{uuid.uuid4().hex[:8]}"
    with MediaClient.connect(media_svc.grpc_address, token=token(key, "UNIT_HEAD"), retries=8) as media:
        media.devices.RegisterDevice(dev.RegisterDeviceRequest(device_number=number, model="X"))
        media_svc.kill()
        restarted = threading.Thread(target=media_svc.restart)
        restarted.start()
        try:
            # the service is down: the channel retries UNAVAILABLE with backoff until it is back
            device = media.devices.GetDevice(dev.GetDeviceRequest(device_number=number), timeout=5).device
        finally:
            restarted.join()
    assert device.device_number == number
