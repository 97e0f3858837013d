"""The gRPC servicer of `lawtrail.retention.v1.RetentionService`: protobuf -> use cases -> protobuf.

No rules live here. The caller comes from servicekit's authentication interceptor (never from the
request); domain errors become status codes in servicekit's error interceptor. The role policy is derived
from the domain's R8 table (domain/permissions.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

from lawtrail.retention.v1 import retention_pb2 as pb
from lawtrail.retention.v1 import retention_service_pb2 as api
from lawtrail.retention.v1 import retention_service_pb2_grpc as api_grpc
from servicekit.auth import current_principal
from servicekit.errors import InvalidArgument

from retention_svc.adapters.copy_mapping import copy_message
from retention_svc.adapters.event_mapping import retention_message
from retention_svc.domain.copies import CopyFormat, Progress
from retention_svc.domain.permissions import ROLES_FOR, Action, Actor
from retention_svc.service_layer.copies import CopyHandlers
from retention_svc.service_layer.handlers import RetentionHandlers

SERVICE = api.DESCRIPTOR.services_by_name["RetentionService"]

METHOD_ACTIONS: dict[str, Action] = {
    "ExplainRetention": Action.READ_RETENTION,
    "ExtendRetention": Action.EXTEND_RETENTION,
    "CreateOfflineCopy": Action.MAKE_OFFLINE_COPY,
    "ListOfflineCopies": Action.READ_RETENTION,
}
_FORMATS = {
    pb.COPY_FORMAT_UNSPECIFIED: None,
    pb.COPY_FORMAT_ISO: CopyFormat.ISO,
    pb.COPY_FORMAT_FOLDER: CopyFormat.FOLDER,
}


def role_policy() -> dict[str, frozenset[str]]:
    """Full method name -> roles allowed to call it (servicekit refuses any method not listed)."""
    return {f"/{SERVICE.full_name}/{method}": ROLES_FOR[action] for method, action in METHOD_ACTIONS.items()}


def caller() -> Actor:
    principal = current_principal()
    return Actor(principal.subject, principal.unit, frozenset(principal.roles))


def _one_record(recording_id: str, case_id: str) -> None:
    if bool(recording_id) == bool(case_id):
        raise InvalidArgument("give exactly one of recording_id and case_id")


class RetentionApi(api_grpc.RetentionServiceServicer):
    def __init__(self, handlers: RetentionHandlers, copies: CopyHandlers) -> None:
        self.handlers = handlers
        self.copies = copies

    async def ExplainRetention(
        self, request: api.ExplainRetentionRequest, context: Any
    ) -> api.ExplainRetentionResponse:
        _one_record(request.recording_id, request.case_id)
        if request.recording_id:
            record: Any = await self.handlers.explain_recording(caller(), request.recording_id)
        else:
            record = await self.handlers.explain_case(caller(), request.case_id)
        return api.ExplainRetentionResponse(retention=retention_message(record))

    async def ExtendRetention(
        self, request: api.ExtendRetentionRequest, context: Any
    ) -> api.ExtendRetentionResponse:
        _one_record(request.recording_id, request.case_id)
        if not request.HasField("until"):
            raise InvalidArgument("until is required: the new retention date (UTC)")
        until = request.until.ToDatetime(tzinfo=UTC)
        until = until.replace(microsecond=until.microsecond // 1000 * 1000)
        if request.recording_id:
            record: Any = await self.handlers.extend_recording(
                caller(), request.recording_id, until, request.reason
            )
        else:
            record = await self.handlers.extend_case(caller(), request.case_id, until, request.reason)
        return api.ExtendRetentionResponse(retention=retention_message(record))

    async def CreateOfflineCopy(
        self, request: api.CreateOfflineCopyRequest, context: Any
    ) -> AsyncIterator[api.CreateOfflineCopyResponse]:
        if request.format not in _FORMATS:
            raise InvalidArgument(f"format {request.format} is not a CopyFormat")
        async for part in self.copies.create(
            caller(), request.case_id, _FORMATS[request.format], request.storage_location
        ):
            if isinstance(part, Progress):
                yield api.CreateOfflineCopyResponse(
                    progress=api.CopyProgress(
                        bytes_done=part.bytes_done,
                        bytes_total=part.bytes_total,
                        files_done=part.files_done,
                        files_total=part.files_total,
                        step=part.step,
                    )
                )
            else:
                yield api.CreateOfflineCopyResponse(copy=copy_message(part))

    async def ListOfflineCopies(
        self, request: api.ListOfflineCopiesRequest, context: Any
    ) -> api.ListOfflineCopiesResponse:
        copies = await self.copies.list_copies(caller(), request.case_id)
        return api.ListOfflineCopiesResponse(copies=[copy_message(c) for c in copies])
