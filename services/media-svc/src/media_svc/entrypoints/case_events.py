"""media-svc's consumer of case-svc's events: its view of the cases links are checked against (R5) and
the cause and parties linked recordings are searched by (R17).

Group `media-svc.case-projection` on `lawtrail.case.v1.events`, with an inbox (`case_events_inbox`) that
skips redelivered events; dead letters in `media-svc.case-projection.dlq`. `CaseOpened` → the case
(unit, cause, party names), and recordings linked to it at upload take its cause and parties;
`ActivityRecorded` → one more activity id; `CaseParticularsAmended` → the new cause and parties, which every
recording linked to the case then takes (R17); `CaseClosed` / `CaseArchived` → the case is closed, which the
disposal refusal reads (R12; service_layer/disposal.py). The events carry no case version: a case's events
arrive in order (key = case id, one partition), and every write of the projection is idempotent on its own,
so a redelivery or a replay changes nothing. Other event types are ignored — and, being ignored, are not in
the inbox, so a replay from offset 0 applies a type this consumer learned to handle since (docs/media-svc.md,
"one projection").
"""

from __future__ import annotations

from lawtrail.case.v1 import case_events_pb2 as case_ev
from servicekit.messaging.consumer import TypeRouter
from servicekit.messaging.envelope import Envelope, InvalidEnvelope
from servicekit.topics import events_topic_of

from media_svc.service_layer.handlers import MediaHandlers

CASE_TOPIC = events_topic_of(case_ev)  # lawtrail.case.v1.events
GROUP_ID = "media-svc.case-projection"
INBOX = "case_events_inbox"


def case_events_router(handlers: MediaHandlers) -> TypeRouter:
    router = TypeRouter()

    async def on_opened(event: case_ev.CaseOpened, envelope: Envelope) -> None:
        if not event.case_id or not event.unit:
            raise InvalidEnvelope(f"CaseOpened {envelope.id} has no case_id or unit")
        await handlers.case_opened(event.case_id, event.unit, event.cause, [p.name for p in event.parties])

    async def on_activity(event: case_ev.ActivityRecorded, envelope: Envelope) -> None:
        if not event.case_id or not event.activity.activity_id:
            raise InvalidEnvelope(f"ActivityRecorded {envelope.id} has no case_id or activity_id")
        await handlers.activity_recorded(event.case_id, event.activity.activity_id)

    async def on_amended(event: case_ev.CaseParticularsAmended, envelope: Envelope) -> None:
        if not event.case_id:
            raise InvalidEnvelope(f"CaseParticularsAmended {envelope.id} has no case_id")
        await handlers.case_particulars_changed(event.case_id, event.cause, [p.name for p in event.parties])

    async def on_closed(event: case_ev.CaseClosed | case_ev.CaseArchived, envelope: Envelope) -> None:
        if not event.case_id:
            raise InvalidEnvelope(f"{envelope.type} {envelope.id} has no case_id")
        await handlers.case_closed(event.case_id)

    router.on(case_ev.CaseOpened, on_opened)
    router.on(case_ev.CaseParticularsAmended, on_amended)
    router.on(case_ev.ActivityRecorded, on_activity)
    router.on(case_ev.CaseClosed, on_closed)
    router.on(case_ev.CaseArchived, on_closed)
    return router
