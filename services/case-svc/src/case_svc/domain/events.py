"""Domain events of a case: past tense, carrying every fact a consumer (or a replay) needs.

A `Case` changes state only by applying these events, so the same events that are published on
`lawtrail.case.v1.events` rebuild the case exactly (R3, R4: the history is replayable). The adapter
`case_svc.adapters.event_mapping` turns them into the protobuf messages of `lawtrail.case.v1`.

`RecordingLinkNoted` is the one internal event: case-svc's projection of media-svc's
`RecordingLinked` (R5 coverage). It changes the case document but is not published again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from case_svc.domain.model import (
    Activity,
    ActType,
    Attribution,
    Document,
    FlagRecord,
    Incident,
    LegalReview,
    Party,
    Procedure,
    RecordingLink,
    SkippedStage,
    StageTransition,
)


@dataclass(frozen=True)
class CaseEvent:
    """Base of every case event; `case_id` is the Kafka key and the CloudEvents subject."""

    published: ClassVar[bool] = True
    case_id: str


@dataclass(frozen=True)
class CaseOpened(CaseEvent):
    act_type: ActType
    procedure: Procedure | None
    unit: str
    cause: str
    responsible_officer: str
    parties: tuple[Party, ...]
    transition: StageTransition
    inapplicable_stages: tuple[SkippedStage, ...]


@dataclass(frozen=True)
class CaseStageAdvanced(CaseEvent):
    unit: str
    transition: StageTransition


@dataclass(frozen=True)
class CaseReturnedForReinvestigation(CaseEvent):
    unit: str
    transition: StageTransition


@dataclass(frozen=True)
class CaseFlagged(CaseEvent):
    unit: str
    flag: FlagRecord


@dataclass(frozen=True)
class CaseParticularsAmended(CaseEvent):
    unit: str
    cause: str
    parties: tuple[Party, ...]
    previous_cause: str
    previous_parties: tuple[Party, ...]
    reason: str
    amended: Attribution


@dataclass(frozen=True)
class CaseIncidentRecorded(CaseEvent):
    unit: str
    act_type: ActType
    procedure: Procedure | None
    incident: Incident


@dataclass(frozen=True)
class ActivityRecorded(CaseEvent):
    unit: str
    activity: Activity


@dataclass(frozen=True)
class DocumentFiled(CaseEvent):
    unit: str
    document: Document


@dataclass(frozen=True)
class LegalReviewRecorded(CaseEvent):
    unit: str
    review: LegalReview


@dataclass(frozen=True)
class CaseClosed(CaseEvent):
    unit: str
    act_type: ActType
    procedure: Procedure | None
    transition: StageTransition


@dataclass(frozen=True)
class CaseArchived(CaseEvent):
    unit: str
    act_type: ActType
    procedure: Procedure | None
    transition: StageTransition
    documents: tuple[Document, ...]


@dataclass(frozen=True)
class RecordingLinkNoted(CaseEvent):
    """Internal: media-svc linked a recording to an activity of this case (not published)."""

    published: ClassVar[bool] = False
    link: RecordingLink
