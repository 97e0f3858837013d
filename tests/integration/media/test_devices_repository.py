"""Devices (R20, R21) on the real FerretDB and Kafka: the Mongo repository, its indexes and the embedded
outbox relayed to `lawtrail.media.v1.events` (what the recordings ingest reads: `get` + `checks_for`)."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lawtrail_local.stack import Stack
from media_svc.adapters.access_grants import Ed25519GrantVerifier
from media_svc.adapters.case_projection import MongoCaseProjection
from media_svc.adapters.content_store import LocalContentStore
from media_svc.adapters.device_repository import MongoDeviceRepository
from media_svc.adapters.ffprobe import FfprobeProber
from media_svc.adapters.recording_repository import (
    MongoAccessLog,
    MongoRecordingRepository,
    MongoScrubRunRepository,
    MongoSeriesRepository,
)
from media_svc.bootstrap import DeviceSettings, MediaPorts, build_handlers
from media_svc.domain.commands import (
    RecordMaintenance,
    RecordPreUseCheck,
    RecordRepair,
    RegisterDevice,
    ReportFault,
)
from media_svc.domain.devices import (
    MIB,
    DeviceStatus,
    device_findings_for_recording,
)
from media_svc.service_layer.handlers import MediaHandlers
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from servicekit.errors import ConcurrencyConflict
from servicekit.mongo import ensure_indexes, serialized
from servicekit.policy import Actor

pytestmark = pytest.mark.integration

TOPIC = "lawtrail.media.v1.events"
SOURCE = "/lawtrail/media-svc-it"
HEAD = Actor("head-a", "unit-a", frozenset({"UNIT_HEAD"}))


@pytest.fixture
async def db(stack: Stack) -> AsyncIterator[AsyncDatabase[dict]]:  # type: ignore[type-arg]
    client: AsyncMongoClient[dict] = AsyncMongoClient(stack.mongo_uri, tz_aware=True)  # type: ignore[type-arg]
    database = client[f"media_devices_{uuid.uuid4().hex[:8]}"]
    await ensure_indexes(database, MongoDeviceRepository.indexes())
    try:
        yield database
    finally:
        await client.close()


def handlers(repo: MongoDeviceRepository) -> MediaHandlers:
    """media-svc's handlers through its composition root, on the real MongoDB (the device part is used)."""
    db = repo.device_collection.database
    ports = MediaPorts(
        recordings=MongoRecordingRepository(db, event_source=SOURCE),
        series=MongoSeriesRepository(db, event_source=SOURCE),
        devices=repo,
        access_log=MongoAccessLog(db, event_source=SOURCE),
        scrub_runs=MongoScrubRunRepository(db),
        store=LocalContentStore(Path(tempfile.mkdtemp(prefix="media-devices-it-"))),
        prober=FfprobeProber(),
        verifier=Ed25519GrantVerifier([]),
        cases=MongoCaseProjection(db),
    )
    settings = DeviceSettings(
        min_battery_percent=60,
        min_free_storage_mib=1024,
        max_clock_offset_s=5,
        shift_starts="08:00,20:00",
        shift_timezone="Asia/Shanghai",
    )
    return build_handlers(ports, device_settings=settings)


def number() -> str:
    return f"BC-{uuid.uuid4().hex[:8]}"


async def test_r21_device_lifecycle_round_trips_through_mongo(db: AsyncDatabase[dict]) -> None:  # type: ignore[type-arg]
    repo = MongoDeviceRepository(db, event_source=SOURCE)
    h = handlers(repo)
    n = number()
    await h.register_device(RegisterDevice(n, "unit-a", "DSJ-X1"), HEAD)
    check = await h.record_pre_use_check(RecordPreUseCheck(n, 30, 8000 * MIB, 1.5, "chk-" + n), HEAD)
    assert not check.passed
    await h.record_maintenance(RecordMaintenance(n, "cleaned lens"), HEAD)
    _, fault = await h.report_fault(ReportFault(n, "lens cracked"), HEAD)
    device = await repo.get(n)
    assert device is not None
    assert device.status is DeviceStatus.OUT_OF_SERVICE
    assert device.faults == [fault]
    assert device.version == 4  # registered, checked, maintained, faulted: one write each
    await h.record_repair(RecordRepair(n, "lens replaced"), HEAD)
    device = await repo.get(n)
    assert device is not None
    assert device.status is DeviceStatus.IN_SERVICE
    assert device.faults[0].repair_note == "lens replaced"
    assert await repo.get_check("chk-" + n) == check
    assert [m.description for m in await repo.maintenance_of(n, 5)] == ["cleaned lens"]
    assert await repo.get("BC-unknown-" + n) is None


