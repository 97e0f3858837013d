"""`lawtrail.media.v1.DisposalService` (R12, R13, R23-5): carries out approved disposal orders from
retention-svc, and media-svc's consumer of the holds its own refusal rests on.

Case closure, the refusal's other ground, comes from the one case projection (entrypoints/case_events.py,
group `media-svc.case-projection`). The holds keep a group of their own, `media-svc.disposal-guard`, because
they come from another topic (retention-svc's): one group per topic keeps each topic's lag, retries and
replays apart — a replay of case-svc's events does not re-read every hold, and a hold event being retried
(a consumer applies its records one at a time) does not delay the link checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from lawtrail.media.v1 import disposal_service_pb2 as pb
from lawtrail.media.v1 import disposal_service_pb2_grpc as pb_grpc
from lawtrail.retention.v1 import retention_events_pb2 as ret_ev
from servicekit.auth import Role
from servicekit.messaging.consumer import TypeRouter
from servicekit.messaging.envelope import Envelope
from servicekit.topics import events_topic_of

from media_svc.adapters.disposal import tombstone_message
from media_svc.entrypoints.grpc_api import RecordingApi
from media_svc.service_layer.disposal import DisposalHandlers, DisposalStore
from media_svc.service_layer.handlers import MediaHandlers

SERVICE = pb.DESCRIPTOR.services_by_name["DisposalService"]
DISPOSAL_ROLE_POLICY: Mapping[str, frozenset[str]] = {
    f"/{SERVICE.full_name}/DisposeRecording": frozenset({Role.SERVICE}),
}
RETENTION_TOPIC = events_topic_of(ret_ev)
GROUP_ID = "media-svc.disposal-guard"


class DisposalAwareRecordingApi(RecordingApi):
    """RecordingService with one addition: a disposed recording's download is refused naming its order."""

    def __init__(self, handlers: MediaHandlers, disposal: DisposalHandlers) -> None:
        super().__init__(handlers)
        self.disposal = disposal

    async def DownloadRecording(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await self.disposal.ensure_not_disposed(request.recording_id)
        async for part in super().DownloadRecording(request, context):
            yield part


class DisposalApi(pb_grpc.DisposalServiceServicer):
    def __init__(self, handlers: DisposalHandlers) -> None:
        self.handlers = handlers

    async def DisposeRecording(
        self, request: pb.DisposeRecordingRequest, context: Any
    ) -> pb.DisposeRecordingResponse:
        tombstone = await self.handlers.dispose(
            request.recording_id.strip(), request.order_id.strip(), tuple(request.approved_by), request.reason
        )
        return pb.DisposeRecordingResponse(tombstone=tombstone_message(tombstone))


def disposal_guard_router(store: DisposalStore) -> TypeRouter:
    """Holds from retention-svc (`LongTermHoldPlaced`): one ground of media-svc's refusal (R13)."""
    router = TypeRouter()

    async def on_hold(event: ret_ev.LongTermHoldPlaced, envelope: Envelope) -> None:
        await store.hold_placed(event.recording_id, event.hold.incident_id or envelope.id)

    router.on(ret_ev.LongTermHoldPlaced, on_hold)
    return router
