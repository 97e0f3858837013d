"""Consumer of media-svc's events: case-svc's projection of `RecordingLinked` (R5 AV coverage).

Runs as consumer group `case-svc.media-events` on `lawtrail.media.v1.events`; other event types on
that topic are ignored. Applying a link is idempotent by construction (a case records each
(recording, activity) pair once), and servicekit's inbox skips redelivered events before that.
A link that can never apply (a case case-svc does not know, malformed ids, an activity the case does
not have, a recording of another unit not linked by the legal affairs office — R5) is parked in
`case-svc.media-events.dlq` at once: retrying cannot fix it, and it must stay visible to operators.
"""

from __future__ import annotations

from datetime import UTC, datetime

from lawtrail.access.v1 import access_events_pb2
from lawtrail.media.v1 import media_events_pb2
from servicekit.clock import to_ms
from servicekit.errors import InvalidArgument, NotFound, PermissionDenied
from servicekit.messaging.consumer import TypeRouter
from servicekit.messaging.envelope import Envelope, InvalidEnvelope
from servicekit.topics import events_topic_of

from case_svc.adapters.access_grants import Ed25519GrantVerifier, MongoRevocations
from case_svc.domain import commands as c
from case_svc.service_layer.handlers import CaseHandlers

MEDIA_TOPIC = events_topic_of(media_events_pb2)  # lawtrail.media.v1.events
GROUP_ID = "case-svc.media-events"


def media_events_router(handlers: CaseHandlers) -> TypeRouter:
    router = TypeRouter()

    async def on_recording_linked(event: media_events_pb2.RecordingLinked, envelope: Envelope) -> None:
        linked_at = event.linked.at.ToDatetime(tzinfo=UTC) if event.linked.HasField("at") else envelope.time
        try:
            await handlers.link_recording(
                c.LinkRecording(
                    recording_id=event.recording_id,
                    case_id=event.case_id,
                    activity_id=event.activity_id,
                    unit=event.unit,
                    sha256=event.sha256,
                    linked_at=to_ms(linked_at),
                    recorded_from=_time(event, "recorded_from"),
                    recorded_to=_time(event, "recorded_to"),
                    linked_by_legal_office=event.linked_by_legal_office,
                )
            )
        except (NotFound, InvalidArgument, PermissionDenied) as refused:
            message = f"RecordingLinked {envelope.id} cannot apply: {refused.message}"
            raise InvalidEnvelope(message) from refused

    router.on(media_events_pb2.RecordingLinked, on_recording_linked)
    return router


def _time(event: media_events_pb2.RecordingLinked, name: str) -> datetime | None:
    if not event.HasField(name):  # type: ignore[arg-type]
        return None
    return to_ms(getattr(event, name).ToDatetime(tzinfo=UTC))


ACCESS_TOPIC = events_topic_of(access_events_pb2)
ACCESS_GROUP_ID = "case-svc.access-events"


def access_events_router(verifier: Ed25519GrantVerifier, revocations: MongoRevocations) -> TypeRouter:
    """AccessRevoked → the grant is refused by ReadDocument from now on (stored for restarts and replicas)."""
    router = TypeRouter()

    async def on_revoked(event: access_events_pb2.AccessRevoked, envelope: Envelope) -> None:
        await revocations.record(event.grant_id, event.reason)
        verifier.revoke(event.grant_id)

    router.on(access_events_pb2.AccessRevoked, on_revoked)
    return router
