"""MongoDB storage of devices, pre-use checks and maintenance entries (R20, R21).

- `devices`: one document per device (`_id` = device number): faults and repairs, the most recent pre-use
  checks and maintenance entries, optimistic concurrency by `version`, and the embedded outbox. Every
  command is one single-document write of this document with its events, so one device's events are
  published in order (Kafka key = device number).
- `device_checks` / `device_maintenance`: the history (`_id` = check / entry id), append-only, copied from
  the device document right after each write. The copy is idempotent and repeated on every write of the
  device, so a crash between the two writes only delays it: the device document still holds the record
  (the last 64 checks / 20 entries) and the reads below merge both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError
from servicekit.errors import AlreadyExists
from servicekit.mongo import IndexSpec, Notify, VersionedRepository

from media_svc.adapters.event_mapping import device_outbound
from media_svc.domain.devices import Device, Fault, MaintenanceRecord, PreUseCheck
from media_svc.domain.errors import DeviceAlreadyRegistered
from media_svc.domain.events import DeviceEvent
from media_svc.service_layer.ports import DeviceRepository

DEVICES = "devices"
CHECKS = "device_checks"
MAINTENANCE = "device_maintenance"

Document = dict[str, Any]
DUPLICATE_KEY = 11000


class _Devices(VersionedRepository):
    what = "device"
    indexes: ClassVar[Sequence[IndexSpec]] = [IndexSpec([("unit", 1), ("_id", 1)], name="unit_number")]


CHECK_INDEXES = [IndexSpec([("device_number", 1), ("shift_start", 1)], name="device_shift")]
MAINTENANCE_INDEXES = [IndexSpec([("device_number", 1), ("performed_at", -1)], name="device_performed")]


class MongoDeviceRepository(DeviceRepository):
    """Devices in MongoDB. `get` and `checks_for` are what the recordings ingest needs to call
    `media_svc.domain.devices.device_findings_for_recording`:

        device = await devices.get(number)
        checks = await devices.checks_for(number, recorded_from, recorded_to)
        findings = device_findings_for_recording(device, checks, recorded_from, recorded_to)
    """

    def __init__(
        self, db: AsyncDatabase[Document], *, event_source: str, notify: Notify | None = None
    ) -> None:
        self._check_docs = db[CHECKS]
        self._maintenance_docs = db[MAINTENANCE]
        # Every write to `devices` in this process — ours and the outbox relay's — holds servicekit's
        # per-document lock (servicekit.doclock: FerretDB v1 loses concurrent updates of one document).
        self._devices = _Devices(db[DEVICES], event_source=event_source, notify=notify)
        self.device_collection = self._devices.collection
        self._device_docs = self.device_collection

    @staticmethod
    def indexes() -> Mapping[str, Sequence[IndexSpec]]:
        """Indexes to create at start (`Wiring(indexes=...)`), outbox index included."""
        return {DEVICES: _Devices.all_indexes(), CHECKS: CHECK_INDEXES, MAINTENANCE: MAINTENANCE_INDEXES}

    # --- devices --------------------------------------------------------------------------------

    async def get(self, device_number: str) -> Device | None:
        doc = await self._devices.get(device_number)
        return None if doc is None else _device_from(doc)

    async def add(self, device: Device, events: Sequence[DeviceEvent]) -> None:
        try:
            await self._devices.insert(
                {"_id": device.device_number, **_device_fields(device)}, events=device_outbound(events)
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
            events=device_outbound(events),
        )
        await self._keep_history(device)

    async def _keep_history(self, device: Device) -> None:
        """Copies the device's recent checks and maintenance entries into the history (idempotent)."""
        await _insert_missing(
            self._check_docs, [{"_id": c.check_id, **_check_fields(c)} for c in device.recent_checks]
        )
        await _insert_missing(
            self._maintenance_docs,
            [{"_id": m.maintenance_id, **_maintenance_fields(m)} for m in device.recent_maintenance],
        )

    async def list_by_unit(self, unit: str, after: str | None, limit: int) -> list[Device]:
        query: Document = {"unit": unit}
        if after:
            query["_id"] = {"$gt": after}
        cursor = self._device_docs.find(query, projection={"outbox": False}).sort([("unit", 1), ("_id", 1)])
        return [_device_from(doc) async for doc in cursor.limit(limit)]

    # --- pre-use checks and maintenance ---------------------------------------------------------

    async def get_check(self, check_id: str) -> PreUseCheck | None:
        doc = await self._check_docs.find_one({"_id": check_id})
        return None if doc is None else _check_from(doc)

    async def checks_for(self, device_number: str, since: datetime, until: datetime) -> list[PreUseCheck]:
        """Pre-use checks of the device whose shift overlaps [since, until], oldest first."""
        cursor = self._check_docs.find(
            {"device_number": device_number, "shift_start": {"$lte": until}, "shift_end": {"$gt": since}}
        ).sort([("device_number", 1), ("shift_start", 1)])
        found = {doc["_id"]: _check_from(doc) async for doc in cursor}
        device = await self.get(device_number)
        for check in device.recent_checks if device else []:
            if check.shift_start <= until and check.shift_end > since:
                found.setdefault(check.check_id, check)
        return sorted(found.values(), key=lambda c: c.checked_at)

    async def get_maintenance(self, maintenance_id: str) -> MaintenanceRecord | None:
        doc = await self._maintenance_docs.find_one({"_id": maintenance_id})
        return None if doc is None else _maintenance_from(doc)

    async def maintenance_of(self, device_number: str, limit: int) -> list[MaintenanceRecord]:
        cursor = self._maintenance_docs.find({"device_number": device_number}).sort(
            [("device_number", 1), ("performed_at", -1)]
        )
        found = {doc["_id"]: _maintenance_from(doc) async for doc in cursor.limit(limit)}
        device = await self.get(device_number)
        for record in device.recent_maintenance if device else []:
            found.setdefault(record.maintenance_id, record)
        return sorted(found.values(), key=lambda m: m.performed_at, reverse=True)[:limit]


async def _insert_missing(collection: AsyncCollection[Document], docs: list[Document]) -> None:
    if not docs:
        return
    present = {
        d["_id"] async for d in collection.find({"_id": {"$in": [d["_id"] for d in docs]}}, {"_id": 1})
    }
    missing = [d for d in docs if d["_id"] not in present]
    if not missing:
        return
    try:
        await collection.insert_many(missing, ordered=False)
    except BulkWriteError as error:
        # Another writer copied the same record meanwhile: fine. Anything else is a real failure.
        if any(e.get("code") != DUPLICATE_KEY for e in error.details.get("writeErrors", [])):
            raise


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
        "recent_checks": [{"check_id": c.check_id, **_check_fields(c)} for c in device.recent_checks],
        "recent_maintenance": [
            {"maintenance_id": m.maintenance_id, **_maintenance_fields(m)} for m in device.recent_maintenance
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
        recent_checks=[_check_from({**c, "_id": c["check_id"]}) for c in doc.get("recent_checks", [])],
        recent_maintenance=[
            _maintenance_from({**m, "_id": m["maintenance_id"]}) for m in doc.get("recent_maintenance", [])
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
