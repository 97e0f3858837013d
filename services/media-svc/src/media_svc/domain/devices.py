"""Recording devices (执法记录设备): registration, pre-use checks, maintenance, faults and repairs.

R20 (第二十条): devices are maintained regularly and checked before use (battery capacity, free storage).
R21 (第二十一条): a fault puts a device out of service at once, until a repair record returns it.

Evidence is never refused: a recording made with an out-of-service device, without a passing pre-use
check in its shift, or attributed to an unknown device is still ingested — `device_findings_for_recording`
turns those situations into compliance findings that the recording carries.

Pure Python: no I/O, no protobuf. Times are timezone-aware UTC `datetime`s set by the server.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

from servicekit.errors import FailedPrecondition, InvalidArgument

from media_svc.domain.events import (
    DeviceChecked,
    DeviceEvent,
    DeviceFaultReported,
    DeviceMaintained,
    DeviceRegistered,
    DeviceReturnedToService,
)

MAX_DEVICE_NUMBER_LEN = 64
MAX_UNIT_LEN = 64
MAX_MODEL_LEN = 128
MAX_TEXT_LEN = 4000
MIB = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Configuration: what a shift is and what a passing pre-use check is (R20)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShiftSchedule:
    """Shifts are fixed daily windows that start at `starts` (local times in `tz`) and last until the
    next start. A pre-use check belongs to the shift in which it was recorded and covers recordings
    that start later in that same shift.

    The default is two 12-hour shifts, 08:00–20:00 and 20:00–08:00, China Standard Time.
    """

    starts: tuple[time, ...] = (time(8, 0), time(20, 0))
    tz: tzinfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))

    def __post_init__(self) -> None:
        if not self.starts:
            raise ValueError("a shift schedule needs at least one shift start time")
        if len(set(self.starts)) != len(self.starts):
            raise ValueError(f"shift start times must be distinct, got {self.starts}")
        object.__setattr__(self, "starts", tuple(sorted(self.starts)))

    @classmethod
    def parse(cls, starts: str, tz: str) -> ShiftSchedule:
        """Builds a schedule from configuration text: `starts` is a comma-separated list of `HH:MM`
        local times (e.g. `"08:00,20:00"`), `tz` an IANA time zone name (e.g. `"Asia/Shanghai"`)."""
        parsed: list[time] = []
        for part in starts.split(","):
            text = part.strip()
            try:
                hours, minutes = text.split(":")
                parsed.append(time(int(hours), int(minutes)))
            except ValueError:
                raise ValueError(
                    f"shift start {text!r} is not a local time in HH:MM form (e.g. '08:00')"
                ) from None
        return cls(starts=tuple(parsed), tz=ZoneInfo(tz))

    def shift_of(self, at: datetime) -> tuple[datetime, datetime]:
        """The shift containing the instant `at`, as `[start, end)` in UTC."""
        _require_aware(at, "at")
        local = at.astimezone(self.tz)
        candidates: list[datetime] = []
        for day_offset in (-1, 0, 1):
            day = local.date() + timedelta(days=day_offset)
            candidates.extend(datetime.combine(day, s, tzinfo=self.tz) for s in self.starts)
        # Compare as UTC instants: local wall-clock arithmetic is wrong across DST changes.
        instants = sorted({c.astimezone(UTC) for c in candidates})
        at_utc = at.astimezone(UTC)
        start = max(c for c in instants if c <= at_utc)
        end = min(c for c in instants if c > at_utc)
        return start, end


@dataclass(frozen=True)
class PreUseCheckPolicy:
    """Thresholds of a passing pre-use check (R20). A check passes when
    battery ≥ `min_battery_percent`, free storage ≥ `min_free_storage_mib` MiB and
    |device clock − server clock| ≤ `max_clock_offset_s` seconds.
    """

    min_battery_percent: int = 60
    min_free_storage_mib: int = 4096
    max_clock_offset_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_battery_percent <= 100:
            raise ValueError(f"min_battery_percent must be 0–100, got {self.min_battery_percent}")
        if self.min_free_storage_mib < 0:
            raise ValueError(f"min_free_storage_mib must be ≥ 0, got {self.min_free_storage_mib}")
        if self.max_clock_offset_s < 0:
            raise ValueError(f"max_clock_offset_s must be ≥ 0, got {self.max_clock_offset_s}")

    def failures(self, battery_percent: int, free_storage_bytes: int, clock_offset_s: float) -> list[str]:
        """Why a check with these readings does not pass; empty when it passes."""
        out: list[str] = []
        if battery_percent < self.min_battery_percent:
            out.append(f"battery {battery_percent}% is below the required {self.min_battery_percent}%")
        if free_storage_bytes < self.min_free_storage_mib * MIB:
            out.append(
                f"free storage {free_storage_bytes // MIB} MiB is below the required "
                f"{self.min_free_storage_mib} MiB"
            )
        if abs(clock_offset_s) > self.max_clock_offset_s:
            out.append(
                f"clock offset {clock_offset_s:+.3f} s exceeds the allowed ±{self.max_clock_offset_s:g} s"
            )
        return out


# ---------------------------------------------------------------------------------------------
# Records and the Device aggregate
# ---------------------------------------------------------------------------------------------


class DeviceStatus(enum.Enum):
    IN_SERVICE = "IN_SERVICE"
    OUT_OF_SERVICE = "OUT_OF_SERVICE"


@dataclass(frozen=True)
class Fault:
    """One fault report (R21) and, once repaired, its repair record."""

    fault_id: str
    description: str
    reported_by: str
    reported_at: datetime
    repaired_by: str | None = None
    repaired_at: datetime | None = None
    repair_note: str | None = None
    repair_request_id: str | None = None

    @property
    def open(self) -> bool:
        return self.repaired_at is None

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """True when the device was out of service because of this fault at some instant of [start, end]."""
        return self.reported_at <= end and (self.repaired_at is None or self.repaired_at > start)


@dataclass(frozen=True)
class PreUseCheck:
    """A pre-use check (R20) recorded before a shift. It belongs to the shift in which it was recorded
    (`shift_start`, `shift_end`, fixed at recording time) and whether it passed is decided then, with the
    thresholds in force, so later configuration changes never rewrite history."""

    check_id: str
    device_number: str
    unit: str
    battery_percent: int
    free_storage_bytes: int
    clock_offset_s: float
    checked_by: str
    checked_at: datetime
    shift_start: datetime
    shift_end: datetime
    passed: bool
    failures: tuple[str, ...] = ()

    def covers(self, recorded_from: datetime) -> bool:
        """A passing check covers a recording that starts after it, within the same shift."""
        return (
            self.passed
            and self.checked_at <= recorded_from
            and self.shift_start <= recorded_from < self.shift_end
        )


@dataclass(frozen=True)
class MaintenanceRecord:
    """An entry of the device's maintenance log (R20 定期维护保养)."""

    maintenance_id: str
    device_number: str
    unit: str
    description: str
    performed_by: str
    performed_at: datetime


