"""Domain events -> the published events of `lawtrail.case.v1` on topic `lawtrail.case.v1.events`.

The one place where internal events become integration events (key and CloudEvents subject = case
id). Internal events (`published = False`) are not published. `from_pb` is the inverse, used to
replay a case from what is on the topic.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.case.v1 import case_events_pb2 as ev
from lawtrail.case.v1 import case_pb2 as pb
from lawtrail.common.v1 import common_pb2
from servicekit.clock import to_ms
from servicekit.messaging.outbox import OutboundEvent
from servicekit.topics import events_topic_of

from case_svc.adapters.proto_mapping import (
    activity_pb,
    attribution_pb,
    document_pb,
    enum_from_pb,
    enum_required_from_pb,
    enum_to_pb,
    flag_pb,
    incident_pb,
    party_pb,
    review_pb,
    skipped_pb,
    transition_pb,
)
from case_svc.domain import events as e
from case_svc.domain.model import (
    Activity,
    ActivityKind,
    ActType,
    Attribution,
    CaseFlag,
    Document,
    ExemptionReason,
    FlagRecord,
    Incident,
    IncidentKind,
    LegalReview,
    LegalReviewOutcome,
    Party,
    PartyKind,
    Procedure,
    RecordMode,
    SkippedStage,
    Stage,
    StageTransition,
    TransitionKind,
)

TOPIC = events_topic_of(ev)  # lawtrail.case.v1.events


def to_pb(event: e.CaseEvent) -> Message:
    """The published protobuf message of a domain event."""
    match event:
        case e.CaseOpened():
            return ev.CaseOpened(
                case_id=event.case_id,
                act_type=enum_to_pb(event.act_type),
                procedure=enum_to_pb(event.procedure),
                unit=event.unit,
                cause=event.cause,
                responsible_officer=event.responsible_officer,
                parties=[party_pb(p) for p in event.parties],
                transition=transition_pb(event.transition),
                inapplicable_stages=skipped_pb(event.inapplicable_stages),
            )
        case e.CaseStageAdvanced():
            return ev.CaseStageAdvanced(
                case_id=event.case_id, unit=event.unit, transition=transition_pb(event.transition)
            )
        case e.CaseReturnedForReinvestigation():
            return ev.CaseReturnedForReinvestigation(
                case_id=event.case_id, unit=event.unit, transition=transition_pb(event.transition)
            )
        case e.CaseParticularsAmended():
            return ev.CaseParticularsAmended(
                case_id=event.case_id,
                unit=event.unit,
                cause=event.cause,
                parties=[party_pb(p) for p in event.parties],
                previous_cause=event.previous_cause,
                previous_parties=[party_pb(p) for p in event.previous_parties],
                reason=event.reason,
                amended=attribution_pb(event.amended),
            )
        case e.CaseFlagged():
            return ev.CaseFlagged(case_id=event.case_id, unit=event.unit, flag=flag_pb(event.flag))
        case e.CaseIncidentRecorded():
            return ev.CaseIncidentRecorded(
                case_id=event.case_id,
                unit=event.unit,
                act_type=enum_to_pb(event.act_type),
                procedure=enum_to_pb(event.procedure),
                incident=incident_pb(event.incident),
            )
        case e.ActivityRecorded():
            return ev.ActivityRecorded(
                case_id=event.case_id, unit=event.unit, activity=activity_pb(event.activity)
            )
        case e.DocumentFiled():
            return ev.DocumentFiled(
                case_id=event.case_id, unit=event.unit, document=document_pb(event.document)
            )
        case e.LegalReviewRecorded():
            return ev.LegalReviewRecorded(
                case_id=event.case_id, unit=event.unit, review=review_pb(event.review)
            )
        case e.CaseClosed():
            return ev.CaseClosed(
                case_id=event.case_id,
                unit=event.unit,
                act_type=enum_to_pb(event.act_type),
                procedure=enum_to_pb(event.procedure),
                transition=transition_pb(event.transition),
            )
        case e.CaseArchived():
            return ev.CaseArchived(
                case_id=event.case_id,
                unit=event.unit,
                act_type=enum_to_pb(event.act_type),
                procedure=enum_to_pb(event.procedure),
                transition=transition_pb(event.transition),
                documents=[document_pb(d) for d in event.documents],
            )
    raise TypeError(f"{type(event).__name__} has no published form")


def outbound(events: Iterable[e.CaseEvent]) -> list[OutboundEvent]:
    """The outbox entries of the published events among `events`, in order."""
    return [OutboundEvent(TOPIC, to_pb(event), subject=event.case_id) for event in events if event.published]


# ---------------------------------------------------------------------------------------------
# The inverse: published events -> domain events (to replay a case from the topic)
# ---------------------------------------------------------------------------------------------


def _stage(number: int) -> Stage:
    stage = enum_from_pb(Stage, number, "stage")
    assert stage is not None
    return stage


def _attribution(message: common_pb2.Attribution) -> Attribution:
    return Attribution(message.subject, message.unit, _when(message.at))


def _skipped(messages: Iterable[pb.SkippedStage]) -> tuple[SkippedStage, ...]:
    return tuple(SkippedStage(_stage(m.stage), m.reason) for m in messages)


def _transition(m: pb.StageTransition) -> StageTransition:
    kind = enum_from_pb(TransitionKind, m.kind, "kind")
    assert kind is not None
    return StageTransition(
        m.sequence,
        enum_from_pb(Stage, m.from_stage, "from_stage"),
        _stage(m.to_stage),
        kind,
        m.reason,
        _attribution(m.changed),
        _skipped(m.skipped),
    )


def _when(stamp: Timestamp) -> datetime:
    return to_ms(stamp.ToDatetime(tzinfo=UTC))


def _activity(m: pb.Activity) -> Activity:
    return Activity(
        activity_id=m.activity_id,
        kind=enum_required_from_pb(ActivityKind, m.kind, "kind"),
        started_at=_when(m.started_at),
        ended_at=_when(m.ended_at),
        place=m.place,
        officers=tuple(m.officers),
        record_mode=enum_required_from_pb(RecordMode, m.record_mode, "record_mode"),
        key_stages_reason=m.key_stages_reason,
        text_record_document_id=m.text_record_document_id,
        exemption_reason=enum_from_pb(ExemptionReason, m.exemption_reason, "exemption_reason"),
        exemption_note=m.exemption_note,
        stage=_stage(m.stage),
        recorded=_attribution(m.recorded),
    )


def _document(m: pb.Document) -> Document:
    return Document(
        document_id=m.document_id,
        document_type=m.document_type,
        number=m.number,
        title=m.title,
        author=m.author,
        signed_on=m.signed_on,
        sha256=m.sha256,
        size_bytes=m.size_bytes,
        content_type=m.content_type,
        supersedes_document_id=m.supersedes_document_id,
        stage=_stage(m.stage),
        filed=_attribution(m.filed),
    )


def from_pb(message: Message) -> e.CaseEvent:
    """The domain event of a published case event."""
    match message:
        case ev.CaseOpened():
            return e.CaseOpened(
                case_id=message.case_id,
                act_type=enum_required_from_pb(ActType, message.act_type, "act_type"),
                procedure=enum_from_pb(Procedure, message.procedure, "procedure"),
                unit=message.unit,
                cause=message.cause,
                responsible_officer=message.responsible_officer,
                parties=tuple(
                    Party(p.name, enum_required_from_pb(PartyKind, p.kind, "kind"), p.identifier)
                    for p in message.parties
                ),
                transition=_transition(message.transition),
                inapplicable_stages=_skipped(message.inapplicable_stages),
            )
        case ev.CaseStageAdvanced():
            return e.CaseStageAdvanced(message.case_id, message.unit, _transition(message.transition))
        case ev.CaseReturnedForReinvestigation():
            return e.CaseReturnedForReinvestigation(
                message.case_id, message.unit, _transition(message.transition)
            )
        case ev.CaseParticularsAmended():

            def parties(values: Iterable[pb.Party]) -> tuple[Party, ...]:
                return tuple(
                    Party(p.name, enum_required_from_pb(PartyKind, p.kind, "kind"), p.identifier)
                    for p in values
                )

            return e.CaseParticularsAmended(
                message.case_id,
                message.unit,
                message.cause,
                parties(message.parties),
                message.previous_cause,
                parties(message.previous_parties),
                message.reason,
                _attribution(message.amended),
            )
        case ev.CaseFlagged():
            f = message.flag
            return e.CaseFlagged(
                message.case_id,
                message.unit,
                FlagRecord(
                    enum_required_from_pb(CaseFlag, f.flag, "flag"),
                    f.reason,
                    _stage(f.stage),
                    _attribution(f.flagged),
                    f.incident_id,
                ),
            )
        case ev.CaseIncidentRecorded():
            i = message.incident
            return e.CaseIncidentRecorded(
                message.case_id,
                message.unit,
                enum_required_from_pb(ActType, message.act_type, "act_type"),
                enum_from_pb(Procedure, message.procedure, "procedure"),
                Incident(
                    i.incident_id,
                    enum_required_from_pb(IncidentKind, i.kind, "kind"),
                    _when(i.occurred_at),
                    i.reporter,
                    i.description,
                    i.reason,
                    _stage(i.stage),
                    _attribution(i.recorded),
                ),
            )
        case ev.ActivityRecorded():
            return e.ActivityRecorded(message.case_id, message.unit, _activity(message.activity))
        case ev.DocumentFiled():
            return e.DocumentFiled(message.case_id, message.unit, _document(message.document))
        case ev.LegalReviewRecorded():
            r = message.review
            return e.LegalReviewRecorded(
                message.case_id,
                message.unit,
                LegalReview(
                    r.review_id,
                    enum_required_from_pb(LegalReviewOutcome, r.outcome, "outcome"),
                    r.opinion,
                    _attribution(r.reviewed),
                ),
            )
        case ev.CaseClosed():
            return e.CaseClosed(
                message.case_id,
                message.unit,
                enum_required_from_pb(ActType, message.act_type, "act_type"),
                enum_from_pb(Procedure, message.procedure, "procedure"),
                _transition(message.transition),
            )
        case ev.CaseArchived():
            return e.CaseArchived(
                message.case_id,
                message.unit,
                enum_required_from_pb(ActType, message.act_type, "act_type"),
                enum_from_pb(Procedure, message.procedure, "procedure"),
                _transition(message.transition),
                tuple(_document(d) for d in message.documents),
            )
    raise TypeError(f"{type(message).__name__} is not a case event")


# Every published case event type, by its CloudEvents type (the full proto name).
EVENT_TYPES: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        ev.CaseOpened,
        ev.CaseStageAdvanced,
        ev.CaseReturnedForReinvestigation,
        ev.CaseFlagged,
        ev.CaseParticularsAmended,
        ev.CaseIncidentRecorded,
        ev.ActivityRecorded,
        ev.DocumentFiled,
        ev.LegalReviewRecorded,
        ev.CaseClosed,
        ev.CaseArchived,
        # Access events, written by adapters/access_grants.py (MongoReadLog), not by the aggregate.
        ev.CaseDocumentRead,
        ev.CaseViewed,
        ev.CasesSearched,
    )
}
