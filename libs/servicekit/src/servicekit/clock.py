"""Server time: every record's time is set by the server, in UTC, to the millisecond.

Pure Python. Milliseconds because that is what MongoDB (and FerretDB) keep: a time truncated before it
is stored reads back equal, so an aggregate compares equal to itself after a round trip. Handlers take
a `Clock` (tests pass a fixed or stepping one); production passes `utc_now`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "to_ms", "utc_now"]

Clock = Callable[[], datetime]


def to_ms(value: datetime) -> datetime:
    """`value` in UTC, truncated to milliseconds (what the database keeps). A naive datetime is refused
    (ValueError): its time zone would be a guess."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is required, got naive {value.isoformat()}")
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def utc_now() -> datetime:
    """Now, in UTC, truncated to milliseconds."""
    return to_ms(datetime.now(UTC))