RECENT_CHECKS = 64
RECENT_MAINTENANCE = 20


@dataclass
class Device:
    """A recording device: its faults and repairs (they change its status) and its most recent pre-use
    checks and maintenance entries. Every change of a device — and so every device event — goes through
    this one aggregate, so one device's events are published in the order they happened. Older checks and
    maintenance entries are kept as history records by the repository (`recent_*` are bounded)."""

    device_number: str
    unit: str
    model: str
    registered_by: str
    registered_at: datetime
    faults: list[Fault] = field(default_factory=list)
    recent_checks: list[PreUseCheck] = field(default_factory=list)
    recent_maintenance: list[MaintenanceRecord] = field(default_factory=list)
    version: int = 0
    events: list[DeviceEvent] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def register(cls, *, device_number: str, unit: str, model: str, by: str, at: datetime) -> Device:
        _require_aware(at, "at")
        device_number = _required_text(device_number, "device number", MAX_DEVICE_NUMBER_LEN)
        unit = _required_text(unit, "unit", MAX_UNIT_LEN)
        model = _required_text(model, "model", MAX_MODEL_LEN)
        device = cls(device_number=device_number, unit=unit, model=model, registered_by=by, registered_at=at)
        device.events.append(DeviceRegistered(device_number, unit, model, by, at))
        return device

    @property
    def open_fault(self) -> Fault | None:
        return next((f for f in self.faults if f.open), None)

    @property
    def status(self) -> DeviceStatus:
        return DeviceStatus.OUT_OF_SERVICE if self.open_fault else DeviceStatus.IN_SERVICE

    def same_registration(self, unit: str, model: str) -> bool:
        return self.unit == unit.strip() and self.model == model.strip()

    def record_check(
        self,
        *,
        check_id: str,
        battery_percent: int,
        free_storage_bytes: int,
        clock_offset_s: float,
        by: str,
        at: datetime,
        policy: PreUseCheckPolicy,
        shifts: ShiftSchedule,
    ) -> PreUseCheck:
        """Records a pre-use check. An out-of-service device cannot be checked out for a shift (R21)."""
        _require_aware(at, "at")
        fault = self.open_fault
        if fault is not None:
            raise FailedPrecondition(
                f"device {self.device_number} is out of service since {fault.reported_at.isoformat()} "
                f"(fault {fault.fault_id}: {fault.description!r}); record its repair before checking it "
                "out for a shift (R21)"
            )
        if not 0 <= battery_percent <= 100:
            raise InvalidArgument(f"battery_percent must be between 0 and 100, got {battery_percent}")
        if free_storage_bytes < 0:
            raise InvalidArgument(f"free_storage_bytes must be ≥ 0, got {free_storage_bytes}")
        if abs(clock_offset_s) > 366 * 24 * 3600:
            raise InvalidArgument(f"clock offset {clock_offset_s} s is not plausible (more than a year)")
        failures = policy.failures(battery_percent, free_storage_bytes, clock_offset_s)
        shift_start, shift_end = shifts.shift_of(at)
        check = PreUseCheck(
            check_id=check_id,
            device_number=self.device_number,
            unit=self.unit,
            battery_percent=battery_percent,
            free_storage_bytes=free_storage_bytes,
            clock_offset_s=clock_offset_s,
            checked_by=by,
            checked_at=at,
            shift_start=shift_start,
            shift_end=shift_end,
            passed=not failures,
            failures=tuple(failures),
        )
        self.recent_checks = [*self.recent_checks, check][-RECENT_CHECKS:]
        self.events.append(DeviceChecked(check))
        return check

    def record_maintenance(
        self, *, maintenance_id: str, description: str, by: str, at: datetime
    ) -> MaintenanceRecord:
        _require_aware(at, "at")
        record = MaintenanceRecord(
            maintenance_id=maintenance_id,
            device_number=self.device_number,
            unit=self.unit,
            description=_required_text(description, "maintenance description", MAX_TEXT_LEN),
            performed_by=by,
            performed_at=at,
        )
        self.recent_maintenance = [*self.recent_maintenance, record][-RECENT_MAINTENANCE:]
        self.events.append(DeviceMaintained(record))
        return record

    def report_fault(self, *, fault_id: str, description: str, by: str, at: datetime) -> Fault:
        """Puts the device out of service at once (R21). Reporting again with the same `fault_id`
        (a retried request) changes nothing."""
        _require_aware(at, "at")
        description = _required_text(description, "fault description", MAX_TEXT_LEN)
        for existing in self.faults:
            if existing.fault_id == fault_id:
                return existing
        current = self.open_fault
        if current is not None:
            raise FailedPrecondition(
                f"device {self.device_number} is already out of service since "
                f"{current.reported_at.isoformat()} (fault {current.fault_id}: {current.description!r}); "
                "record its repair first"
            )
        fault = Fault(fault_id=fault_id, description=description, reported_by=by, reported_at=at)
        self.faults.append(fault)
        self.events.append(DeviceFaultReported(self.device_number, self.unit, fault))
        return fault

    def record_repair(self, *, request_id: str | None, note: str, by: str, at: datetime) -> Fault:
        """Closes the open fault with a repair record and returns the device to service (R21).
        A retried request (same `request_id`) returns the fault it already closed."""
        _require_aware(at, "at")
        note = _required_text(note, "repair note", MAX_TEXT_LEN)
        if request_id:
            for existing in self.faults:
                if existing.repair_request_id == request_id:
                    return existing
        current = self.open_fault
        if current is None:
            raise FailedPrecondition(
                f"device {self.device_number} is in service: there is no open fault to repair"
            )
        repaired = replace(
            current, repaired_by=by, repaired_at=at, repair_note=note, repair_request_id=request_id
        )
        self.faults[self.faults.index(current)] = repaired
        self.events.append(DeviceReturnedToService(self.device_number, self.unit, repaired))
        return repaired

    def recent_check(self, check_id: str) -> PreUseCheck | None:
        return next((c for c in self.recent_checks if c.check_id == check_id), None)

    def recent_maintenance_entry(self, maintenance_id: str) -> MaintenanceRecord | None:
        return next((m for m in self.recent_maintenance if m.maintenance_id == maintenance_id), None)

    def fault_during(self, start: datetime, end: datetime) -> Fault | None:
        """The first fault that kept the device out of service at some instant of [start, end]."""
        return next((f for f in self.faults if f.overlaps(start, end)), None)


