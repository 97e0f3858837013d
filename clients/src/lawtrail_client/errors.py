"""Typed errors of the Lawtrail client: one class per gRPC status a Lawtrail service answers.

Every class is a `grpc.RpcError` with the usual `.code()` and `.details()`, so code written against plain
gRPC keeps working; callers that prefer types catch `NotFound`, `FailedPrecondition`, … instead.
The message is the server's, verbatim: it says what was wrong and what to do about it.

The machine-readable details of AIP-193 that every Lawtrail refusal carries (the
``grpc-status-details-bin`` trailer) are decoded too: ``reason`` (the stable ``ErrorInfo.reason``,
e.g. ``R5_AV_COVERAGE_MISSING``), ``domain``, ``metadata`` and ``field_violations`` (the
``BadRequest`` fields at fault, as ``(field, description)`` pairs) — branch on those, not on the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"

__all__ = [
    "Aborted",
    "AlreadyExists",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "LawtrailError",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "from_rpc_error",
]


class LawtrailError(grpc.RpcError):
    """A call to a Lawtrail service failed; `code` and `message` say how."""

    code_: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        code: grpc.StatusCode | None = None,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        if code is not None:
            self.code_ = code
        self.reason = reason
        self.domain = domain
        self.metadata = dict(metadata or {})
        self.field_violations = field_violations

    def code(self) -> grpc.StatusCode:
        return self.code_

    def details(self) -> str:
        return self.message

    def __str__(self) -> str:
        where = f" ({self.method})" if self.method else ""
        why = f" [{self.reason}]" if self.reason and self.reason != self.code_.name else ""
        return f"{self.code_.name}{where}{why}: {self.message}"


class InvalidArgument(LawtrailError):
    code_ = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(LawtrailError):
    code_ = grpc.StatusCode.NOT_FOUND


class AlreadyExists(LawtrailError):
    code_ = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(LawtrailError):
    code_ = grpc.StatusCode.FAILED_PRECONDITION


class PermissionDenied(LawtrailError):
    code_ = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(LawtrailError):
    code_ = grpc.StatusCode.UNAUTHENTICATED


class Aborted(LawtrailError):
    code_ = grpc.StatusCode.ABORTED


class ResourceExhausted(LawtrailError):
    code_ = grpc.StatusCode.RESOURCE_EXHAUSTED


class DataLoss(LawtrailError):
    code_ = grpc.StatusCode.DATA_LOSS


class Unavailable(LawtrailError):
    code_ = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(LawtrailError):
    code_ = grpc.StatusCode.DEADLINE_EXCEEDED


_BY_CODE: dict[grpc.StatusCode, type[LawtrailError]] = {
    cls.code_: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        PermissionDenied,
        Unauthenticated,
        Aborted,
        ResourceExhausted,
        DataLoss,
        Unavailable,
        DeadlineExceeded,
    )
}


def from_rpc_error(error: grpc.RpcError, method: str = "") -> LawtrailError:
    """The typed error for a failed call (`LawtrailError` itself for other codes)."""
    if isinstance(error, LawtrailError):
        return error
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else None) or str(error)
    extra = _rich_details(error)
    cls = _BY_CODE.get(code, LawtrailError)
    if cls is LawtrailError:
        return LawtrailError(details, method=method, code=code, **extra)  # type: ignore[arg-type]
    return cls(details, method=method, **extra)  # type: ignore[arg-type]


def _rich_details(error: grpc.RpcError) -> dict[str, object]:
    """ErrorInfo and BadRequest from the google.rpc.Status trailer, if the server sent one."""
    trailer: Any = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    raw = next((value for key, value in trailer or () if key == STATUS_DETAILS_KEY), None)
    if not isinstance(raw, bytes):
        return {}
    try:
        status = status_pb2.Status.FromString(raw)
    except Exception:  # a malformed trailer must not hide the error itself
        return {}
    found: dict[str, object] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            found.update(reason=info.reason, domain=info.domain, metadata=dict(info.metadata))
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found["field_violations"] = tuple((v.field, v.description) for v in bad.field_violations)
    return found
