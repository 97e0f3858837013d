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
from servicekit.auth import current_actor
from servicekit.errors import InvalidArgument
from servicekit.policy import rpc_actions, rpc_role_policy

from retention_svc.adapters.archive import batch_message
from retention_svc.adapters.copy_mapping import copy_message
from retention_svc.adapters.disposal import order_message
from retention_svc.adapters.event_mapping import retention_message, stamp
from retention_svc.domain.copies import CopyFormat, Progress
from retention_svc.domain.permissions import RETENTION, Action
from retention_svc.service_layer.archive import ArchiveHandlers
from retention_svc.service_layer.copies import CopyHandlers
from retention_svc.service_layer.disposal import DisposalHandlers
from retention_svc.service_layer.handlers import RetentionHandlers

SERVICE = api.DESCRIPTOR.services_by_name["RetentionService"]

METHOD_ACTIONS: dict[str, Action] = {
    "ExplainRetention": Action.READ_RETENTION,
    "ExtendRetention": Action.EXTEND_RETENTION,
    "CreateOfflineCopy": Action.MAKE_OFFLINE_COPY,
    "ListOfflineCopies": Action.READ_RETENTION,
    "CreateArchiveBatch": Action.ARCHIVE_BACKUP,
    "VerifyArchiveBatch": Action.VERIFY_ARCHIVE,
    "ListArchiveBatches": Action.READ_RETENTION,
    "ListUnbackedRecordings": Action.READ_RETENTION,
    "ListDisposalCandidates": Action.READ_RETENTION,
    "ProposeDisposal": Action.DISPOSE,
    "ApproveDisposal": Action.DISPOSE,
}
_FORMATS = {
    pb.COPY_FORMAT_UNSPECIFIED: None,
    pb.COPY_FORMAT_ISO: CopyFormat.ISO,
    pb.COPY_FORMAT_FOLDER: CopyFormat.FOLDER,
}


RPC_ACTIONS = rpc_actions(SERVICE.full_name, {m: (RETENTION, a) for m, a in METHOD_ACTIONS.items()})


def role_policy() -> dict[str, frozenset[str]]:
    """Full method name -> roles allowed to call it (servicekit refuses any method not listed)."""
    return rpc_role_policy(RPC_ACTIONS)


caller = current_actor  # the verified caller as the domain's Actor (never from the request)


def _one_record(recording_id: str, case_id: str) -> None:
    if bool(recording_id) == bool(case_id):
        raise InvalidArgument("give exactly one of recording_id and case_id")


class RetentionApi(api_grpc.RetentionServiceServicer):
    def __init__(
        self,
        handlers: RetentionHandlers,
        copies: CopyHandlers,
        archive: ArchiveHandlers,
        disposal: DisposalHandlers,
    ) -> None:
        self.handlers = handlers
        self.copies = copies
        self.archive = archive
        self.disposal = disposal

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

    async def CreateArchiveBatch(
        self, request: api.CreateArchiveBatchRequest, context: Any
    ) -> api.CreateArchiveBatchResponse:
        batch = await self.archive.create(caller(), request.unit, request.month)
        return api.CreateArchiveBatchResponse(batch=batch_message(batch))

    async def VerifyArchiveBatch(
        self, request: api.VerifyArchiveBatchRequest, context: Any
    ) -> api.VerifyArchiveBatchResponse:
        batch = await self.archive.verify(caller(), request.batch_id)
        return api.VerifyArchiveBatchResponse(batch=batch_message(batch))

    async def ListArchiveBatches(
        self, request: api.ListArchiveBatchesRequest, context: Any
    ) -> api.ListArchiveBatchesResponse:
        batches = await self.archive.list_batches(caller(), request.unit)
        return api.ListArchiveBatchesResponse(batches=[batch_message(b) for b in batches])

    async def ListUnbackedRecordings(
        self, request: api.ListUnbackedRecordingsRequest, context: Any
    ) -> api.ListUnbackedRecordingsResponse:
        recordings = await self.archive.list_unbacked(caller(), request.unit)
        return api.ListUnbackedRecordingsResponse(
            recordings=[
                pb.UnbackedRecording(
                    recording_id=r.recording_id,
                    unit=r.unit,
                    ingested_at=stamp(r.ingested_at),
                    size_bytes=r.size_bytes,
                )
                for r in recordings
            ]
        )

    async def ListDisposalCandidates(
        self, request: api.ListDisposalCandidatesRequest, context: Any
    ) -> api.ListDisposalCandidatesResponse:
        candidates = await self.disposal.candidates(caller(), request.unit)
        return api.ListDisposalCandidatesResponse(candidates=[retention_message(r) for r in candidates])

    async def ProposeDisposal(
        self, request: api.ProposeDisposalRequest, context: Any
    ) -> api.ProposeDisposalResponse:
        order = await self.disposal.propose(
            caller(), request.unit, list(request.recording_ids), request.reason
        )
        return api.ProposeDisposalResponse(order=order_message(order))

    async def ApproveDisposal(
        self, request: api.ApproveDisposalRequest, context: Any
    ) -> api.ApproveDisposalResponse:
        order = await self.disposal.approve(caller(), request.order_id)
        return api.ApproveDisposalResponse(order=order_message(order))
