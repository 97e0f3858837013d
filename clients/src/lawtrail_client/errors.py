"""Typed errors of the Lawtrail client: one class per gRPC status a Lawtrail service answers.

Every class is a `grpc.RpcError` with the usual `.code()` and `.details()`, so code written against plain
gRPC keeps working; callers that prefer types catch `NotFound`, `FailedPrecondition`, … instead.
The message is the server's, verbatim: it says what was wrong and what to do about it.
"""

from __future__ import annotations

import grpc

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

    def __init__(self, message: str, *, method: str = "", code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        if code is not None:
            self.code_ = code

    def code(self) -> grpc.StatusCode:
        return self.code_

    def details(self) -> str:
        return self.message

    def __str__(self) -> str:
        where = f" ({self.method})" if self.method else ""
        return f"{self.code_.name}{where}: {self.message}"


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
    cls = _BY_CODE.get(code, LawtrailError)
    if cls is LawtrailError:
        return LawtrailError(details, method=method, code=code)
    return cls(details, method=method)
