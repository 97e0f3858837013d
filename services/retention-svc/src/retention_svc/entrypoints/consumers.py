"""Consumer of case-svc's and media-svc's events: retention-svc's state is built from them (R12, R13).

One consumer group (`retention-svc.events` by default) reads `lawtrail.case.v1.events` and
`lawtrail.media.v1.events`, one record at a time, so the facts of a case and of its recordings are applied
by one writer. Each fact is idempotent by construction (sets that grow, the earliest closure, the same
values whoever reports them), the decisions are pure functions of the facts, and events are written only
when a decision or an announcement is new — so redelivery, replay from the start or another order of the
two topics end in the same state and publish nothing twice. Hence no inbox (see bootstrap.py). A fact
that can never apply (missing ids, a recording linked to two cases) is parked in `<group>.dlq` at once.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.case.v1 import case_events_pb2 as case_ev
from lawtrail.case.v1 import case_pb2
from lawtrail.media.v1 import disposal_service_pb2 as disposal_pb2
from lawtrail.media.v1 import media_events_pb2 as media_ev
from lawtrail.media.v1 import recording_pb2
from servicekit.errors import InvalidArgument
from servicekit.messaging.consumer import TypeRouter
from servicekit.messaging.envelope import Envelope, InvalidEnvelope
from servicekit.topics import events_topic_of

from retention_svc.domain.retention import Incident
from retention_svc.service_layer.handlers import CaseFacts, RecordingFacts, RetentionHandlers

CASE_TOPIC = events_topic_of(case_ev)
MEDIA_TOPIC = events_topic_of(media_ev)
DEFAULT_GROUP_ID = "retention-svc.events"


def ms(value: datetime) -> datetime:
    """To the millisecond, as the database keeps it: a decision read back must equal the one computed."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _time(ts: Timestamp, fallback: datetime) -> datetime:
    return ms(ts.ToDatetime(tzinfo=UTC) if ts.seconds or ts.nanos else fallback)


def _opt_time(ts: Timestamp) -> datetime | None:
    return ms(ts.ToDatetime(tzinfo=UTC)) if ts.seconds or ts.nanos else None


def _act(value: int) -> str:
    return "" if value == 0 else case_pb2.ActType.Name(value).removeprefix("ACT_TYPE_")  # type: ignore[arg-type]


def _procedure(value: int) -> str:
    return "" if value == 0 else case_pb2.Procedure.Name(value).removeprefix("PROCEDURE_")  # type: ignore[arg-type]


def _media_kind(value: int) -> str:
    return "" if value == 0 else recording_pb2.MediaKind.Name(value).removeprefix("MEDIA_KIND_")  # type: ignore[arg-type]


def retention_router(handlers: RetentionHandlers) -> TypeRouter:
    router = TypeRouter()

    async def on_case_opened(event: case_ev.CaseOpened, envelope: Envelope) -> None:
        await _apply(envelope, handlers.case_opened(_case(event)))

    async def on_incident(event: case_ev.CaseIncidentRecorded, envelope: Envelope) -> None:
        incident = event.incident
        await _apply(
            envelope,
            handlers.incident_recorded(
                _case(event),
                Incident(
                    incident_id=incident.incident_id,
                    kind=case_pb2.IncidentKind.Name(incident.kind).removeprefix("INCIDENT_KIND_"),
                    reason=incident.reason,
                    recorded_at=_time(incident.recorded.at, envelope.time),
                    source_event=f"{envelope.source}/{envelope.id}",
                ),
            ),
        )

    async def on_case_closed(event: case_ev.CaseClosed, envelope: Envelope) -> None:
        await _apply(
            envelope, handlers.case_closed(_case(event), _time(event.transition.changed.at, envelope.time))
        )

    async def on_ingested(event: media_ev.RecordingIngested, envelope: Envelope) -> None:
        c = event.classification
        facts = RecordingFacts(
            recording_id=event.recording_id,
            unit=c.unit,
            sha256=event.sha256,
            size_bytes=event.size_bytes,
            media_kind=_media_kind(c.media_kind),
            format_name=event.facts.format_name,
            device_number=c.device_number,
            officer=c.officer,
            recorded_from=_opt_time(c.recorded_from),
            recorded_to=_opt_time(c.recorded_to),
            ingested_at=_time(event.ingested.at, envelope.time),
        )
        await _apply(envelope, handlers.recording_ingested(facts))

    async def on_linked(event: media_ev.RecordingLinked, envelope: Envelope) -> None:
        facts = RecordingFacts(
            recording_id=event.recording_id,
            unit=event.unit,
            sha256=event.sha256,
            media_kind=_media_kind(event.media_kind),
            device_number=event.device_number,
            officer=event.officer,
            recorded_from=_opt_time(event.recorded_from),
            recorded_to=_opt_time(event.recorded_to),
        )
        await _apply(envelope, handlers.recording_linked(facts, event.case_id))

    async def on_disposed(event: disposal_pb2.RecordingDisposed, envelope: Envelope) -> None:
        tombstone = event.tombstone
        await _apply(
            envelope,
            handlers.recording_disposed(tombstone.recording_id, _time(tombstone.disposed_at, envelope.time)),
        )

    router.on(disposal_pb2.RecordingDisposed, on_disposed)
    router.on(case_ev.CaseOpened, on_case_opened)
    router.on(case_ev.CaseIncidentRecorded, on_incident)
    router.on(case_ev.CaseClosed, on_case_closed)
    router.on(media_ev.RecordingIngested, on_ingested)
    router.on(media_ev.RecordingLinked, on_linked)
    return router


def _case(event: case_ev.CaseOpened | case_ev.CaseIncidentRecorded | case_ev.CaseClosed) -> CaseFacts:
    return CaseFacts(event.case_id, event.unit, _act(event.act_type), _procedure(event.procedure))


async def _apply(envelope: Envelope, work: Awaitable[None]) -> None:
    try:
        await work
    except InvalidArgument as refused:
        raise InvalidEnvelope(f"{envelope.type} {envelope.id} cannot apply: {refused.message}") from refused
