"""The vocabulary of a case (案件) and its case file (案卷): enums and immutable value objects.

Names follow docs/glossary.md. Requirement IDs (R2…R19a) refer to docs/regulation.md.
Who acts (`Actor`, `Role`) is the shared vocabulary of `servicekit.policy` (ADR 0005).
Pure Python: no I/O, no protobuf. Every `datetime` is timezone-aware UTC and set by the server,
except times the caller reports about the outside world (an activity's span, an incident's time).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class ActType(enum.StrEnum):
    """R2: the kind of administrative enforcement act."""

    LICENSING = "LICENSING"
    PENALTY = "PENALTY"
    INSPECTION = "INSPECTION"
    LEVY = "LEVY"


class Procedure(enum.StrEnum):
    """Penalty procedure (一般程序 / 简易程序); only penalties have one."""

    GENERAL = "GENERAL"
    SIMPLE = "SIMPLE"


class Stage(enum.StrEnum):
    """R3: the stages of a case, in their only forward order."""

    INITIATION = "INITIATION"
    INVESTIGATION = "INVESTIGATION"
    REVIEW_DECISION = "REVIEW_DECISION"
    SERVICE_EXECUTION = "SERVICE_EXECUTION"
    CLOSED = "CLOSED"
    ARCHIVED = "ARCHIVED"

    @property
    def order(self) -> int:
        return STAGE_ORDER.index(self)


STAGE_ORDER: tuple[Stage, ...] = tuple(Stage)
# Stages in which the enforcement work happens; activities are recorded only in these.
WORKING_STAGES: tuple[Stage, ...] = (
    Stage.INITIATION,
    Stage.INVESTIGATION,
    Stage.REVIEW_DECISION,
    Stage.SERVICE_EXECUTION,
)
# Stages that configuration may declare inapplicable to an act type (INITIATION, CLOSED and
# ARCHIVED apply to every case).
OPTIONAL_STAGES: tuple[Stage, ...] = (Stage.INVESTIGATION, Stage.REVIEW_DECISION, Stage.SERVICE_EXECUTION)


class CaseFlag(enum.StrEnum):
    """R5: flags that make audio-visual coverage of every activity mandatory."""

    MAJOR_COMPLEX = "MAJOR_COMPLEX"
    LEGACY_ISSUE = "LEGACY_ISSUE"
    DISPUTED = "DISPUTED"


class ActivityKind(enum.StrEnum):
    """R7: kinds of enforcement activity."""

    PATROL = "PATROL"
    EVIDENCE_COLLECTION = "EVIDENCE_COLLECTION"
    QUESTIONING = "QUESTIONING"
    DOCUMENT_SERVICE = "DOCUMENT_SERVICE"
    HEARING = "HEARING"


class RecordMode(enum.StrEnum):
    """R18, R19a: how an activity was recorded."""

    CONTINUOUS_AV = "CONTINUOUS_AV"
    KEY_STAGES_ONLY = "KEY_STAGES_ONLY"
    EXEMPT = "EXEMPT"


class ExemptionReason(enum.StrEnum):
    """R19a: the only reasons an activity may go unrecorded."""

    HAZARDOUS_CHEMICALS = "HAZARDOUS_CHEMICALS"
    CLASSIFIED_SITE = "CLASSIFIED_SITE"


class IncidentKind(enum.StrEnum):
    """R13: important events that trigger long-term retention of a case's recordings."""

    COMPLAINT = "COMPLAINT"
    DISPUTE = "DISPUTE"
    PETITION = "PETITION"
    OBSTRUCTION = "OBSTRUCTION"
    ASSAULT = "ASSAULT"
    MASS_INCIDENT = "MASS_INCIDENT"
    EMERGENCY = "EMERGENCY"
    OTHER_IMPORTANT = "OTHER_IMPORTANT"


# R5 (有异议的执法活动): these incidents make the case DISPUTED.
DISPUTING_INCIDENTS: frozenset[IncidentKind] = frozenset(
    {IncidentKind.COMPLAINT, IncidentKind.DISPUTE, IncidentKind.PETITION}
)


