"""MongoDB storage of devices, pre-use checks and maintenance entries (R20, R21).

Three collections, each change one single-document write carrying its events (embedded outbox):
- `devices`: one document per device (`_id` = device number) with its faults and repairs — they change
  its status and are rare, so they live on the aggregate; optimistic concurrency by `version`.
- `device_checks`: one document per pre-use check (`_id` = check id), append-only; queried by device and
  shift (`checks_for`, used by the recordings ingest to raise R20 findings).
- `device_maintenance`: one document per maintenance log entry (`_id` = entry id), append-only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from pymongo.asynchronous.database import AsyncDatabase
from servicekit.errors import AlreadyExists
from servicekit.mongo import IndexSpec, VersionedRepository

from media_svc.adapters.device_events import to_outbound
from media_svc.domain.devices import Device, DeviceEvent, Fault, MaintenanceRecord, PreUseCheck
from media_svc.service_layer.devices import DeviceAlreadyRegistered, DeviceRepository

DEVICES = "devices"
CHECKS = "device_checks"
MAINTENANCE = "device_maintenance"

Document = dict[str, Any]


class _Devices(VersionedRepository):
    what = "device"
    indexes: ClassVar[Sequence[IndexSpec]] = [IndexSpec([("unit", 1), ("_id", 1)], name="unit_number")]


class _Checks(VersionedRepository):
    what = "pre-use check"
    indexes: ClassVar[Sequence[IndexSpec]] = [
        IndexSpec([("device_number", 1), ("shift_start", 1)], name="device_shift")
    ]


class _Maintenance(VersionedRepository):
    what = "maintenance entry"
    indexes: ClassVar[Sequence[IndexSpec]] = [
        IndexSpec([("device_number", 1), ("performed_at", -1)], name="device_performed")
    ]


class MongoDeviceRepository(DeviceRepository):
    """Devices in MongoDB. `get` and `checks_for` are what the recordings ingest needs to call
    `media_svc.domain.devices.device_findings_for_recording`:

        device = await devices.get(number)
        checks = await devices.checks_for(number, recorded_from, recorded_to)
        findings = device_findings_for_recording(device, checks, recorded_from, recorded_to)
    """

    COLLECTIONS: ClassVar[tuple[str, ...]] = (DEVICES, CHECKS, MAINTENANCE)

    def __init__(
        self, db: AsyncDatabase[Document], *, event_source: str, notify: Callable[[], None] | None = None
    ) -> None:
        self._device_docs = db[DEVICES]
        self._check_docs = db[CHECKS]
        self._maintenance_docs = db[MAINTENANCE]
        self._devices = _Devices(db[DEVICES], event_source=event_source, notify=notify)
        self._checks = _Checks(db[CHECKS], event_source=event_source, notify=notify)
        self._maintenance = _Maintenance(db[MAINTENANCE], event_source=event_source, notify=notify)

    @staticmethod
    def indexes() -> Mapping[str, Sequence[IndexSpec]]:
        """Indexes to create at start (`Wiring(indexes=...)`), outbox index included."""
        return {
            DEVICES: _Devices.all_indexes(),
            CHECKS: _Checks.all_indexes(),
            MAINTENANCE: _Maintenance.all_indexes(),
        }

    # --- devices --------------------------------------------------------------------------------

    async def get(self, device_number: str) -> Device | None:
        doc = await self._devices.get(device_number)
        return None if doc is None else _device_from(doc)

    async def add(self, device: Device, events: Sequence[DeviceEvent]) -> None:
        try:
            await self._devices.insert(
                {"_id": device.device_number, **_device_fields(device)}, events=to_outbound(events)
            )
        except AlreadyExists:
            raise DeviceAlreadyRegistered(
                f"device {device.device_number} is already registered; device numbers are unique"
            ) from None
        device.version = 1

    async def save(self, device: Device, events: Sequence[DeviceEvent]) -> None:
        device.version = await self._devices.update(
            device.device_number,
            expected_version=device.version,
            set_fields=_device_fields(device),
            events=to_outbound(events),
        )

    async def list_by_unit(self, unit: str, after: str | None, limit: int) -> list[Device]:
        query: Document = {"unit": unit}
        if after:
            query["_id"] = {"$gt": after}
        cursor = self._device_docs.find(query, projection={"outbox": False}).sort([("unit", 1), ("_id", 1)])
        return [_device_from(doc) async for doc in cursor.limit(limit)]

    # --- pre-use checks -------------------------------------------------------------------------

    async def add_check(self, check: PreUseCheck, events: Sequence[DeviceEvent]) -> None:
        await self._checks.insert({"_id": check.check_id, **_check_fields(check)}, events=to_outbound(events))

    async def get_check(self, check_id: str) -> PreUseCheck | None:
        doc = await self._checks.get(check_id)
        return None if doc is None else _check_from(doc)

    async def checks_for(self, device_number: str, since: datetime, until: datetime) -> list[PreUseCheck]:
        """Pre-use checks of the device whose shift overlaps [since, until], oldest first."""
        cursor = self._check_docs.find(
            {"device_number": device_number, "shift_start": {"$lte": until}, "shift_end": {"$gt": since}},
            projection={"outbox": False},
        ).sort([("device_number", 1), ("shift_start", 1)])
        checks = [_check_from(doc) async for doc in cursor]
        return sorted(checks, key=lambda c: c.checked_at)

    # --- maintenance ----------------------------------------------------------------------------

    async def add_maintenance(self, record: MaintenanceRecord, events: Sequence[DeviceEvent]) -> None:
        await self._maintenance.insert(
            {"_id": record.maintenance_id, **_maintenance_fields(record)}, events=to_outbound(events)
        )

    async def get_maintenance(self, maintenance_id: str) -> MaintenanceRecord | None:
        doc = await self._maintenance.get(maintenance_id)
        return None if doc is None else _maintenance_from(doc)

    async def maintenance_of(self, device_number: str, limit: int) -> list[MaintenanceRecord]:
        cursor = self._maintenance_docs.find(
            {"device_number": device_number}, projection={"outbox": False}
        ).sort([("device_number", 1), ("performed_at", -1)])
        return [_maintenance_from(doc) async for doc in cursor.limit(limit)]


# --- documents ↔ domain -------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    """MongoDB keeps UTC milliseconds; a client without tz_aware hands back naive datetimes."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _opt_utc(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _device_fields(device: Device) -> Document:
    return {
        "device_number": device.device_number,
        "unit": device.unit,
        "model": device.model,
        "registered_by": device.registered_by,
        "registered_at": device.registered_at,
        "status": device.status.value,
        "faults": [
            {
                "fault_id": f.fault_id,
                "description": f.description,
                "reported_by": f.reported_by,
                "reported_at": f.reported_at,
                "repaired_by": f.repaired_by,
                "repaired_at": f.repaired_at,
                "repair_note": f.repair_note,
                "repair_request_id": f.repair_request_id,
            }
            for f in device.faults
        ],
    }


