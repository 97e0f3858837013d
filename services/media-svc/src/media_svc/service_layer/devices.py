"""Use cases of recording devices (R20, R21): one async handler per command, plus the two queries.

Handlers load the `Device` aggregate, let it decide, and hand the aggregate (or the new record) with
the events it produced to the repository, which writes state and events in one single-document write.
"""

from __future__ import annotations

import abc
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from servicekit.errors import AlreadyExists, ConcurrencyConflict, InvalidArgument, NotFound, PermissionDenied

from media_svc.domain.devices import (
    Device,
    DeviceEvent,
    Fault,
    MaintenanceRecord,
    PreUseCheck,
    PreUseCheckPolicy,
    ShiftSchedule,
)

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_CHECK_RANGE = timedelta(days=31)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

# Roles that supervise every unit (R8: the legal affairs office supervises all units).
SUPERVISING_ROLES = frozenset({"LEGAL_OFFICE", "INSPECTOR"})


class DeviceNotFound(NotFound):
    pass


class DeviceAlreadyRegistered(AlreadyExists):
    pass


# ---------------------------------------------------------------------------------------------
# The repository the handlers need (adapters implement it; unit tests use an in-memory one)
# ---------------------------------------------------------------------------------------------


class DeviceRepository(abc.ABC):
    @abc.abstractmethod
    async def get(self, device_number: str) -> Device | None:
        """The device with its faults and recent checks, or None when no such device is registered."""

    @abc.abstractmethod
    async def add(self, device: Device, events: Sequence[DeviceEvent]) -> None:
        """Inserts a new device with its events; raises `DeviceAlreadyRegistered` if the number exists."""

    @abc.abstractmethod
    async def save(self, device: Device, events: Sequence[DeviceEvent]) -> None:
        """Writes the device's changed state (faults, recent checks and maintenance) and its events in one
        write if nobody changed it since it was read (version), else raises
        `servicekit.errors.ConcurrencyConflict`. Checks and maintenance entries are kept as history too."""

    @abc.abstractmethod
    async def get_check(self, check_id: str) -> PreUseCheck | None:
        """A pre-use check of any device by its id (history), or None."""

    @abc.abstractmethod
    async def checks_for(self, device_number: str, since: datetime, until: datetime) -> list[PreUseCheck]:
        """Pre-use checks of the device whose shift overlaps [since, until], oldest first."""

    @abc.abstractmethod
    async def get_maintenance(self, maintenance_id: str) -> MaintenanceRecord | None:
        """A maintenance entry of any device by its id (history), or None."""

    @abc.abstractmethod
    async def maintenance_of(self, device_number: str, limit: int) -> list[MaintenanceRecord]:
        """The device's most recent maintenance entries, newest first."""

    @abc.abstractmethod
    async def list_by_unit(self, unit: str, after: str | None, limit: int) -> list[Device]:
        """Devices of `unit` ordered by device number, starting after the number `after`."""


# ---------------------------------------------------------------------------------------------
# Commands and queries
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who is calling, from the verified token (never from the request)."""

    subject: str
    unit: str
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def supervises_all_units(self) -> bool:
        return bool(self.roles & SUPERVISING_ROLES)


@dataclass(frozen=True)
class RegisterDevice:
    device_number: str
    unit: str
    model: str


@dataclass(frozen=True)
class RecordPreUseCheck:
    device_number: str
    battery_percent: int
    free_storage_bytes: int
    clock_offset_s: float
    request_id: str = ""


@dataclass(frozen=True)
class RecordMaintenance:
    device_number: str
    description: str
    request_id: str = ""


@dataclass(frozen=True)
class ReportFault:
    device_number: str
    description: str
    request_id: str = ""


@dataclass(frozen=True)
class RecordRepair:
    device_number: str
    note: str
    request_id: str = ""


@dataclass(frozen=True)
class DevicePage:
    devices: list[Device]
    # Device number to continue after; None when this was the last page.
    next_after: str | None


def utc_now_ms() -> datetime:
    """Server time, truncated to milliseconds (what MongoDB stores), so a record reads back equal."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_id() -> str:
    return uuid.uuid4().hex


