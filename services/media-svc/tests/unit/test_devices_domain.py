"""Devices (R20, R21): the aggregate, the pre-use check policy, shifts and findings for recordings."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from media_svc.domain.devices import (
    FINDING_DEVICE_OUT_OF_SERVICE,
    FINDING_NO_PASSING_PRE_USE_CHECK,
    FINDING_UNKNOWN_DEVICE,
    MIB,
    Device,
    DeviceChecked,
    DeviceFaultReported,
    DeviceRegistered,
    DeviceReturnedToService,
    DeviceStatus,
    PreUseCheck,
    PreUseCheckPolicy,
    ShiftSchedule,
    device_findings_for_recording,
)
from servicekit.errors import FailedPrecondition, InvalidArgument

CST = ZoneInfo("Asia/Shanghai")
POLICY = PreUseCheckPolicy(min_battery_percent=60, min_free_storage_mib=4096, max_clock_offset_s=5)
SHIFTS = ShiftSchedule(starts=(time(8, 0), time(20, 0)), tz=CST)


def cst(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 5, day, hour, minute, tzinfo=CST).astimezone(UTC)


def new_device(number: str = "BC-0001") -> Device:
    device = Device.register(device_number=number, unit="unit-a", model="DSJ-X1", by="alice", at=cst(1, 7))
    device.events.clear()
    return device


def check(
    device: Device, at: datetime, battery: int = 90, free_mib: int = 8192, offset: float = 0.5
) -> PreUseCheck:
    return device.record_check(
        check_id=f"chk-{at.isoformat()}",
        battery_percent=battery,
        free_storage_bytes=free_mib * MIB,
        clock_offset_s=offset,
        by="alice",
        at=at,
        policy=POLICY,
        shifts=SHIFTS,
    )


# --- registration -------------------------------------------------------------------------------


def test_r20_register_device_emits_device_registered() -> None:
    device = Device.register(device_number=" BC-7 ", unit="unit-a", model="DSJ-X1", by="bob", at=cst(1, 9))
    assert device.device_number == "BC-7"
    assert device.status is DeviceStatus.IN_SERVICE
    assert device.events == [DeviceRegistered("BC-7", "unit-a", "DSJ-X1", "bob", cst(1, 9))]


@pytest.mark.parametrize(
    ("number", "unit", "model", "message"),
    [
        ("", "unit-a", "m", "device number is required"),
        ("BC-1", " ", "m", "unit is required"),
        ("BC-1", "unit-a", "", "model is required"),
        ("B" * 65, "unit-a", "m", "device number is too long"),
    ],
)
def test_r20_register_rejects_incomplete_registration(
    number: str, unit: str, model: str, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        Device.register(device_number=number, unit=unit, model=model, by="bob", at=cst(1, 9))


def test_domain_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Device.register(device_number="BC-1", unit="u", model="m", by="b", at=datetime(2026, 5, 1))


# --- pre-use checks -----------------------------------------------------------------------------


def test_r20_passing_pre_use_check_belongs_to_its_shift() -> None:
    device = new_device()
    result = check(device, cst(2, 8, 10))
    assert result.passed
    assert result.failures == ()
    assert (result.shift_start, result.shift_end) == (cst(2, 8), cst(2, 20))
    assert device.events == [DeviceChecked(result)]


@pytest.mark.parametrize(
    ("battery", "free_mib", "offset", "reason"),
    [
        (59, 8192, 0.0, "battery 59% is below the required 60%"),
        (90, 4095, 0.0, "free storage 4095 MiB is below the required 4096 MiB"),
        (90, 8192, -5.5, "clock offset -5.500 s exceeds the allowed ±5 s"),
    ],
)
def test_r20_failing_pre_use_check_is_recorded_with_reasons(
    battery: int, free_mib: int, offset: float, reason: str
) -> None:
    result = check(new_device(), cst(2, 8, 10), battery=battery, free_mib=free_mib, offset=offset)
    assert not result.passed
    assert result.failures == (reason,)


def test_r20_check_at_the_thresholds_passes() -> None:
    assert check(new_device(), cst(2, 9), battery=60, free_mib=4096, offset=-5.0).passed


@pytest.mark.parametrize(
    ("battery", "free", "message"), [(101, 0, "battery_percent"), (50, -1, "free_storage")]
)
def test_r20_check_rejects_impossible_readings(battery: int, free: int, message: str) -> None:
    device = new_device()
    with pytest.raises(InvalidArgument, match=message):
        device.record_check(
            check_id="c",
            battery_percent=battery,
            free_storage_bytes=free,
            clock_offset_s=0,
            by="a",
            at=cst(2, 9),
            policy=POLICY,
            shifts=SHIFTS,
        )


def test_r21_out_of_service_device_cannot_be_checked_out() -> None:
    device = new_device()
    device.report_fault(fault_id="f1", description="lens cracked", by="bob", at=cst(2, 7))
    with pytest.raises(FailedPrecondition, match=r"out of service since .* record its repair"):
        check(device, cst(2, 8, 10))


# --- shifts -------------------------------------------------------------------------------------


def test_shift_overnight_spans_midnight() -> None:
    assert SHIFTS.shift_of(cst(3, 2)) == (cst(2, 20), cst(3, 8))
    assert SHIFTS.shift_of(cst(3, 20)) == (cst(3, 20), cst(4, 8))
    assert SHIFTS.shift_of(cst(3, 19, 59)) == (cst(3, 8), cst(3, 20))


def test_shift_schedule_parses_configuration() -> None:
    schedule = ShiftSchedule.parse("20:00, 08:00", "Asia/Shanghai")
    assert schedule.starts == (time(8), time(20))
    one_a_day = ShiftSchedule.parse("06:30", "UTC")
    at = datetime(2026, 5, 2, 3, tzinfo=UTC)
    assert one_a_day.shift_of(at) == (
        datetime(2026, 5, 1, 6, 30, tzinfo=UTC),
        datetime(2026, 5, 2, 6, 30, tzinfo=UTC),
    )


def test_shift_schedule_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        ShiftSchedule.parse("8am", "UTC")
    with pytest.raises(ValueError, match="distinct"):
        ShiftSchedule.parse("08:00,08:00", "UTC")


def test_shift_across_daylight_saving_change_uses_real_instants() -> None:
    berlin = ShiftSchedule.parse("00:00", "Europe/Berlin")
    # 2026-03-29 has 23 hours in Berlin.
    start, end = berlin.shift_of(datetime(2026, 3, 29, 12, tzinfo=UTC))
    assert end - start == timedelta(hours=23)


# --- faults and repairs -------------------------------------------------------------------------


def test_r21_fault_report_puts_device_out_of_service_at_once() -> None:
    device = new_device()
    fault = device.report_fault(fault_id="f1", description="does not record audio", by="bob", at=cst(2, 11))
    assert device.status is DeviceStatus.OUT_OF_SERVICE
    assert device.open_fault == fault
    assert device.events == [DeviceFaultReported("BC-0001", "unit-a", fault)]


def test_r21_retried_fault_report_changes_nothing() -> None:
    device = new_device()
    first = device.report_fault(fault_id="f1", description="broken", by="bob", at=cst(2, 11))
    device.events.clear()
    assert device.report_fault(fault_id="f1", description="broken", by="bob", at=cst(2, 12)) == first
    assert device.events == []


def test_r21_second_fault_while_out_of_service_is_refused() -> None:
    device = new_device()
    device.report_fault(fault_id="f1", description="broken", by="bob", at=cst(2, 11))
    with pytest.raises(FailedPrecondition, match="already out of service"):
        device.report_fault(fault_id="f2", description="also broken", by="bob", at=cst(2, 12))


def test_r21_repair_returns_device_to_service() -> None:
    device = new_device()
    device.report_fault(fault_id="f1", description="broken", by="bob", at=cst(2, 11))
    device.events.clear()
    repaired = device.record_repair(request_id="r1", note="replaced lens", by="tech", at=cst(3, 9))
    assert device.status is DeviceStatus.IN_SERVICE
    assert repaired.repaired_at == cst(3, 9)
    assert repaired.repair_note == "replaced lens"
    assert device.events == [DeviceReturnedToService("BC-0001", "unit-a", repaired)]
    # a retried repair request returns the same record and changes nothing
    device.events.clear()
    assert device.record_repair(request_id="r1", note="replaced lens", by="tech", at=cst(3, 10)) == repaired
    assert device.events == []


def test_r21_repair_of_device_in_service_is_refused() -> None:
    with pytest.raises(FailedPrecondition, match="no open fault"):
        new_device().record_repair(request_id=None, note="n", by="t", at=cst(3, 9))


def test_r20_maintenance_needs_a_description() -> None:
    device = new_device()
    with pytest.raises(InvalidArgument, match="maintenance description is required"):
        device.record_maintenance(maintenance_id="m1", description=" ", by="t", at=cst(3, 9))
    record = device.record_maintenance(
        maintenance_id="m1", description="cleaned contacts", by="t", at=cst(3, 9)
    )
    assert record.description == "cleaned contacts"


# --- findings for recordings --------------------------------------------------------------------


def codes(findings: list[str]) -> list[str]:
    return [f.split(":", 1)[0] for f in findings]


def test_r20_recording_after_passing_check_in_its_shift_has_no_finding() -> None:
    device = new_device()
    checks = [check(device, cst(2, 8, 5))]
    assert device_findings_for_recording(device, checks, cst(2, 9), cst(2, 9, 30)) == []


def test_r20_recording_without_any_check_in_its_shift_is_flagged() -> None:
    device = new_device()
    yesterday = [check(device, cst(1, 8, 5))]
    findings = device_findings_for_recording(device, yesterday, cst(2, 9), cst(2, 9, 30))
    assert codes(findings) == [FINDING_NO_PASSING_PRE_USE_CHECK]
    assert "no pre-use check was recorded in the shift" in findings[0]


def test_r20_recording_after_failed_check_is_flagged_with_its_reasons() -> None:
    device = new_device()
    checks = [check(device, cst(2, 8, 5), battery=20)]
    findings = device_findings_for_recording(device, checks, cst(2, 9), cst(2, 9, 30))
    assert codes(findings) == [FINDING_NO_PASSING_PRE_USE_CHECK]
    assert "battery 20% is below the required 60%" in findings[0]


def test_r20_check_recorded_after_the_recording_started_does_not_cover_it() -> None:
    device = new_device()
    checks = [check(device, cst(2, 10))]
    findings = device_findings_for_recording(device, checks, cst(2, 9), cst(2, 9, 30))
    assert "only after the recording started" in findings[0]


def test_r20_night_shift_check_covers_recording_after_midnight() -> None:
    device = new_device()
    checks = [check(device, cst(2, 20, 1))]
    assert device_findings_for_recording(device, checks, cst(3, 1), cst(3, 1, 10)) == []
    # … but not one in the next morning's shift
    assert codes(device_findings_for_recording(device, checks, cst(3, 8, 1), cst(3, 9))) == [
        FINDING_NO_PASSING_PRE_USE_CHECK
    ]


def test_r20_checks_of_other_devices_are_ignored() -> None:
    other = new_device("BC-9")
    checks = [check(other, cst(2, 8, 5))]
    assert codes(device_findings_for_recording(new_device(), checks, cst(2, 9), cst(2, 10))) == [
        FINDING_NO_PASSING_PRE_USE_CHECK
    ]


def test_r21_recording_while_out_of_service_is_flagged_not_refused() -> None:
    device = new_device()
    checks = [check(device, cst(2, 8, 5))]
    device.report_fault(fault_id="f1", description="lens cracked", by="bob", at=cst(2, 10))
    findings = device_findings_for_recording(device, checks, cst(2, 11), cst(2, 11, 20))
    assert codes(findings) == [FINDING_DEVICE_OUT_OF_SERVICE]
    assert "lens cracked" in findings[0]


def test_r21_recording_overlapping_the_fault_report_is_flagged() -> None:
    device = new_device()
    checks = [check(device, cst(2, 8, 5))]
    device.report_fault(fault_id="f1", description="battery swelling", by="bob", at=cst(2, 10))
    assert codes(device_findings_for_recording(device, checks, cst(2, 9, 50), cst(2, 10, 10))) == [
        FINDING_DEVICE_OUT_OF_SERVICE
    ]


def test_r21_recording_before_the_fault_or_after_the_repair_is_not_flagged() -> None:
    device = new_device()
    before = check(device, cst(2, 8, 5))
    device.report_fault(fault_id="f1", description="broken", by="bob", at=cst(2, 10))
    device.record_repair(request_id=None, note="fixed", by="tech", at=cst(3, 7))
    after = check(device, cst(3, 8, 5))
    assert device_findings_for_recording(device, [before, after], cst(2, 9), cst(2, 9, 30)) == []
    assert device_findings_for_recording(device, [before, after], cst(3, 9), cst(3, 9, 30)) == []
    # ingested after the repair, recorded while it was broken: still flagged
    assert FINDING_DEVICE_OUT_OF_SERVICE in codes(
        device_findings_for_recording(device, [before, after], cst(2, 21), cst(2, 21, 5))
    )


def test_r20_unknown_device_is_a_finding() -> None:
    assert codes(device_findings_for_recording(None, [], cst(2, 9), cst(2, 10))) == [FINDING_UNKNOWN_DEVICE]


def test_findings_can_combine() -> None:
    device = new_device()
    device.report_fault(fault_id="f1", description="broken", by="bob", at=cst(2, 7))
    assert codes(device_findings_for_recording(device, [], cst(2, 9), cst(2, 10))) == [
        FINDING_DEVICE_OUT_OF_SERVICE,
        FINDING_NO_PASSING_PRE_USE_CHECK,
    ]
