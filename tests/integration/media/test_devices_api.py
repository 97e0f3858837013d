"""DeviceService end to end (R20, R21): the real media-svc process on the real Kafka + FerretDB, called
through the Python client SDK; events read back from `lawtrail.media.v1.events`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from aiokafka import AIOKafkaConsumer
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.common.v1 import common_pb2
from lawtrail.media.v1 import device_events_pb2
from lawtrail.media.v1 import device_service_pb2 as dev
from lawtrail_client import MediaClient
from lawtrail_client.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.services import ServiceProcess
from lawtrail_local.stack import Stack
from servicekit.auth.devtoken import ensure_dev_keys, generate_keypair, mint_token
from servicekit.messaging.envelope import decode
from servicekit.testing import empty_request, invoke

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
TOPIC = "lawtrail.media.v1.events"
DEVICE_SERVICE = dev.DESCRIPTOR.services_by_name["DeviceService"]


class Tokens:
    def __init__(self, private_pem: bytes) -> None:
        self.private_pem = private_pem

    def __call__(
        self, subject: str, unit: str, *roles: str, ttl_s: int = 600, scopes: tuple[str, ...] = ()
    ) -> str:
        return mint_token(
            self.private_pem, subject=subject, unit=unit, roles=roles, scopes=scopes, ttl_s=ttl_s
        )


@pytest.fixture(scope="module")
def media_svc(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, Tokens]]:
    starter = ServiceStarter(stack, tmp_path_factory.mktemp("media-devices"))
    private_path, _ = ensure_dev_keys(starter.data_dir)
    try:
        service = starter("media-svc", env={"LAWTRAIL_DEVICE_MIN_BATTERY_PERCENT": "50"})
        yield service, Tokens(private_path.read_bytes())
    finally:
        starter.stop_all()


@pytest.fixture
def head(media_svc: tuple[ServiceProcess, Tokens]) -> Iterator[MediaClient]:
    service, tokens = media_svc
    with MediaClient.connect(service.grpc_address, token=tokens("head-a", "unit-a", "UNIT_HEAD")) as client:
        yield client


def client_as(media_svc: tuple[ServiceProcess, Tokens], subject: str, unit: str, *roles: str) -> MediaClient:
    service, tokens = media_svc
    return MediaClient.connect(service.grpc_address, token=tokens(subject, unit, *roles), retries=0)


def number() -> str:
    return f"BC-{uuid.uuid4().hex[:10]}"


def register(client: MediaClient, n: str, unit: str = "unit-a") -> dev.Device:
    return client.devices.RegisterDevice(
        dev.RegisterDeviceRequest(device_number=n, unit=unit, model="DSJ-X1")
    ).device


def check(client: MediaClient, n: str, battery: int = 90, offset_s: float = 0.5) -> dev.PreUseCheck:
    offset = Duration()
    offset.FromTimedelta(timedelta(seconds=offset_s))
    return client.devices.RecordPreUseCheck(
        dev.RecordPreUseCheckRequest(
            device_number=n,
            battery_percent=battery,
            free_storage_bytes=16000 * MIB,
            clock_offset=offset,
            request_id=uuid.uuid4().hex,
        )
    ).check


def test_r21_fault_takes_device_out_of_service_until_repaired(head: MediaClient) -> None:
    n = number()
    device = register(head, n)
    assert device.status == dev.DEVICE_STATUS_IN_SERVICE
    assert device.registered.subject == "head-a"
    assert check(head, n).passed
    faulted = head.devices.ReportFault(dev.ReportFaultRequest(device_number=n, description="lens cracked"))
    assert faulted.device.status == dev.DEVICE_STATUS_OUT_OF_SERVICE
    with pytest.raises(FailedPrecondition, match=r"out of service since .*record its repair"):
        check(head, n)
    with pytest.raises(FailedPrecondition, match="already out of service"):
        head.devices.ReportFault(dev.ReportFaultRequest(device_number=n, description="also broken"))
    repaired = head.devices.RecordRepair(dev.RecordRepairRequest(device_number=n, note="lens replaced"))
    assert repaired.device.status == dev.DEVICE_STATUS_IN_SERVICE
    assert repaired.fault.repaired.subject == "head-a"
    assert check(head, n).passed
    got = head.devices.GetDevice(dev.GetDeviceRequest(device_number=n)).device
    assert [f.description for f in got.faults] == ["lens cracked"]
    assert got.faults[0].repair_note == "lens replaced", got


def test_r20_pre_use_check_verdict_uses_configured_thresholds(head: MediaClient) -> None:
    n = number()
    register(head, n)
    passing = check(head, n, battery=50)  # LAWTRAIL_DEVICE_MIN_BATTERY_PERCENT=50 for this service
    assert passing.passed
    failing = check(head, n, battery=49, offset_s=-7.25)
    assert not failing.passed
    assert list(failing.failures) == [
        "battery 49% is below the required 50%",
        "clock offset -7.250 s exceeds the allowed ±5 s",
    ]
    shift_start = failing.shift_start.ToDatetime(tzinfo=UTC)
    shift_end = failing.shift_end.ToDatetime(tzinfo=UTC)
    assert shift_end - shift_start == timedelta(hours=12)  # default 08:00/20:00 shifts
    assert shift_start <= failing.checked.at.ToDatetime(tzinfo=UTC) < shift_end
    since, until = Timestamp(), Timestamp()
    since.FromDatetime(datetime.now(UTC) - timedelta(hours=1))
    until.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
    listed = head.devices.ListPreUseChecks(
        dev.ListPreUseChecksRequest(device_number=n, since=since, until=until)
    )
    assert [c.check_id for c in listed.checks] == [passing.check_id, failing.check_id]


def test_r20_maintenance_log_and_idempotent_retries(head: MediaClient) -> None:
    n = number()
    register(head, n)
    assert register(head, n).device_number == n  # same registration again: the existing device
    with pytest.raises(AlreadyExists, match="already registered"):
        head.devices.RegisterDevice(dev.RegisterDeviceRequest(device_number=n, model="Other"))
    request = dev.RecordMaintenanceRequest(device_number=n, description="firmware 2.1", request_id="m-" + n)
    first = head.devices.RecordMaintenance(request).maintenance
    assert head.devices.RecordMaintenance(request).maintenance == first
    got = head.devices.GetDevice(dev.GetDeviceRequest(device_number=n)).device
    assert [m.maintenance_id for m in got.recent_maintenance] == ["m-" + n]


def test_r08_units_see_only_their_devices(
    media_svc: tuple[ServiceProcess, Tokens], head: MediaClient
) -> None:
    n = number()
    register(head, n)
    with client_as(media_svc, "officer-b", "unit-b", "OFFICER") as other:
        # R8: a record of another unit answers PERMISSION_DENIED in every service (docs/permissions.md)
        with pytest.raises(PermissionDenied, match="may not read devices of unit 'unit-a'"):
            other.devices.GetDevice(dev.GetDeviceRequest(device_number=n))
        with pytest.raises(PermissionDenied, match="own unit"):
            other.devices.ListDevices(dev.ListDevicesRequest(unit="unit-a"))
    with client_as(media_svc, "legal-1", "legal", "LEGAL_OFFICE") as legal:
        assert legal.devices.GetDevice(dev.GetDeviceRequest(device_number=n)).device.unit == "unit-a"


def test_roles_are_enforced(media_svc: tuple[ServiceProcess, Tokens]) -> None:
    with client_as(media_svc, "officer-a", "unit-a", "OFFICER") as officer, pytest.raises(PermissionDenied):
        register(officer, number())


def test_bad_input_and_bad_tokens_are_refused_with_actionable_messages(
    media_svc: tuple[ServiceProcess, Tokens], head: MediaClient
) -> None:
    n = number()
    register(head, n)
    with pytest.raises(InvalidArgument, match="battery_percent must be between 0 and 100"):
        check(head, n, battery=150)
    with pytest.raises(InvalidArgument, match="model is required"):
        head.devices.RegisterDevice(dev.RegisterDeviceRequest(device_number=number()))
    with pytest.raises(InvalidArgument, match="page_token"):
        head.devices.ListDevices(dev.ListDevicesRequest(page=common_pb2.PageRequest(page_token="garbage")))
    with pytest.raises(NotFound, match="register it first"):
        check(head, "BC-never-registered")
    service, tokens = media_svc
    forged = mint_token(generate_keypair()[0], subject="eve", unit="unit-a", roles=["UNIT_HEAD"])
    for token in ["", forged, tokens("head-a", "unit-a", "UNIT_HEAD", ttl_s=-60)]:
        with MediaClient.connect(service.grpc_address, token=token, retries=0) as client:
            with pytest.raises(Unauthenticated) as raised:
                client.devices.GetDevice(dev.GetDeviceRequest(device_number=n))
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert raised.value.message


def test_list_devices_pages_through_a_unit(media_svc: tuple[ServiceProcess, Tokens]) -> None:
    unit = f"unit-{uuid.uuid4().hex[:6]}"
    with client_as(media_svc, "head", unit, "UNIT_HEAD") as client:
        numbers = sorted(f"{unit}-{i:02d}" for i in range(7))
        for n in reversed(numbers):
            register(client, n, unit)
        seen: list[str] = []
        token = ""
        while True:
            page = client.devices.ListDevices(
                dev.ListDevicesRequest(page=common_pb2.PageRequest(page_size=3, page_token=token))
            )
            seen += [d.device_number for d in page.devices]
            token = page.page.next_page_token
            if not token:
                break
    assert seen == numbers


async def test_device_events_reach_the_topic_keyed_by_device_number(stack: Stack, head: MediaClient) -> None:
    n = number()
    await asyncio.to_thread(register, head, n)
    await asyncio.to_thread(check, head, n)
    await asyncio.to_thread(
        head.devices.ReportFault, dev.ReportFaultRequest(device_number=n, description="does not power on")
    )
    await asyncio.to_thread(
        head.devices.RecordRepair, dev.RecordRepairRequest(device_number=n, note="new battery")
    )
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=stack.kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    seen: list[str] = []
    try:
        async with asyncio.timeout(30):
            while len(seen) < 4:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for record in records:
                        if record.key != n.encode():
                            continue
                        envelope = decode(record)
                        assert envelope.subject == n
                        seen.append(envelope.type.rsplit(".", 1)[1])
                        if seen[-1] == "DeviceFaultReported":
                            fault = envelope.parse(device_events_pb2.DeviceFaultReported)
                            assert (fault.unit, fault.description) == ("unit-a", "does not power on")
    finally:
        await consumer.stop()
    assert seen == ["DeviceRegistered", "DeviceChecked", "DeviceFaultReported", "DeviceReturnedToService"]


@pytest.mark.parametrize("method", list(DEVICE_SERVICE.methods), ids=lambda m: m.name)
def test_every_device_rpc_refuses_missing_expired_forged_and_underprivileged_tokens(
    media_svc: tuple[ServiceProcess, Tokens], method: MethodDescriptor
) -> None:
    service, tokens = media_svc
    forged = mint_token(generate_keypair()[0], subject="eve", unit="unit-a", roles=["UNIT_HEAD"])
    cases = {
        "missing": ("", grpc.StatusCode.UNAUTHENTICATED),
        "expired": (tokens("head-a", "unit-a", "UNIT_HEAD", ttl_s=-60), grpc.StatusCode.UNAUTHENTICATED),
        "forged": (forged, grpc.StatusCode.UNAUTHENTICATED),
        # ARCHIVE_ROOM has no business with devices: no RPC of DeviceService admits it
        "under-privileged": (
            tokens("archive-1", "unit-a", "ARCHIVE_ROOM"),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
    }
    with grpc.insecure_channel(service.grpc_address) as channel:
        for what, (token, expected) in cases.items():
            metadata = [("authorization", f"Bearer {token}")] if token else []
            with pytest.raises(grpc.RpcError) as raised:
                invoke(channel, method, empty_request(method), metadata=metadata)
            assert raised.value.code() == expected, f"{method.name} with a {what} token"
            assert raised.value.details(), f"{method.name} with a {what} token: no message"
