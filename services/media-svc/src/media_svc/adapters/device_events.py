"""Domain device events → the published protobuf messages (device_events.proto), one place.

Key and CloudEvents subject = the device number, so one device's events stay ordered.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.common.v1 import common_pb2
from lawtrail.media.v1 import device_events_pb2
from servicekit.messaging.outbox import OutboundEvent

from media_svc.domain.devices import (
    DeviceChecked,
    DeviceEvent,
    DeviceFaultReported,
    DeviceMaintained,
    DeviceRegistered,
    DeviceReturnedToService,
)

TOPIC = "lawtrail.media.v1.events"


def timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def duration(seconds: float) -> Duration:
    d = Duration()
    d.FromTimedelta(timedelta(seconds=seconds))
    return d


def attribution(subject: str, unit: str, at: datetime) -> common_pb2.Attribution:
    return common_pb2.Attribution(subject=subject, unit=unit, at=timestamp(at))


def to_message(event: DeviceEvent) -> Message:
    match event:
        case DeviceRegistered():
            return device_events_pb2.DeviceRegistered(
                device_number=event.device_number,
                unit=event.unit,
                model=event.model,
                registered=attribution(event.by, event.unit, event.at),
            )
        case DeviceChecked(check=c):
            return device_events_pb2.DeviceChecked(
                device_number=c.device_number,
                unit=c.unit,
                check_id=c.check_id,
                battery_percent=c.battery_percent,
                free_storage_bytes=c.free_storage_bytes,
                clock_offset=duration(c.clock_offset_s),
                shift_start=timestamp(c.shift_start),
                shift_end=timestamp(c.shift_end),
                passed=c.passed,
                failures=list(c.failures),
                checked=attribution(c.checked_by, c.unit, c.checked_at),
            )
        case DeviceMaintained(maintenance=m):
            return device_events_pb2.DeviceMaintained(
                device_number=m.device_number,
                unit=m.unit,
                maintenance_id=m.maintenance_id,
                description=m.description,
                performed=attribution(m.performed_by, m.unit, m.performed_at),
            )
        case DeviceFaultReported(fault=f):
            return device_events_pb2.DeviceFaultReported(
                device_number=event.device_number,
                unit=event.unit,
                fault_id=f.fault_id,
                description=f.description,
                reported=attribution(f.reported_by, event.unit, f.reported_at),
            )
        case DeviceReturnedToService(fault=f):
            assert f.repaired_at is not None
            assert f.repaired_by is not None
            return device_events_pb2.DeviceReturnedToService(
                device_number=event.device_number,
                unit=event.unit,
                fault_id=f.fault_id,
                repair_note=f.repair_note or "",
                out_of_service_since=timestamp(f.reported_at),
                repaired=attribution(f.repaired_by, event.unit, f.repaired_at),
            )
    raise TypeError(f"not a device event: {event!r}")


def device_number_of(event: DeviceEvent) -> str:
    match event:
        case DeviceChecked(check=c):
            return c.device_number
        case DeviceMaintained(maintenance=m):
            return m.device_number
        case _:
            return event.device_number


def to_outbound(events: Iterable[DeviceEvent]) -> Sequence[OutboundEvent]:
    return [OutboundEvent(TOPIC, to_message(e), subject=device_number_of(e)) for e in events]
