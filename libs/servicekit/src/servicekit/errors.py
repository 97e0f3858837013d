"""The one error taxonomy of Lawtrail.

Service domains raise these (and subclasses of them, e.g. ``class CaseNotFound(NotFound)``); the gRPC
error interceptor turns them into status codes through ``STATUS_BY_ERROR`` — the only table that
decides which code a caller sees. The message is shown to the caller verbatim, so it must say what
was wrong and what to do about it ("case 'c-17' is closed: reopen it before recording an activity").

This module is pure Python on purpose: it is the only part of servicekit a domain may import
(import-linter enforces that domains import no framework), so it must not pull in grpc or pymongo.
The gRPC layer maps the status *names* below to ``grpc.StatusCode`` members.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "STATUS_BY_ERROR",
    "AlreadyExists",
    "ConcurrencyConflict",
    "DataLoss",
    "DomainError",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "status_name",
]


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: sent to the caller as a ``google.rpc.BadRequest`` field violation.

    ``field`` is the path in the request message as AIP-193 writes it (``parties[2].name``,
    ``clock_offset``); ``description`` says what is wrong with it and what to send instead.
    """

    field: str
    description: str
    reason: str = ""


# "parties[2].name: required" — the convention every message of a field error follows, so that the
# field can be named machine-readably even where the code raising it did not pass ``field=``.
_FIELD_PREFIX = re.compile(r"([a-z_][a-z0-9_]*(?:\[\d+\])?(?:\.[a-z_][a-z0-9_]*(?:\[\d+\])?)*): (.+)", re.S)
_REASON = re.compile(r"[A-Z][A-Z0-9_]{0,61}[A-Z0-9]")


def _reason_of(cls: type) -> str:
    """``CaseNotFound`` -> ``CASE_NOT_FOUND``: the default stable reason of an error class."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", cls.__name__).upper()


class DomainError(Exception):
    """A rule of the domain refused the request; the caller can act on ``message``.

    Raise one of the subclasses: the subclass decides the status code. A bare ``DomainError`` has no
    defined code and is reported as INTERNAL, because it means the author did not decide what kind
    of refusal it is.

    Machine-readable details (AIP-193), still without importing protobuf so domains stay pure:

    - ``reason``: a stable UPPER_SNAKE_CASE code a client may branch on (``R5_AV_COVERAGE_MISSING``);
      sent as ``google.rpc.ErrorInfo.reason``. Defaults to the class attribute ``REASON``, else the
      class name in UPPER_SNAKE_CASE (``CaseNotFound`` -> ``CASE_NOT_FOUND``). Changing one breaks
      clients: treat reasons as part of the contract.
    - ``field`` / ``violations``: the request fields at fault, sent as ``google.rpc.BadRequest``.
      An ``InvalidArgument`` whose message starts with ``"<field path>: "`` names that field even
      without ``field=``.
    - ``metadata``: extra string facts for ``ErrorInfo.metadata`` (``{"case_id": "c-17"}``).
    """

    REASON: str = ""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        reason: str | None = None,
        violations: Iterable[FieldViolation] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or type(self).REASON or _reason_of(type(self))
        if not _REASON.fullmatch(self.reason):
            raise ValueError(f"error reason {self.reason!r} is not UPPER_SNAKE_CASE of at most 63 characters")
        found = list(violations)
        if field is not None:
            found.insert(0, FieldViolation(field, message))
        self.violations: tuple[FieldViolation, ...] = tuple(found)
        self.metadata: Mapping[str, str] = MappingProxyType(dict(metadata or {}))

    def field_violations(self) -> tuple[FieldViolation, ...]:
        """The fields at fault: the explicit ones, else the ``"<field>: …"`` prefix of an InvalidArgument."""
        if self.violations or not isinstance(self, InvalidArgument):
            return self.violations
        match = _FIELD_PREFIX.fullmatch(self.message)
        return (FieldViolation(match.group(1), match.group(2)),) if match else ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidArgument(DomainError):
    """The request itself is malformed or out of range, whatever the state of the system."""


class NotFound(DomainError):
    """The record named by the request does not exist (or the caller's unit may not know it exists)."""


class AlreadyExists(DomainError):
    """A record with this identity already exists and the request would create it again."""


class FailedPrecondition(DomainError):
    """The request is well-formed but the record's current state forbids it (e.g. a closed case)."""


class PermissionDenied(DomainError):
    """The caller is authenticated but its roles, scopes or unit do not allow this."""


class Unauthenticated(DomainError):
    """No valid credentials: missing, malformed, expired or untrusted token."""


class ConcurrencyConflict(DomainError):
    """Someone else changed the record since it was read (optimistic concurrency); reload and retry."""


class ResourceExhausted(DomainError):
    """A quota or size limit was reached (upload quota, message size, rate)."""


class DataLoss(DomainError):
    """Stored content no longer matches what was recorded (e.g. a hash mismatch while reading)."""


# The one table. Keys are matched along the exception's MRO, so domain-specific subclasses
# inherit their parent's code. Values are grpc.StatusCode member names (kept as strings so this
# module stays free of grpc).
STATUS_BY_ERROR: Mapping[type[DomainError], str] = MappingProxyType(
    {
        InvalidArgument: "INVALID_ARGUMENT",
        NotFound: "NOT_FOUND",
        AlreadyExists: "ALREADY_EXISTS",
        FailedPrecondition: "FAILED_PRECONDITION",
        PermissionDenied: "PERMISSION_DENIED",
        Unauthenticated: "UNAUTHENTICATED",
        ConcurrencyConflict: "ABORTED",
        ResourceExhausted: "RESOURCE_EXHAUSTED",
        DataLoss: "DATA_LOSS",
    }
)


def status_name(error: DomainError) -> str:
    """The status code name for ``error``: its nearest class in ``STATUS_BY_ERROR``, else INTERNAL."""
    for cls in type(error).__mro__:
        if issubclass(cls, DomainError) and cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return "INTERNAL"
