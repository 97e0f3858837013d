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

from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "STATUS_BY_ERROR",
    "AlreadyExists",
    "ConcurrencyConflict",
    "DataLoss",
    "DomainError",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "status_name",
]


class DomainError(Exception):
    """A rule of the domain refused the request; the caller can act on ``message``.

    Raise one of the subclasses: the subclass decides the status code. A bare ``DomainError`` has no
    defined code and is reported as INTERNAL, because it means the author did not decide what kind
    of refusal it is.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

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
