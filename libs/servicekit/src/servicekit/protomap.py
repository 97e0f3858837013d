"""Time, duration and attribution <-> their protobuf messages, for every service's adapters (one place).

Times read from a request are checked (a Timestamp out of the representable range is INVALID_ARGUMENT
naming the field, never an exception from deep inside) and truncated to milliseconds
(`servicekit.clock.to_ms`), the precision the database stores. Domains never see protobuf: the servicer
and the event mapping call these.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.common.v1 import common_pb2

from servicekit.clock import to_ms
from servicekit.errors import InvalidArgument

__all__ = ["attribution_pb", "duration_pb", "optional_duration", "optional_time", "time_from", "timestamp_pb"]

_MIN_SECONDS, _MAX_SECONDS = -62135596800, 253402300799  # 0001-01-01 .. 9999-12-31 (RFC 3339)
_MAX_DURATION_SECONDS = 315576000000  # what google.protobuf.Duration allows


def timestamp_pb(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def time_from(stamp: Timestamp, field: str) -> datetime:
    """The UTC datetime (to the millisecond) of a Timestamp read from a request field."""
    if not (_MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS) or not (0 <= stamp.nanos < 1_000_000_000):
        raise InvalidArgument(f"{field}: not a valid timestamp")
    return to_ms(stamp.ToDatetime(tzinfo=UTC))


def optional_time(message: Any, field: str, *, name: str = "") -> datetime | None:
    """The datetime of an optional Timestamp field of `message` (None when unset); errors name `name`
    (default: `field`)."""
    if not message.HasField(field):
        return None
    return time_from(getattr(message, field), name or field)


def duration_pb(value: timedelta) -> Duration:
    out = Duration()
    out.FromTimedelta(value)
    return out


def optional_duration(message: Any, field: str, *, name: str = "") -> timedelta | None:
    """The timedelta of an optional Duration field (None when unset); an invalid one is INVALID_ARGUMENT."""
    if not message.HasField(field):
        return None
    value: Duration = getattr(message, field)
    if abs(value.seconds) > _MAX_DURATION_SECONDS or abs(value.nanos) >= 1_000_000_000:
        raise InvalidArgument(f"{name or field}: not a valid duration")
    return value.ToTimedelta()


def attribution_pb(subject: str, unit: str, at: datetime) -> common_pb2.Attribution:
    """R4: who did something, in which unit, at which server time."""
    return common_pb2.Attribution(subject=subject, unit=unit, at=timestamp_pb(at))
