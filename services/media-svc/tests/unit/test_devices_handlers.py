"""Device use cases (R20, R21) on an in-memory repository that honours the same contract as Mongo's."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta

import pytest
from media_fakes import InMemoryDeviceRepository, fake_ports
from media_svc.bootstrap import DeviceSettings, build_handlers
from media_svc.domain.commands import (
    RecordMaintenance,
    RecordPreUseCheck,
    RecordRepair,
    RegisterDevice,
    ReportFault,
)
from media_svc.domain.devices import (
    MIB,
    Device,
    DeviceStatus,
    ShiftSchedule,
    device_findings_for_recording,
)
from media_svc.domain.errors import DeviceAlreadyRegistered
from media_svc.domain.events import (
    DeviceChecked,
    DeviceFaultReported,
    DeviceRegistered,
    DeviceReturnedToService,
)
from media_svc.service_layer.handlers import MediaHandlers
from servicekit.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from servicekit.policy import Actor


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


HEAD = Actor("head-a", "unit-a", frozenset({"UNIT_HEAD"}))
OFFICER = Actor("officer-a", "unit-a", frozenset({"OFFICER"}))
OTHER_UNIT = Actor("officer-b", "unit-b", frozenset({"OFFICER"}))
OTHER_HEAD = Actor("head-b", "unit-b", frozenset({"UNIT_HEAD"}))
LEGAL = Actor("legal-1", "legal", frozenset({"LEGAL_OFFICE"}))


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 5, 2, 0, 5, tzinfo=UTC))  # 08:05 in Shanghai, day shift


@pytest.fixture
def repo() -> InMemoryDeviceRepository:
    return InMemoryDeviceRepository()


@pytest.fixture
def handlers(repo: InMemoryDeviceRepository, clock: Clock) -> MediaHandlers:
    counter = itertools.count(1)
    settings = DeviceSettings(
        min_battery_percent=60,
        min_free_storage_mib=1024,
        max_clock_offset_s=5,
        shift_starts="08:00,20:00",
        shift_timezone="Asia/Shanghai",
    )
    return build_handlers(
        fake_ports(devices=repo), device_settings=settings, clock=clock, ids=lambda: f"id-{next(counter)}"
    )


async def register(handlers: MediaHandlers, number: str = "BC-1") -> Device:
    return await handlers.register_device(RegisterDevice(number, "unit-a", "DSJ-X1"), HEAD)


def good_check(number: str = "BC-1", request_id: str = "") -> RecordPreUseCheck:
    return RecordPreUseCheck(number, 95, 8000 * MIB, 0.2, request_id)


async def test_r20_register_then_get(handlers: MediaHandlers, repo: InMemoryDeviceRepository) -> None:
    await register(handlers)
    device = await handlers.get_device("BC-1", OFFICER)
    assert (device.unit, device.model, device.status) == ("unit-a", "DSJ-X1", DeviceStatus.IN_SERVICE)
    assert [type(e) for e in repo.published] == [DeviceRegistered]


async def test_r20_register_repeated_identically_is_idempotent(
    handlers: MediaHandlers, repo: InMemoryDeviceRepository
) -> None:
    first = await register(handlers)
    again = await register(handlers)
    assert again.registered_at == first.registered_at
    assert len(repo.published) == 1


async def test_r20_register_same_number_differently_is_refused(handlers: MediaHandlers) -> None:
    await register(handlers)
    with pytest.raises(DeviceAlreadyRegistered, match="already registered"):
        await handlers.register_device(RegisterDevice("BC-1", "unit-a", "Other"), HEAD)


async def test_r08_register_for_another_unit_is_refused(handlers: MediaHandlers) -> None:
    with pytest.raises(PermissionDenied, match="may not register devices of unit 'unit-b'"):
        await handlers.register_device(RegisterDevice("BC-1", "unit-b", "DSJ"), HEAD)


async def test_r20_pre_use_check_recorded_with_verdict_and_event(
    handlers: MediaHandlers, repo: InMemoryDeviceRepository, clock: Clock
) -> None:
    await register(handlers)
    check = await handlers.record_pre_use_check(good_check(), OFFICER)
    assert check.passed
    assert check.checked_by == "officer-a"
    assert check.checked_at == clock.now
    assert repo.published[-1] == DeviceChecked(check)
    stored = await repo.get("BC-1")
    assert stored is not None
    assert stored.recent_checks == [check]


async def test_r20_retried_pre_use_check_records_once(
    handlers: MediaHandlers, repo: InMemoryDeviceRepository
) -> None:
    await register(handlers)
    first = await handlers.record_pre_use_check(good_check(request_id="req-1"), OFFICER)
    again = await handlers.record_pre_use_check(good_check(request_id="req-1"), OFFICER)
    assert again == first
    assert first.check_id == "req-1"
    assert len(repo.checks) == 1


async def test_request_id_reused_for_another_device_is_refused(handlers: MediaHandlers) -> None:
    await register(handlers)
    await register(handlers, "BC-2")
    await handlers.record_pre_use_check(good_check(request_id="req-1"), OFFICER)
    with pytest.raises(AlreadyExists, match="already used for device BC-1"):
        await handlers.record_pre_use_check(good_check("BC-2", request_id="req-1"), OFFICER)


async def test_malformed_request_id_is_refused(handlers: MediaHandlers) -> None:
    await register(handlers)
    with pytest.raises(InvalidArgument, match="request_id must be"):
        await handlers.record_pre_use_check(good_check(request_id="has spaces"), OFFICER)


async def test_r08_other_unit_cannot_see_or_check_a_device(handlers: MediaHandlers) -> None:
    await register(handlers)
    # R8: a record of another unit answers PERMISSION_DENIED in every service (docs/permissions.md)
    with pytest.raises(PermissionDenied, match="may not read devices of unit 'unit-a'"):
        await handlers.get_device("BC-1", OTHER_UNIT)
    with pytest.raises(PermissionDenied, match="may not record a pre-use check of a device of unit 'unit-a'"):
        await handlers.record_pre_use_check(good_check(), OTHER_UNIT)


async def test_r08_legal_office_reads_every_unit_but_does_not_write(handlers: MediaHandlers) -> None:
    await register(handlers)
    assert (await handlers.get_device("BC-1", LEGAL)).unit == "unit-a"
    page = await handlers.list_devices("unit-a", 0, None, LEGAL)
    assert [d.device_number for d in page.devices] == ["BC-1"]
    with pytest.raises(
        PermissionDenied, match=r"to report a fault of a device you need to be .* of unit 'unit-a'"
    ):
        await handlers.report_fault(ReportFault("BC-1", "broken"), LEGAL)


async def test_unknown_device_is_not_found(handlers: MediaHandlers) -> None:
    with pytest.raises(NotFound, match="register it first"):
        await handlers.record_pre_use_check(good_check("BC-404"), OFFICER)
    with pytest.raises(InvalidArgument, match="device number is required"):
        await handlers.get_device(" ", OFFICER)


async def test_r21_fault_then_repair_lifecycle(
    handlers: MediaHandlers, repo: InMemoryDeviceRepository, clock: Clock
) -> None:
    await register(handlers)
    device, fault = await handlers.report_fault(ReportFault("BC-1", "no audio", "f-1"), OFFICER)
    assert device.status is DeviceStatus.OUT_OF_SERVICE
    assert fault.fault_id == "f-1"
    assert (await handlers.get_device("BC-1", OFFICER)).status is DeviceStatus.OUT_OF_SERVICE
    # R21: cannot be checked out while out of service
    with pytest.raises(FailedPrecondition, match="out of service"):
        await handlers.record_pre_use_check(good_check(), OFFICER)
    # retrying the same report changes nothing
    await handlers.report_fault(ReportFault("BC-1", "no audio", "f-1"), OFFICER)
    clock.now += timedelta(hours=3)
    device, repaired = await handlers.record_repair(RecordRepair("BC-1", "replaced microphone"), HEAD)
    assert device.status is DeviceStatus.IN_SERVICE
    assert repaired.repaired_at == clock.now
    assert [type(e) for e in repo.published] == [
        DeviceRegistered,
        DeviceFaultReported,
        DeviceReturnedToService,
    ]
    assert (await handlers.record_pre_use_check(good_check(), OFFICER)).passed


async def test_r20_maintenance_log_newest_first(handlers: MediaHandlers, clock: Clock) -> None:
    await register(handlers)
    await handlers.record_maintenance(RecordMaintenance("BC-1", "cleaned lens"), HEAD)
    clock.now += timedelta(days=30)
    await handlers.record_maintenance(RecordMaintenance("BC-1", "firmware 2.1", "m-2"), HEAD)
    again = await handlers.record_maintenance(RecordMaintenance("BC-1", "firmware 2.1", "m-2"), HEAD)
    assert again.maintenance_id == "m-2"
    log = await handlers.recent_maintenance("BC-1", OFFICER)
    assert [m.description for m in log] == ["firmware 2.1", "cleaned lens"]


async def test_list_devices_pages_by_device_number(handlers: MediaHandlers) -> None:
    for n in ["BC-3", "BC-1", "BC-5", "BC-2", "BC-4"]:
        await register(handlers, n)
    await handlers.register_device(RegisterDevice("BB-9", "unit-b", "X"), OTHER_HEAD)
    seen: list[str] = []
    after = None
    while True:
        page = await handlers.list_devices("", 2, after, OFFICER)
        seen += [d.device_number for d in page.devices]
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == ["BC-1", "BC-2", "BC-3", "BC-4", "BC-5"]


async def test_list_devices_validates_page_size_and_unit(handlers: MediaHandlers) -> None:
    with pytest.raises(InvalidArgument, match="page_size"):
        await handlers.list_devices("", 501, None, OFFICER)
    with pytest.raises(PermissionDenied, match="own unit's devices"):
        await handlers.list_devices("unit-b", 0, None, OFFICER)


async def test_r20_checks_for_feed_recording_findings(
    handlers: MediaHandlers, repo: InMemoryDeviceRepository, clock: Clock
) -> None:
    """The path the recordings ingest takes: repository.get + checks_for → findings."""
    await register(handlers)
    await handlers.record_pre_use_check(good_check(), OFFICER)
    start, end = clock.now + timedelta(minutes=30), clock.now + timedelta(minutes=50)
    device = await repo.get("BC-1")
    checks = await repo.checks_for("BC-1", start, end)
    assert device_findings_for_recording(device, checks, start, end) == []
    # next morning: yesterday's check does not cover it
    start, end = start + timedelta(days=1), end + timedelta(days=1)
    findings = device_findings_for_recording(device, await repo.checks_for("BC-1", start, end), start, end)
    assert [f.split(":")[0] for f in findings] == ["R20_NO_PASSING_PRE_USE_CHECK"]


async def test_list_checks_validates_range(handlers: MediaHandlers, clock: Clock) -> None:
    await register(handlers)
    await handlers.record_pre_use_check(good_check(), OFFICER)
    found = await handlers.list_pre_use_checks("BC-1", clock.now - timedelta(days=1), clock.now, OFFICER)
    assert len(found) == 1
    with pytest.raises(InvalidArgument, match="before since"):
        await handlers.list_pre_use_checks("BC-1", clock.now, clock.now - timedelta(seconds=1), OFFICER)
    with pytest.raises(InvalidArgument, match="at most 31 days"):
        await handlers.list_pre_use_checks("BC-1", clock.now - timedelta(days=40), clock.now, OFFICER)


def test_shift_default_is_two_twelve_hour_shifts() -> None:
    assert ShiftSchedule().starts == (time(8), time(20))


async def test_concurrent_change_is_retried_on_the_reloaded_device(
    handlers: MediaHandlers, repo: InMemoryDeviceRepository
) -> None:
    await register(handlers)
    real_get = repo.get
    raced = False

    async def get_then_someone_else_writes(number: str) -> Device | None:
        nonlocal raced
        device = await real_get(number)
        if not raced:
            raced = True
            other = await real_get(number)
            assert other is not None
            other.record_maintenance(
                maintenance_id="m-x", description="other", by="x", at=other.registered_at
            )
            await repo.save(other, other.events)
        return device

    repo.get = get_then_someone_else_writes  # type: ignore[method-assign]
    check = await handlers.record_pre_use_check(good_check(), OFFICER)
    device = await real_get("BC-1")
    assert device is not None
    assert device.recent_check(check.check_id) == check
    assert [m.maintenance_id for m in device.recent_maintenance] == ["m-x"]


async def test_recent_checks_are_bounded(
    handlers: MediaHandlers, repo: InMemoryDeviceRepository, clock: Clock
) -> None:
    await register(handlers)
    for _ in range(70):
        clock.now += timedelta(minutes=1)
        await handlers.record_pre_use_check(good_check(), OFFICER)
    device = await repo.get("BC-1")
    assert device is not None
    assert len(device.recent_checks) == 64
    assert len(repo.checks) == 70  # the history keeps all of them