def _device_from(doc: Document) -> Device:
    return Device(
        device_number=doc["_id"],
        unit=doc["unit"],
        model=doc["model"],
        registered_by=doc["registered_by"],
        registered_at=_utc(doc["registered_at"]),
        faults=[
            Fault(
                fault_id=f["fault_id"],
                description=f["description"],
                reported_by=f["reported_by"],
                reported_at=_utc(f["reported_at"]),
                repaired_by=f.get("repaired_by"),
                repaired_at=_opt_utc(f.get("repaired_at")),
                repair_note=f.get("repair_note"),
                repair_request_id=f.get("repair_request_id"),
            )
            for f in doc.get("faults", [])
        ],
        version=doc["version"],
    )


def _check_fields(check: PreUseCheck) -> Document:
    return {
        "device_number": check.device_number,
        "unit": check.unit,
        "battery_percent": check.battery_percent,
        "free_storage_bytes": check.free_storage_bytes,
        "clock_offset_s": check.clock_offset_s,
        "checked_by": check.checked_by,
        "checked_at": check.checked_at,
        "shift_start": check.shift_start,
        "shift_end": check.shift_end,
        "passed": check.passed,
        "failures": list(check.failures),
    }


def _check_from(doc: Document) -> PreUseCheck:
    return PreUseCheck(
        check_id=doc["_id"],
        device_number=doc["device_number"],
        unit=doc["unit"],
        battery_percent=doc["battery_percent"],
        free_storage_bytes=doc["free_storage_bytes"],
        clock_offset_s=doc["clock_offset_s"],
        checked_by=doc["checked_by"],
        checked_at=_utc(doc["checked_at"]),
        shift_start=_utc(doc["shift_start"]),
        shift_end=_utc(doc["shift_end"]),
        passed=doc["passed"],
        failures=tuple(doc.get("failures", ())),
    )


def _maintenance_fields(record: MaintenanceRecord) -> Document:
    return {
        "device_number": record.device_number,
        "unit": record.unit,
        "description": record.description,
        "performed_by": record.performed_by,
        "performed_at": record.performed_at,
    }


def _maintenance_from(doc: Document) -> MaintenanceRecord:
    return MaintenanceRecord(
        maintenance_id=doc["_id"],
        device_number=doc["device_number"],
        unit=doc["unit"],
        description=doc["description"],
        performed_by=doc["performed_by"],
        performed_at=_utc(doc["performed_at"]),
    )