# ---------------------------------------------------------------------------------------------
# Findings for a recording (called by the recordings ingest)
# ---------------------------------------------------------------------------------------------

FINDING_UNKNOWN_DEVICE = "R20_UNKNOWN_DEVICE"
FINDING_DEVICE_OUT_OF_SERVICE = "R21_DEVICE_OUT_OF_SERVICE"
FINDING_NO_PASSING_PRE_USE_CHECK = "R20_NO_PASSING_PRE_USE_CHECK"


def device_findings_for_recording(
    device: Device | None,
    checks: Sequence[PreUseCheck],
    recorded_from: datetime,
    recorded_to: datetime,
) -> list[str]:
    """Compliance findings about the device a recording is attributed to. Never raises for a
    questionable device: evidence is never refused, it is flagged.

    Each finding is `"<CODE>: <explanation>"`, CODE one of `FINDING_UNKNOWN_DEVICE`,
    `FINDING_DEVICE_OUT_OF_SERVICE` (R21: a fault was open at some instant of the recording) and
    `FINDING_NO_PASSING_PRE_USE_CHECK` (R20: no passing check recorded earlier in the shift in which
    the recording started). `checks` may hold any checks of the device; pass at least those whose shift
    overlaps the recording (`MongoDeviceRepository.checks_for(number, recorded_from, recorded_to)`).
    """
    _require_aware(recorded_from, "recorded_from")
    _require_aware(recorded_to, "recorded_to")
    if device is None:
        return [
            f"{FINDING_UNKNOWN_DEVICE}: the recording is attributed to a device number that is not "
            "registered, so its pre-use checks and service status cannot be verified"
        ]
    findings: list[str] = []
    end = max(recorded_from, recorded_to)
    fault = device.fault_during(recorded_from, end)
    if fault is not None:
        until = fault.repaired_at.isoformat() if fault.repaired_at else "now"
        findings.append(
            f"{FINDING_DEVICE_OUT_OF_SERVICE}: device {device.device_number} was out of service from "
            f"{fault.reported_at.isoformat()} to {until} (fault {fault.fault_id}: {fault.description!r}) "
            f"during the recording {recorded_from.isoformat()}–{recorded_to.isoformat()}"
        )
    own = [c for c in checks if c.device_number == device.device_number]
    if not any(c.covers(recorded_from) for c in own):
        in_shift = [c for c in own if c.shift_start <= recorded_from < c.shift_end]
        if not in_shift:
            detail = "no pre-use check was recorded in the shift in which the recording started"
        elif any(c.passed for c in in_shift):
            detail = "the shift's passing pre-use check was recorded only after the recording started"
        else:
            reasons = "; ".join(r for c in in_shift for r in c.failures)
            detail = f"the shift's pre-use check(s) did not pass ({reasons})"
        findings.append(
            f"{FINDING_NO_PASSING_PRE_USE_CHECK}: device {device.device_number}: {detail} "
            f"(recording started {recorded_from.isoformat()})"
        )
    return findings


# ---------------------------------------------------------------------------------------------


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value.isoformat()}")


def _required_text(value: str, what: str, max_len: int) -> str:
    text = value.strip()
    if not text:
        raise InvalidArgument(f"{what} is required")
    if len(text) > max_len:
        raise InvalidArgument(f"{what} is too long: {len(text)} characters, at most {max_len}")
    return text