class DeviceHandlers:
    """The device use cases. Built once by the composition root with its repository and policy."""

    def __init__(
        self,
        repository: DeviceRepository,
        *,
        policy: PreUseCheckPolicy,
        shifts: ShiftSchedule,
        clock: Callable[[], datetime] = utc_now_ms,
        ids: Callable[[], str] = new_id,
    ) -> None:
        self._repo = repository
        self._policy = policy
        self._shifts = shifts
        self._clock = clock
        self._ids = ids

    @property
    def policy(self) -> PreUseCheckPolicy:
        return self._policy

    @property
    def shifts(self) -> ShiftSchedule:
        return self._shifts

    async def register_device(self, cmd: RegisterDevice, actor: Actor) -> Device:
        """Registers a device in the caller's unit. Registering the same number again with the same
        unit and model returns the existing device (a retried request); anything else is refused."""
        if cmd.unit.strip() and cmd.unit.strip() != actor.unit:
            raise PermissionDenied(
                f"you may register devices only for your own unit {actor.unit!r}, not {cmd.unit.strip()!r}"
            )
        device = Device.register(
            device_number=cmd.device_number,
            unit=cmd.unit,
            model=cmd.model,
            by=actor.subject,
            at=self._clock(),
        )
        existing = await self._repo.get(device.device_number)
        if existing is not None:
            if existing.same_registration(device.unit, device.model):
                return existing
            raise DeviceAlreadyRegistered(
                f"device {device.device_number} is already registered (unit {existing.unit!r}, model "
                f"{existing.model!r}); device numbers are unique"
            )
        await self._repo.add(device, _take_events(device))
        return device

    async def record_pre_use_check(self, cmd: RecordPreUseCheck, actor: Actor) -> PreUseCheck:
        check_id = _request_id(cmd.request_id) or self._ids()

        async def attempt() -> PreUseCheck:
            device = await self._writable_device(cmd.device_number, actor)
            if cmd.request_id:
                existing = device.recent_check(check_id) or await self._repo.get_check(check_id)
                if existing is not None:
                    return _same_device(
                        existing, existing.device_number, device.device_number, cmd.request_id
                    )
            check = device.record_check(
                check_id=check_id,
                battery_percent=cmd.battery_percent,
                free_storage_bytes=cmd.free_storage_bytes,
                clock_offset_s=cmd.clock_offset_s,
                by=actor.subject,
                at=self._clock(),
                policy=self._policy,
                shifts=self._shifts,
            )
            await self._repo.save(device, _take_events(device))
            return check

        return await _retrying(attempt)

    async def record_maintenance(self, cmd: RecordMaintenance, actor: Actor) -> MaintenanceRecord:
        maintenance_id = _request_id(cmd.request_id) or self._ids()

        async def attempt() -> MaintenanceRecord:
            device = await self._writable_device(cmd.device_number, actor)
            if cmd.request_id:
                existing = device.recent_maintenance_entry(
                    maintenance_id
                ) or await self._repo.get_maintenance(maintenance_id)
                if existing is not None:
                    return _same_device(
                        existing, existing.device_number, device.device_number, cmd.request_id
                    )
            record = device.record_maintenance(
                maintenance_id=maintenance_id, description=cmd.description, by=actor.subject, at=self._clock()
            )
            await self._repo.save(device, _take_events(device))
            return record

        return await _retrying(attempt)

    async def report_fault(self, cmd: ReportFault, actor: Actor) -> tuple[Device, Fault]:
        """R21: the device is out of service from this instant."""
        fault_id = _request_id(cmd.request_id) or self._ids()

        async def attempt() -> tuple[Device, Fault]:
            device = await self._writable_device(cmd.device_number, actor)
            fault = device.report_fault(
                fault_id=fault_id, description=cmd.description, by=actor.subject, at=self._clock()
            )
            events = _take_events(device)
            if events:
                await self._repo.save(device, events)
            return device, fault

        return await _retrying(attempt)

    async def record_repair(self, cmd: RecordRepair, actor: Actor) -> tuple[Device, Fault]:
        """R21: the repair record returns the device to service."""
        request_id = _request_id(cmd.request_id) or None

        async def attempt() -> tuple[Device, Fault]:
            device = await self._writable_device(cmd.device_number, actor)
            fault = device.record_repair(
                request_id=request_id, note=cmd.note, by=actor.subject, at=self._clock()
            )
            events = _take_events(device)
            if events:
                await self._repo.save(device, events)
            return device, fault

        return await _retrying(attempt)

    async def get_device(self, device_number: str, actor: Actor) -> Device:
        device = await self._load(device_number)
        if device.unit != actor.unit and not actor.supervises_all_units:
            # Same answer as for a device that does not exist: a unit does not learn other units' devices.
            raise _not_found(device_number)
        return device

    async def recent_maintenance(
        self, device_number: str, actor: Actor, limit: int = 20
    ) -> list[MaintenanceRecord]:
        await self.get_device(device_number, actor)
        return await self._repo.maintenance_of(device_number.strip(), limit)

    async def list_checks(
        self, device_number: str, since: datetime, until: datetime, actor: Actor
    ) -> list[PreUseCheck]:
        """Pre-use checks of a device whose shift overlaps [since, until] (R20), oldest first."""
        if until < since:
            raise InvalidArgument(f"until ({until.isoformat()}) is before since ({since.isoformat()})")
        if until - since > MAX_CHECK_RANGE:
            raise InvalidArgument(
                f"the time range may span at most {MAX_CHECK_RANGE.days} days; ask page by page"
            )
        device = await self.get_device(device_number, actor)
        return await self._repo.checks_for(device.device_number, since, until)

    async def list_devices(self, unit: str, page_size: int, after: str | None, actor: Actor) -> DevicePage:
        unit = unit.strip() or actor.unit
        if unit != actor.unit and not actor.supervises_all_units:
            raise PermissionDenied(
                f"you may list the devices of your own unit {actor.unit!r} only, not {unit!r}"
            )
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            raise InvalidArgument(
                f"page_size must be between 1 and {MAX_PAGE_SIZE} (0 = default), got {page_size}"
            )
        size = page_size or DEFAULT_PAGE_SIZE
        devices = await self._repo.list_by_unit(unit, after, size + 1)
        if len(devices) > size:
            return DevicePage(devices[:size], devices[size - 1].device_number)
        return DevicePage(devices, None)

    async def _load(self, device_number: str) -> Device:
        number = device_number.strip()
        if not number:
            raise InvalidArgument("device number is required")
        device = await self._repo.get(number)
        if device is None:
            raise _not_found(number)
        return device

    async def _writable_device(self, device_number: str, actor: Actor) -> Device:
        device = await self._load(device_number)
        if device.unit != actor.unit:
            if actor.supervises_all_units:
                raise PermissionDenied(
                    f"device {device.device_number} belongs to unit {device.unit!r}; supervising roles may "
                    "read it but only its own unit records checks, maintenance, faults and repairs"
                )
            raise _not_found(device.device_number)
        return device


async def _retrying(attempt: Callable[[], Awaitable[T]], attempts: int = 3) -> T:
    """Runs a command again (reloading the device) when a concurrent change to the same device won."""
    for remaining in range(attempts - 1, -1, -1):
        try:
            return await attempt()
        except ConcurrencyConflict:
            if not remaining:
                raise
    raise AssertionError("unreachable")


def _not_found(device_number: str) -> DeviceNotFound:
    return DeviceNotFound(
        f"device {device_number!r} is not registered in your unit; register it first (RegisterDevice)"
    )


def _take_events(device: Device) -> list[DeviceEvent]:
    events, device.events = list(device.events), []
    return events


def _request_id(value: str) -> str:
    value = value.strip()
    if value and not _REQUEST_ID.match(value):
        raise InvalidArgument(
            "request_id must be 1–64 characters of letters, digits, '.', '_', ':' or '-' (a UUID works)"
        )
    return value


def _same_device(record: T, recorded_number: str, requested_number: str, request_id: str) -> T:
    if recorded_number != requested_number.strip():
        raise AlreadyExists(
            f"request_id {request_id!r} was already used for device {recorded_number}; use a fresh id"
        )
    return record
