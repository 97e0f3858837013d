"""Input checks shared by the commands. Each failure is an `InvalidArgument` whose message names the
field as the API names it and says what a valid value looks like, so a person can fix the request.

Texts are stored as given (no trimming) but must not be blank, and may not contain control
characters (NUL is unstorable in the database; other controls are never meaningful in a record);
multi-line texts may contain newlines and tabs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from servicekit.clock import to_ms
from servicekit.errors import InvalidArgument

MAX_ID_LEN = 64
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]*")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

# Reported times may be ahead of the server clock by this much (device and client clocks drift).
CLOCK_SKEW = timedelta(minutes=5)
# No enforcement record predates this (guards against unset or epoch timestamps).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)

E = TypeVar("E", bound=StrEnum)


def text(field: str, value: str, *, max_len: int, required: bool = True, multiline: bool = False) -> str:
    """A free text of at most `max_len` characters; required ones must not be blank."""
    if not value or not value.strip():
        if required:
            raise InvalidArgument(f"{field}: required (1–{max_len} characters, not blank)")
        if value:
            raise InvalidArgument(
                f"{field}: must not be blank; leave it empty or write 1–{max_len} characters"
            )
        return value
    if len(value) > max_len:
        raise InvalidArgument(f"{field}: {len(value)} characters is too long; at most {max_len} allowed")
    bad = (_CONTROL_MULTILINE if multiline else _CONTROL).search(value)
    if bad:
        raise InvalidArgument(
            f"{field}: contains the control character U+{ord(bad.group()):04X} at position {bad.start()}; "
            + ("only newlines and tabs are allowed" if multiline else "use plain single-line text")
        )
    return value


def identifier(field: str, value: str, *, required: bool = True) -> str:
    """An id such as a unit, officer, case or request id."""
    if not value:
        if required:
            raise InvalidArgument(
                f"{field}: required (1–{MAX_ID_LEN} characters: letters, digits and . _ : @ -)"
            )
        return value
    if len(value) > MAX_ID_LEN:
        raise InvalidArgument(f"{field}: {len(value)} characters is too long; at most {MAX_ID_LEN} allowed")
    if not ID_PATTERN.fullmatch(value):
        raise InvalidArgument(
            f"{field}: {value!r} is not a valid id; use letters, digits and . _ : @ - "
            "(starting with a letter or digit)"
        )
    return value


def identifiers(field: str, values: Sequence[str], *, min_items: int, max_items: int) -> tuple[str, ...]:
    """A list of distinct ids."""
    if len(values) < min_items:
        raise InvalidArgument(f"{field}: at least {min_items} required")
    if len(values) > max_items:
        raise InvalidArgument(f"{field}: {len(values)} given; at most {max_items} allowed")
    for i, value in enumerate(values):
        identifier(f"{field}[{i}]", value)
    if len(set(values)) != len(values):
        dup = next(v for v in values if list(values).count(v) > 1)
        raise InvalidArgument(f"{field}: {dup!r} is listed more than once")
    return tuple(values)


def required(field: str, value: E | None, enum_type: type[E]) -> E:
    """A required enum value (the API's zero value arrives as None)."""
    if value is None:
        allowed = ", ".join(m.value for m in enum_type)
        raise InvalidArgument(f"{field}: required (one of {allowed})")
    return value


def instant(field: str, value: datetime | None, *, now: datetime, allow_future: bool = False) -> datetime:
    """A reported instant: set, timezone-aware, not before 2000, not in the future (beyond clock skew)."""
    if value is None:
        raise InvalidArgument(f"{field}: required (a UTC timestamp)")
    if value.tzinfo is None:
        raise InvalidArgument(f"{field}: must carry a time zone")
    if value < EARLIEST:
        raise InvalidArgument(f"{field}: {value.isoformat()} is before {EARLIEST.date()}; is it unset?")
    if not allow_future and value > now + CLOCK_SKEW:
        raise InvalidArgument(
            f"{field}: {value.isoformat()} is in the future (server time {now.isoformat()}); "
            "record things that have happened"
        )
    # The database keeps milliseconds; so does every record, so stored and published facts are equal.
    return to_ms(value)


def calendar_date(field: str, value: str, *, today: date) -> str:
    """A calendar date `YYYY-MM-DD`, not after `today` (+1 day for time zone differences)."""
    if not value:
        raise InvalidArgument(f"{field}: required (a date as YYYY-MM-DD)")
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(f"{field}: {value!r} is not a date in the form YYYY-MM-DD") from None
    if len(value) != 10:
        raise InvalidArgument(f"{field}: {value!r} is not a date in the form YYYY-MM-DD")
    if parsed < EARLIEST.date():
        raise InvalidArgument(f"{field}: {value} is before {EARLIEST.date()}")
    if parsed > today + timedelta(days=1):
        raise InvalidArgument(f"{field}: {value} is in the future (today is {today.isoformat()})")
    return value


def sha256_hex(field: str, value: str) -> str:
    if not SHA256_PATTERN.fullmatch(value):
        raise InvalidArgument(f"{field}: must be 64 lowercase hexadecimal characters (a SHA-256 digest)")
    return value
