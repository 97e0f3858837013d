"""The refusals of media-svc, as servicekit's error taxonomy (ADR 0002) maps them to status codes.

Pure Python. Subclasses exist where a caller (or a test) needs to tell one refusal from another of
the same status; the message always says what to do.
"""

from __future__ import annotations

from servicekit.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)


class RecordingNotFound(NotFound):
    pass


class DeviceNotFound(NotFound):
    pass


class DeviceAlreadyRegistered(AlreadyExists):
    pass


class UploadTooLarge(ResourceExhausted):
    pass


class HashMismatch(InvalidArgument):
    pass


class UploadIncomplete(FailedPrecondition):
    pass


class TooManyBytes(InvalidArgument):
    pass


class ContentAlreadyStored(AlreadyExists):
    pass


class IntegrityFailure(DataLoss):
    """R23-2: stored content does not match its recorded SHA-256; nothing unverified was released."""
