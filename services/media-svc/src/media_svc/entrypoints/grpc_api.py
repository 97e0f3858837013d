"""The gRPC servicers of `lawtrail.media.v1.RecordingService` and `DeviceService`: protobuf -> commands,
results -> protobuf, nothing else.

No rules live here. The caller comes from servicekit's authentication interceptor (never from the
request); domain errors become status codes in servicekit's error interceptor (one table). The role
policy the server enforces before a call reaches these classes is derived from the domain's R8
declarations (`domain/permissions.py`); the unit is checked by the handlers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, cast

import grpc
from lawtrail.common.v1 import common_pb2
from lawtrail.media.v1 import device_service_pb2 as dpb
from lawtrail.media.v1 import device_service_pb2_grpc, recording_service_pb2_grpc
from lawtrail.media.v1 import recording_service_pb2 as pb
from servicekit.auth import current_actor
from servicekit.errors import InvalidArgument
from servicekit.policy import rpc_actions, rpc_role_policy
from servicekit.protomap import duration_pb, optional_duration, optional_time

from media_svc.adapters.grpc_wire import chunk_response
from media_svc.adapters.proto_mapping import (
    MEDIA_KIND_FROM_PB,
    MEDIA_KIND_TO_PB,
    check_message,
    decode_device_page_token,
    device_message,
    encode_device_page_token,
    fault_message,
    gap_message,
    maintenance_message,
    manifest_from,
    recording_message,
    scrub_message,
)
from media_svc.adapters.verified_reader import FramedChunk
from media_svc.domain import commands as c
from media_svc.domain.permissions import DEVICES, RECORDINGS, DeviceAction, RecordingAction
from media_svc.service_layer.handlers import MediaHandlers
from media_svc.service_layer.ports import SearchQuery

Context = grpc.aio.ServicerContext[Any, Any]

RECORDING_SERVICE = pb.DESCRIPTOR.services_by_name["RecordingService"]
DEVICE_SERVICE = dpb.DESCRIPTOR.services_by_name["DeviceService"]

# Which R8 action each RPC is; the server admits a call only from a role that may take the action.
RECORDING_METHODS: dict[str, RecordingAction] = {
    "BeginUpload": RecordingAction.UPLOAD,
    "UploadRecording": RecordingAction.UPLOAD,
    "GetRecording": RecordingAction.READ,
    "SearchRecordings": RecordingAction.READ,
    "LinkRecording": RecordingAction.LINK,
    "ExplainInterruption": RecordingAction.EXPLAIN_INTERRUPTION,
    "ListUnexplainedGaps": RecordingAction.READ,
    "DownloadRecording": RecordingAction.DOWNLOAD,
    "StartFixityScrub": RecordingAction.START_FIXITY_SCRUB,
    "GetFixityScrubStatus": RecordingAction.READ_FIXITY_SCRUB,
}
DEVICE_METHODS: dict[str, DeviceAction] = {
    "RegisterDevice": DeviceAction.REGISTER,
    "RecordPreUseCheck": DeviceAction.RECORD_PRE_USE_CHECK,
    "RecordMaintenance": DeviceAction.RECORD_MAINTENANCE,
    "ReportFault": DeviceAction.REPORT_FAULT,
    "RecordRepair": DeviceAction.RECORD_REPAIR,
    "GetDevice": DeviceAction.READ,
    "ListDevices": DeviceAction.READ,
    "ListPreUseChecks": DeviceAction.READ,
}


RPC_ACTIONS = {
    **rpc_actions(RECORDING_SERVICE.full_name, {m: (RECORDINGS, a) for m, a in RECORDING_METHODS.items()}),
    **rpc_actions(DEVICE_SERVICE.full_name, {m: (DEVICES, a) for m, a in DEVICE_METHODS.items()}),
}


def role_policy() -> dict[str, frozenset[str]]:
    """Full method name -> roles (or token scopes) allowed to call it (servicekit refuses any other)."""
    return rpc_role_policy(RPC_ACTIONS)


caller = current_actor  # the verified caller as the domain's Actor (never from the request)


class RecordingApi(recording_service_pb2_grpc.RecordingServiceServicer):
    def __init__(self, handlers: MediaHandlers) -> None:
        self.handlers = handlers

    async def BeginUpload(self, request: pb.BeginUploadRequest, context: Context) -> pb.BeginUploadResponse:
        if not request.HasField("manifest"):
            raise InvalidArgument("manifest is required")
        offer = await self.handlers.begin_upload(c.BeginUpload(manifest_from(request.manifest)), caller())
        response = pb.BeginUploadResponse(
            resume_offset=offer.resume_offset, max_chunk_bytes=offer.max_chunk_bytes
        )
        if offer.recording is not None:
            response.recording.CopyFrom(recording_message(offer.recording))
        return response

    async def UploadRecording(
        self, request_iterator: AsyncIterator[pb.UploadRecordingRequest], context: Context
    ) -> pb.UploadRecordingResponse:
        actor = caller()
        requests = aiter(request_iterator)
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            raise InvalidArgument("the upload stream is empty: send a header first, then chunks") from None
        if first.WhichOneof("part") != "header" or not first.header.HasField("manifest"):
            raise InvalidArgument("the first message of an upload must be the header with the manifest")
        cmd = c.UploadRecording(manifest_from(first.header.manifest), first.header.offset)

        async def chunks() -> AsyncIterator[bytes]:
            async for message in requests:
                if message.WhichOneof("part") != "chunk":
                    raise InvalidArgument(
                        "only the first message of an upload may be a header; then send chunks"
                    )
                yield message.chunk

        result = await self.handlers.upload_recording(cmd, chunks(), actor)
        return pb.UploadRecordingResponse(
            recording=recording_message(result.recording), already_stored=result.already_stored
        )

    async def GetRecording(
        self, request: pb.GetRecordingRequest, context: Context
    ) -> pb.GetRecordingResponse:
        recording = await self.handlers.get_recording(request.recording_id, caller())
        return pb.GetRecordingResponse(recording=recording_message(recording))

    async def SearchRecordings(
        self, request: pb.SearchRecordingsRequest, context: Context
    ) -> pb.SearchRecordingsResponse:
        if request.media_kind and request.media_kind not in MEDIA_KIND_FROM_PB:
            raise InvalidArgument(f"unknown media_kind {request.media_kind}")
        query = SearchQuery(
            unit=request.unit.strip(),
            device_number=request.device_number.strip(),
            officer=request.officer.strip(),
            party=request.party.strip(),
            case_cause=request.case_cause.strip(),
            case_id=request.case_id.strip(),
            media_kind=MEDIA_KIND_FROM_PB.get(request.media_kind),
            recorded_after=optional_time(request, "recorded_after"),
            recorded_before=optional_time(request, "recorded_before"),
        )
        page = await self.handlers.search_recordings(
            query, request.page.page_size, request.page.page_token, caller()
        )
        return pb.SearchRecordingsResponse(
            recordings=[recording_message(r) for r in page.recordings],
            page=common_pb2.PageResponse(next_page_token=page.next_page_token),
        )

    async def LinkRecording(
        self, request: pb.LinkRecordingRequest, context: Context
    ) -> pb.LinkRecordingResponse:
        cmd = c.LinkRecording(request.recording_id, request.case_id, request.activity_id)
        return pb.LinkRecordingResponse(
            recording=recording_message(await self.handlers.link_recording(cmd, caller()))
        )

    async def ExplainInterruption(
        self, request: pb.ExplainInterruptionRequest, context: Context
    ) -> pb.ExplainInterruptionResponse:
        which = request.WhichOneof("explanation")
        if which is None:
            raise InvalidArgument("give the explanation: in_recording (a later recording) or written_text")
        spoken = request.in_recording
        if which == "in_recording" and not spoken.recording_id:
            raise InvalidArgument("in_recording.recording_id is required")
        cmd = c.ExplainInterruption(
            request.recording_id,
            written_text=request.written_text if which == "written_text" else "",
            spoken_in_recording_id=spoken.recording_id if which == "in_recording" else "",
            spoken_offset=(optional_duration(spoken, "offset", name="in_recording.offset") or timedelta(0))
            if which == "in_recording"
            else None,
        )
        explained = await self.handlers.explain_interruption(cmd, caller())
        return pb.ExplainInterruptionResponse(gap=gap_message(explained))

    async def ListUnexplainedGaps(
        self, request: pb.ListUnexplainedGapsRequest, context: Context
    ) -> pb.ListUnexplainedGapsResponse:
        actor = caller()
        scope = request.WhichOneof("scope")
        unit = request.unit.strip() if scope == "unit" else ""
        case_id = request.case_id.strip() if scope == "case_id" else ""
        if scope is None:
            unit = actor.unit
        page = await self.handlers.list_unexplained_gaps(
            unit=unit,
            case_id=case_id,
            page_size=request.page.page_size,
            page_token=request.page.page_token,
            actor=actor,
        )
        return pb.ListUnexplainedGapsResponse(
            gaps=[gap_message(g) for g in page.gaps],
            page=common_pb2.PageResponse(next_page_token=page.next_page_token),
            threshold=duration_pb(page.threshold),
        )

    async def DownloadRecording(
        self, request: pb.DownloadRecordingRequest, context: Context
    ) -> AsyncIterator[pb.DownloadRecordingResponse]:
        download = await self.handlers.download_recording(
            c.DownloadRecording(request.recording_id, request.access_grant), caller()
        )
        r = download.recording
        yield pb.DownloadRecordingResponse(
            header=pb.DownloadHeader(
                recording_id=r.recording_id,
                sha256=r.sha256,
                size_bytes=r.size_bytes,
                media_kind=MEDIA_KIND_TO_PB[r.classification.media_kind],
                grant_id=download.grant.grant_id,
            )
        )
        async for chunk in download.blocks:
            # bootstrap wires the FramedContentReader, whose chunks carry headroom for the framing
            yield chunk_response(cast(FramedChunk, chunk))

    async def StartFixityScrub(
        self, request: pb.StartFixityScrubRequest, context: Context
    ) -> pb.StartFixityScrubResponse:
        run = await self.handlers.start_fixity_scrub(c.StartFixityScrub(triggered_by=caller().subject))
        return pb.StartFixityScrubResponse(run=scrub_message(run))

    async def GetFixityScrubStatus(
        self, request: pb.GetFixityScrubStatusRequest, context: Context
    ) -> pb.GetFixityScrubStatusResponse:
        running, last = await self.handlers.fixity_scrub_status()
        response = pb.GetFixityScrubStatusResponse()
        if running is not None:
            response.running.CopyFrom(scrub_message(running))
        if last is not None:
            response.last_finished.CopyFrom(scrub_message(last))
        return response


class DeviceApi(device_service_pb2_grpc.DeviceServiceServicer):
    def __init__(self, handlers: MediaHandlers) -> None:
        self.handlers = handlers

    async def RegisterDevice(
        self, request: dpb.RegisterDeviceRequest, context: Context
    ) -> dpb.RegisterDeviceResponse:
        actor = caller()
        cmd = c.RegisterDevice(request.device_number, request.unit or actor.unit, request.model)
        return dpb.RegisterDeviceResponse(
            device=device_message(await self.handlers.register_device(cmd, actor))
        )

    async def RecordPreUseCheck(
        self, request: dpb.RecordPreUseCheckRequest, context: Context
    ) -> dpb.RecordPreUseCheckResponse:
        offset = optional_duration(request, "clock_offset")
        cmd = c.RecordPreUseCheck(
            request.device_number,
            request.battery_percent,
            request.free_storage_bytes,
            offset.total_seconds() if offset is not None else 0.0,
            request.request_id,
        )
        return dpb.RecordPreUseCheckResponse(
            check=check_message(await self.handlers.record_pre_use_check(cmd, caller()))
        )

    async def RecordMaintenance(
        self, request: dpb.RecordMaintenanceRequest, context: Context
    ) -> dpb.RecordMaintenanceResponse:
        cmd = c.RecordMaintenance(request.device_number, request.description, request.request_id)
        record = await self.handlers.record_maintenance(cmd, caller())
        return dpb.RecordMaintenanceResponse(maintenance=maintenance_message(record))

    async def ReportFault(self, request: dpb.ReportFaultRequest, context: Context) -> dpb.ReportFaultResponse:
        cmd = c.ReportFault(request.device_number, request.description, request.request_id)
        device, fault = await self.handlers.report_fault(cmd, caller())
        return dpb.ReportFaultResponse(device=device_message(device), fault=fault_message(fault, device.unit))

    async def RecordRepair(
        self, request: dpb.RecordRepairRequest, context: Context
    ) -> dpb.RecordRepairResponse:
        cmd = c.RecordRepair(request.device_number, request.note, request.request_id)
        device, fault = await self.handlers.record_repair(cmd, caller())
        return dpb.RecordRepairResponse(
            device=device_message(device), fault=fault_message(fault, device.unit)
        )

    async def GetDevice(self, request: dpb.GetDeviceRequest, context: Context) -> dpb.GetDeviceResponse:
        actor = caller()
        device = await self.handlers.get_device(request.device_number, actor)
        maintenance = await self.handlers.recent_maintenance(device.device_number, actor)
        return dpb.GetDeviceResponse(device=device_message(device, maintenance))

    async def ListDevices(self, request: dpb.ListDevicesRequest, context: Context) -> dpb.ListDevicesResponse:
        page = await self.handlers.list_devices(
            request.unit, request.page.page_size, decode_device_page_token(request.page.page_token), caller()
        )
        return dpb.ListDevicesResponse(
            devices=[device_message(d) for d in page.devices],
            page=common_pb2.PageResponse(next_page_token=encode_device_page_token(page.next_after)),
        )

    async def ListPreUseChecks(
        self, request: dpb.ListPreUseChecksRequest, context: Context
    ) -> dpb.ListPreUseChecksResponse:
        since, until = optional_time(request, "since"), optional_time(request, "until")
        if since is None or until is None:
            raise InvalidArgument("since and until are both required (UTC timestamps)")
        checks = await self.handlers.list_pre_use_checks(request.device_number, since, until, caller())
        return dpb.ListPreUseChecksResponse(checks=[check_message(ck) for ck in checks])