async def test_r20_checks_for_finds_the_checks_whose_shift_overlaps(db: AsyncDatabase[dict]) -> None:  # type: ignore[type-arg]
    repo = MongoDeviceRepository(db, event_source=SOURCE)
    h = handlers(repo)
    n = number()
    await h.register_device(RegisterDevice(n, "unit-a", "DSJ-X1"), HEAD)
    check = await h.record_pre_use_check(RecordPreUseCheck(n, 90, 8000 * MIB, 0.0), HEAD)
    start = check.checked_at + timedelta(minutes=1)
    end = start + timedelta(minutes=10)
    found = await repo.checks_for(n, start, end)
    assert found == [check]
    device = await repo.get(n)
    if start < check.shift_end:
        assert device_findings_for_recording(device, found, start, end) == []
    # a recording in a later shift finds no check
    later = check.shift_end + timedelta(hours=1)
    assert await repo.checks_for(n, later, later + timedelta(minutes=5)) == []
    assert [f.split(":")[0] for f in device_findings_for_recording(device, [], later, later)] == [
        "R20_NO_PASSING_PRE_USE_CHECK"
    ]


async def test_concurrent_changes_to_one_device_conflict(db: AsyncDatabase[dict]) -> None:  # type: ignore[type-arg]
    repo = MongoDeviceRepository(db, event_source=SOURCE)
    n = number()
    await handlers(repo).register_device(RegisterDevice(n, "unit-a", "DSJ-X1"), HEAD)
    first, second = await repo.get(n), await repo.get(n)
    assert first is not None
    assert second is not None
    at = datetime.now(UTC)
    first.report_fault(fault_id="f1", description="broken", by="a", at=at)
    await repo.save(first, first.events)
    second.report_fault(fault_id="f2", description="also broken", by="b", at=at)
    with pytest.raises(ConcurrencyConflict, match="changed by someone else"):
        await repo.save(second, second.events)


async def test_list_by_unit_pages_in_device_number_order(db: AsyncDatabase[dict]) -> None:  # type: ignore[type-arg]
    repo = MongoDeviceRepository(db, event_source=SOURCE)
    h = handlers(repo)
    unit = f"unit-{uuid.uuid4().hex[:6]}"
    actor = Actor("head", unit, frozenset({"UNIT_HEAD"}))
    for n in ["D-3", "D-1", "D-2", "D-5", "D-4"]:
        await h.register_device(RegisterDevice(f"{unit}-{n}", unit, "M"), actor)
    seen: list[str] = []
    after = None
    while True:
        page = await h.list_devices(unit, 2, after, actor)
        seen += [d.device_number for d in page.devices]
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == [f"{unit}-D-{i}" for i in range(1, 6)]


async def test_r20_history_copy_lost_in_a_crash_is_still_found_and_healed(db: AsyncDatabase[dict]) -> None:  # type: ignore[type-arg]
    repo = MongoDeviceRepository(db, event_source=SOURCE)
    h = handlers(repo)
    n = number()
    await h.register_device(RegisterDevice(n, "unit-a", "DSJ-X1"), HEAD)
    check = await h.record_pre_use_check(RecordPreUseCheck(n, 90, 8000 * MIB, 0.0), HEAD)
    # a crash right after the device write, before the history copy
    await db["device_checks"].delete_one({"_id": check.check_id})
    assert await repo.checks_for(n, check.checked_at, check.checked_at) == [check]
    await h.record_maintenance(RecordMaintenance(n, "cleaned"), HEAD)  # the next write of the device heals it
    assert await repo.get_check(check.check_id) == check


async def test_concurrent_commands_on_one_device_lose_nothing(db: AsyncDatabase[dict]) -> None:  # type: ignore[type-arg]
    """Concurrent commands on one device: every command that reports success is stored (the others report
    a conflict after their retries), and the version counts exactly the stored changes."""
    repo = MongoDeviceRepository(db, event_source=SOURCE)
    h = handlers(repo)
    n = number()
    await h.register_device(RegisterDevice(n, "unit-a", "DSJ-X1"), HEAD)

    async def one_check(i: int) -> str | None:
        try:
            return (
                await h.record_pre_use_check(RecordPreUseCheck(n, 90, 8000 * MIB, 0.0, f"c{i}-{n}"), HEAD)
            ).check_id
        except ConcurrencyConflict:
            return None

    results = await asyncio.gather(*(one_check(i) for i in range(12)))
    succeeded = {r for r in results if r}
    device = await repo.get(n)
    assert device is not None
    assert {c.check_id for c in device.recent_checks} == succeeded
    assert device.version == 1 + len(succeeded)
    assert len(succeeded) >= 3


async def test_serialized_writes_keep_concurrent_updates_of_one_document(db: AsyncDatabase[dict]) -> None:  # type: ignore[type-arg]
    """FerretDB v1.24.2 loses concurrent updates of one document (read, change, write back, no
    transaction): through servicekit's `serialized` collection (per-document locks) none is lost."""
    collection = serialized(db[f"serialized_{uuid.uuid4().hex[:6]}"])
    await collection.insert_one({"_id": 1, "a": 0, "b": 0})

    async def increment(field: str, times: int) -> None:
        for _ in range(times):
            await collection.update_one({"_id": 1}, {"$inc": {field: 1}})

    await asyncio.gather(increment("a", 150), increment("b", 150), increment("a", 150))
    assert await collection.find_one({"_id": 1}) == {"_id": 1, "a": 300, "b": 150}