class TransitionKind(enum.StrEnum):
    """R3: what a history entry records."""

    OPENED = "OPENED"
    FORWARD = "FORWARD"
    RETURNED_FOR_REINVESTIGATION = "RETURNED_FOR_REINVESTIGATION"


class LegalReviewOutcome(enum.StrEnum):
    """Outcome of the legal review of a major decision (重大执法决定法制审核)."""

    APPROVED = "APPROVED"
    NOT_APPROVED = "NOT_APPROVED"


class PartyKind(enum.StrEnum):
    PERSON = "PERSON"
    ORGANIZATION = "ORGANIZATION"


@dataclass(frozen=True)
class Attribution:
    """R4: who did something, in which unit, at which server time."""

    subject: str
    unit: str
    at: datetime


@dataclass(frozen=True)
class Party:
    """当事人: the person or organisation the enforcement is directed at."""

    name: str
    kind: PartyKind
    identifier: str = ""


@dataclass(frozen=True)
class SkippedStage:
    """R3: a stage that does not apply to a case, with the configured reason."""

    stage: Stage
    reason: str


@dataclass(frozen=True)
class StageTransition:
    """R3, R4: one append-only history entry; `sequence` is its position (0 = the opening)."""

    sequence: int
    from_stage: Stage | None
    to_stage: Stage
    kind: TransitionKind
    reason: str
    changed: Attribution
    skipped: tuple[SkippedStage, ...] = ()


@dataclass(frozen=True)
class FlagRecord:
    """R5: a flag, why, in which stage it was set, by whom. Never removed."""

    flag: CaseFlag
    reason: str
    stage: Stage
    flagged: Attribution
    incident_id: str = ""


@dataclass(frozen=True)
class Incident:
    """R13: an important event on the case."""

    incident_id: str
    kind: IncidentKind
    occurred_at: datetime
    reporter: str
    description: str
    reason: str
    stage: Stage
    recorded: Attribution


@dataclass(frozen=True)
class Activity:
    """R7, R18, R19a: an enforcement activity and how it was recorded."""

    activity_id: str
    kind: ActivityKind
    started_at: datetime
    ended_at: datetime
    place: str
    officers: tuple[str, ...]
    record_mode: RecordMode
    key_stages_reason: str
    text_record_document_id: str
    exemption_reason: ExemptionReason | None
    exemption_note: str
    stage: Stage
    recorded: Attribution


@dataclass(frozen=True)
class Document:
    """R6: one document (文书) of the case file. Immutable; a correction supersedes it."""

    document_id: str
    document_type: str
    number: str
    title: str
    author: str
    signed_on: str
    sha256: str
    size_bytes: int
    content_type: str
    supersedes_document_id: str
    stage: Stage
    filed: Attribution


@dataclass(frozen=True)
class LegalReview:
    """The legal affairs office's review of a decision proposed in REVIEW_DECISION."""

    review_id: str
    outcome: LegalReviewOutcome
    opinion: str
    reviewed: Attribution


@dataclass(frozen=True)
class RecordingLink:
    """R5: a recording media-svc linked to one of the case's activities (case-svc's projection)."""

    recording_id: str
    activity_id: str
    sha256: str
    linked_at: datetime
    # Owning unit of the recording; another unit than the case's only when the legal affairs office
    # linked it (linked_by_legal_office), which is recorded as such.
    unit: str = ""
    recorded_from: datetime | None = None
    recorded_to: datetime | None = None
    linked_by_legal_office: bool = False

    def overlaps(self, started_at: datetime, ended_at: datetime) -> bool:
        """R5: the recording's time span shares at least an instant with [started_at, ended_at].

        A link that does not know its span (recorded before the span was carried) covers nothing: a
        recording of another day must not pass as the record of this activity.
        """
        if self.recorded_from is None or self.recorded_to is None:
            return False
        return self.recorded_from <= ended_at and self.recorded_to >= started_at


@dataclass(frozen=True)
class CaseFileGap:
    """R10: a document the checklist requires that the case file lacks."""

    document_type: str
    name: str
    required_because: str
