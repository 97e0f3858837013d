"""Wire-level value checks of every request, once for all services (no servicer repeats them).

A ``google.protobuf.Timestamp`` or ``Duration`` can carry any int64 seconds and int32 nanos on the
wire, but protobuf's own conversions (``ToDatetime``, ``ToTimedelta``) overflow or misbehave outside
the ranges the well-known types define. A request carrying such a value is malformed whatever the
service does with it, so it is refused here with INVALID_ARGUMENT naming the field path, before any
servicer runs, instead of surfacing as INTERNAL from deep inside a handler.

The walk follows the request's descriptor: only set fields are visited (``ListFields``) and only into
message types that can (transitively) contain a Timestamp or Duration, decided once per type, so an
upload chunk of bytes costs one dictionary look-up.

A string carrying NUL (U+0000) is refused the same way, whatever the field: no database behind the
services can store it (FerretDB refuses it; MongoDB truncates keys at it), and no identifier or text
of the domain contains it, so it would otherwise surface as INTERNAL from the storage layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from servicekit.errors import FieldViolation, InvalidArgument

__all__ = ["check_request", "find_nul_strings", "find_violations"]

TIMESTAMP = "google.protobuf.Timestamp"
DURATION = "google.protobuf.Duration"

# The ranges defined by google/protobuf/timestamp.proto and duration.proto.
MIN_TIMESTAMP_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_TIMESTAMP_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
MAX_DURATION_SECONDS = 315_576_000_000  # about 10,000 years
MAX_NANOS = 999_999_999

_CHECKED = (TIMESTAMP, DURATION)
_holds_checked: dict[str, bool] = {}


def _is_message(field: Any) -> bool:
    return bool(field.type == FieldDescriptor.TYPE_MESSAGE)


# Descriptors are typed Any: the stubs mix the pure-Python and upb descriptor classes.
def _may_hold(
    descriptor: Any,
    holds_here: Callable[[Any], bool],
    cache: dict[str, bool],
    visiting: frozenset[str] = frozenset(),
) -> bool:
    """Whether a message of this type can contain what ``holds_here`` recognises anywhere (cached)."""
    name = descriptor.full_name
    cached = cache.get(name)
    if cached is not None:
        return cached
    if holds_here(descriptor):
        cache[name] = True
        return True
    if name in visiting:  # a recursive type: decided by the outer call
        return False
    result = any(
        _is_message(field) and _may_hold(field.message_type, holds_here, cache, visiting | {name})
        for field in descriptor.fields
    )
    if not visiting:  # only cache decisions made without a cycle cut short
        cache[name] = result
    return result


def _may_hold_checked(descriptor: Any) -> bool:
    """Whether a message of this type can contain a Timestamp or Duration anywhere (cached)."""
    return _may_hold(descriptor, lambda d: d.full_name in _CHECKED, _holds_checked)


_holds_string: dict[str, bool] = {}


def _may_hold_string(descriptor: Any) -> bool:
    """Whether a message of this type can contain a string field anywhere (cached): an upload chunk of
    bytes is then skipped with one dictionary look-up, as for Timestamps."""
    return _may_hold(
        descriptor,
        lambda d: any(f.type == FieldDescriptor.TYPE_STRING for f in d.fields),
        _holds_string,
    )


def _timestamp_problem(seconds: int, nanos: int) -> str | None:
    if not MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS:
        return (
            f"timestamp seconds {seconds} is outside 0001-01-01T00:00:00Z..9999-12-31T23:59:59Z "
            f"({MIN_TIMESTAMP_SECONDS}..{MAX_TIMESTAMP_SECONDS})"
        )
    if not 0 <= nanos <= MAX_NANOS:
        return f"timestamp nanos {nanos} is outside 0..{MAX_NANOS}"
    return None


def _duration_problem(seconds: int, nanos: int) -> str | None:
    if not -MAX_DURATION_SECONDS <= seconds <= MAX_DURATION_SECONDS:
        return f"duration seconds {seconds} is outside ±{MAX_DURATION_SECONDS} (about 10,000 years)"
    if not -MAX_NANOS <= nanos <= MAX_NANOS:
        return f"duration nanos {nanos} is outside ±{MAX_NANOS}"
    if (seconds > 0 and nanos < 0) or (seconds < 0 and nanos > 0):
        return f"duration seconds {seconds} and nanos {nanos} must have the same sign"
    return None


def find_violations(message: Message, prefix: str = "") -> Iterator[FieldViolation]:
    """Every out-of-range Timestamp or Duration in ``message``, with its AIP-193 field path."""
    descriptor: Any = message.DESCRIPTOR
    if not _may_hold_checked(descriptor):
        return
    name = descriptor.full_name
    if name in _CHECKED:
        check = _timestamp_problem if name == TIMESTAMP else _duration_problem
        seconds: Any = getattr(message, "seconds")  # noqa: B009 - typed as Message here
        nanos: Any = getattr(message, "nanos")  # noqa: B009
        problem = check(seconds, nanos)
        if problem is not None:
            yield FieldViolation(prefix or "(request)", problem, reason="OUT_OF_RANGE")
        return
    field: Any
    for field, value in message.ListFields():
        if not _is_message(field) or not _may_hold_checked(field.message_type):
            continue
        path = f"{prefix}.{field.name}" if prefix else field.name
        if field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if _is_message(value_field):
                for key, item in value.items():
                    yield from find_violations(item, f"{path}[{key!r}]")
        elif field.is_repeated:
            for index, item in enumerate(value):
                yield from find_violations(item, f"{path}[{index}]")
        else:
            yield from find_violations(value, path)


def _nul_problem(path: str, value: str) -> FieldViolation | None:
    at = value.find("\x00")
    if at < 0:
        return None
    return FieldViolation(
        path, f"contains NUL (U+0000) at position {at}; text cannot hold it", "INVALID_TEXT"
    )


def find_nul_strings(message: Message, prefix: str = "") -> Iterator[FieldViolation]:
    """Every string field (map keys and values included) of ``message`` that contains NUL."""
    if not _may_hold_string(message.DESCRIPTOR):
        return
    field: Any
    for field, value in message.ListFields():
        path = f"{prefix}.{field.name}" if prefix else field.name
        if field.type == FieldDescriptor.TYPE_STRING:
            for index, item in enumerate(value) if field.is_repeated else [(None, value)]:
                yield from _nul_in(path if index is None else f"{path}[{index}]", field, item)
        elif _is_message(field) and field.message_type.GetOptions().map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                yield from _nul_in(f"{path}[{key!r}]", key_field, key)
                yield from _nul_in(f"{path}[{key!r}]", value_field, item)
        elif _is_message(field):
            for index, item in enumerate(value) if field.is_repeated else [(None, value)]:
                yield from find_nul_strings(item, path if index is None else f"{path}[{index}]")


def _nul_in(path: str, field: Any, value: Any) -> Iterator[FieldViolation]:
    """One scalar or message value of ``field`` (a map's key or value, or a singular string)."""
    if field.type == FieldDescriptor.TYPE_STRING:
        problem = _nul_problem(path, value)
        if problem is not None:
            yield problem
    elif _is_message(field):
        yield from find_nul_strings(value, path)


def check_request(message: Any) -> None:
    """Raise InvalidArgument naming every out-of-range Timestamp/Duration field of ``message`` and
    every string field that holds NUL."""
    if not isinstance(message, Message):
        return
    violations = [*find_violations(message), *find_nul_strings(message)]
    if violations:
        first = violations[0]
        more = f" (and {len(violations) - 1} more field(s))" if len(violations) > 1 else ""
        raise InvalidArgument(f"{first.field}: {first.description}{more}", violations=violations)
