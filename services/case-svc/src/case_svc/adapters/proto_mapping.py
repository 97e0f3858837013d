"""Domain objects <-> the protobuf messages of `lawtrail.case.v1` (and `common.v1`).

Used by the gRPC servicer (requests and responses) and by the event mapping (published events), so
the API and the events describe a case with the same messages and the same enum values.

Enum rule: a proto enum value `ACT_TYPE_PENALTY` is the domain's `ActType.PENALTY`; the zero value
(`*_UNSPECIFIED`) is `None`; a number the contract does not define is INVALID_ARGUMENT naming the field.
Times, durations and attributions map with servicekit.protomap (request times are checked and truncated to
milliseconds, the precision the database stores).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any, TypeVar

from lawtrail.case.v1 import case_pb2 as pb
from lawtrail.case.v1 import case_service_pb2
from lawtrail.common.v1 import common_pb2
from servicekit import protomap
from servicekit.errors import InvalidArgument
from servicekit.protomap import timestamp_pb

from case_svc.domain.case import Case
from case_svc.domain.model import (
    Activity,
    ActivityKind,
    ActType,
    Attribution,
    CaseFileGap,
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
    RecordingLink,
    RecordMode,
    SkippedStage,
    Stage,
    StageTransition,
    TransitionKind,
)
from case_svc.service_layer.ports import CaseSummary

E = TypeVar("E", bound=StrEnum)

# Each domain enum, its proto enum wrapper and the prefix of the proto value names.
_ENUMS: dict[type[StrEnum], tuple[Any, str]] = {
    ActType: (pb.ActType, "ACT_TYPE_"),
    Procedure: (pb.Procedure, "PROCEDURE_"),
    Stage: (pb.Stage, "STAGE_"),
    CaseFlag: (pb.CaseFlag, "CASE_FLAG_"),
    ActivityKind: (pb.ActivityKind, "ACTIVITY_KIND_"),
    RecordMode: (pb.RecordMode, "RECORD_MODE_"),
    ExemptionReason: (pb.ExemptionReason, "EXEMPTION_REASON_"),
    IncidentKind: (pb.IncidentKind, "INCIDENT_KIND_"),
    TransitionKind: (pb.TransitionKind, "TRANSITION_KIND_"),
    LegalReviewOutcome: (pb.LegalReviewOutcome, "LEGAL_REVIEW_OUTCOME_"),
    PartyKind: (pb.PartyKind, "PARTY_KIND_"),
}


def enum_to_pb(value: StrEnum | None) -> Any:
    """The proto enum number of a domain value (None -> 0)."""
    if value is None:
        return 0
    wrapper, prefix = _ENUMS[type(value)]
    return wrapper.Value(prefix + value.value)


def enum_from_pb(enum_type: type[E], number: int, field: str) -> E | None:
    """The domain value of a proto enum number; 0 -> None; an undefined number -> InvalidArgument."""
    if number == 0:
        return None
    wrapper, prefix = _ENUMS[enum_type]
    try:
        name = wrapper.Name(number)
    except ValueError:
        allowed = ", ".join(v.name for v in wrapper.DESCRIPTOR.values if v.number != 0)
        raise InvalidArgument(f"{field}: {number} is not a defined value; use one of {allowed}") from None
    return enum_type(name.removeprefix(prefix))


def enum_required_from_pb(enum_type: type[E], number: int, field: str) -> E:
    """Like `enum_from_pb`, for a field that must be set."""
    value = enum_from_pb(enum_type, number, field)
    if value is None:
        raise InvalidArgument(f"{field}: required")
    return value


def attribution_pb(value: Attribution) -> common_pb2.Attribution:
    return protomap.attribution_pb(value.subject, value.unit, value.at)


def party_pb(value: Party) -> pb.Party:
    return pb.Party(name=value.name, kind=enum_to_pb(value.kind), identifier=value.identifier)


def skipped_pb(values: Iterable[SkippedStage]) -> list[pb.SkippedStage]:
    return [pb.SkippedStage(stage=enum_to_pb(s.stage), reason=s.reason) for s in values]


def transition_pb(value: StageTransition) -> pb.StageTransition:
    return pb.StageTransition(
        from_stage=enum_to_pb(value.from_stage),
        to_stage=enum_to_pb(value.to_stage),
        kind=enum_to_pb(value.kind),
        reason=value.reason,
        changed=attribution_pb(value.changed),
        skipped=skipped_pb(value.skipped),
        sequence=value.sequence,
    )


def flag_pb(value: FlagRecord) -> pb.FlagRecord:
    return pb.FlagRecord(
        flag=enum_to_pb(value.flag),
        reason=value.reason,
        stage=enum_to_pb(value.stage),
        flagged=attribution_pb(value.flagged),
        incident_id=value.incident_id,
    )


def incident_pb(value: Incident) -> pb.Incident:
    return pb.Incident(
        incident_id=value.incident_id,
        kind=enum_to_pb(value.kind),
        occurred_at=timestamp_pb(value.occurred_at),
        reporter=value.reporter,
        description=value.description,
        reason=value.reason,
        stage=enum_to_pb(value.stage),
        recorded=attribution_pb(value.recorded),
    )


def activity_pb(value: Activity, recording_ids: Iterable[str] = ()) -> pb.Activity:
    return pb.Activity(
        activity_id=value.activity_id,
        kind=enum_to_pb(value.kind),
        started_at=timestamp_pb(value.started_at),
        ended_at=timestamp_pb(value.ended_at),
        place=value.place,
        officers=list(value.officers),
        record_mode=enum_to_pb(value.record_mode),
        key_stages_reason=value.key_stages_reason,
        text_record_document_id=value.text_record_document_id,
        exemption_reason=enum_to_pb(value.exemption_reason),
        exemption_note=value.exemption_note,
        stage=enum_to_pb(value.stage),
        recorded=attribution_pb(value.recorded),
        recording_ids=list(recording_ids),
    )


def document_pb(value: Document) -> pb.Document:
    return pb.Document(
        document_id=value.document_id,
        document_type=value.document_type,
        number=value.number,
        title=value.title,
        author=value.author,
        signed_on=value.signed_on,
        sha256=value.sha256,
        size_bytes=value.size_bytes,
        content_type=value.content_type,
        supersedes_document_id=value.supersedes_document_id,
        stage=enum_to_pb(value.stage),
        filed=attribution_pb(value.filed),
    )


def review_pb(value: LegalReview) -> pb.LegalReview:
    return pb.LegalReview(
        review_id=value.review_id,
        outcome=enum_to_pb(value.outcome),
        opinion=value.opinion,
        reviewed=attribution_pb(value.reviewed),
    )


def link_pb(value: RecordingLink, covers: bool = False) -> pb.RecordingLink:
    message = pb.RecordingLink(
        recording_id=value.recording_id,
        activity_id=value.activity_id,
        sha256=value.sha256,
        linked_at=timestamp_pb(value.linked_at),
        unit=value.unit,
        linked_by_legal_office=value.linked_by_legal_office,
        covers_activity=covers,
    )
    if value.recorded_from is not None:
        message.recorded_from.CopyFrom(timestamp_pb(value.recorded_from))
    if value.recorded_to is not None:
        message.recorded_to.CopyFrom(timestamp_pb(value.recorded_to))
    return message


def case_pb(case: Case) -> pb.Case:
    assert case.opened is not None
    return pb.Case(
        case_id=case.case_id,
        act_type=enum_to_pb(case.act_type),
        procedure=enum_to_pb(case.procedure),
        unit=case.unit,
        cause=case.cause,
        responsible_officer=case.responsible_officer,
        parties=[party_pb(p) for p in case.parties],
        stage=enum_to_pb(case.stage),
        opened=attribution_pb(case.opened),
        flags=[flag_pb(f) for f in case.flags],
        history=[transition_pb(t) for t in case.history],
        activities=[activity_pb(a, case.recording_ids(a.activity_id)) for a in case.activities],
        documents=[document_pb(d) for d in case.documents],
        incidents=[incident_pb(i) for i in case.incidents],
        legal_reviews=[review_pb(r) for r in case.legal_reviews],
        recording_links=[link_pb(lk, case.covers(lk)) for lk in case.recording_links],
        inapplicable_stages=skipped_pb(case.inapplicable_stages),
        version=case.version,
    )


def summary_pb(value: CaseSummary) -> pb.CaseSummary:
    return pb.CaseSummary(
        case_id=value.case_id,
        act_type=enum_to_pb(value.act_type),
        procedure=enum_to_pb(value.procedure),
        unit=value.unit,
        cause=value.cause,
        responsible_officer=value.responsible_officer,
        party_names=list(value.party_names),
        stage=enum_to_pb(value.stage),
        flags=[enum_to_pb(f) for f in value.flags],
        opened_at=timestamp_pb(value.opened_at),
    )


def gap_pb(value: CaseFileGap) -> case_service_pb2.CaseFileGap:
    return case_service_pb2.CaseFileGap(
        document_type=value.document_type, name=value.name, required_because=value.required_because
    )
