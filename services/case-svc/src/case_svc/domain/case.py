"""The Case aggregate: one case (案件) and its whole case file (案卷), stored as one document.

Every command checks its input, the caller's rights (R8) and the rules of the regulation, and only
then raises events; the case's state changes *only* by applying events (`_apply`), so `Case.replay`
rebuilds any case from its published events plus the recording links it learned (R3, R4: nothing is
rewritten, the history is replayable). A refused command raises and changes nothing.

Rules enforced here (docs/case-svc.md maps each to its tests):
- R3: stages move forward only, to the next *applicable* stage; stages configuration declares
  inapplicable are recorded as skipped with their reason; the one backward move is the recorded
  return from REVIEW_DECISION to INVESTIGATION.
- R5: a flagged case (MAJOR_COMPLEX, LEGACY_ISSUE, DISPUTED) cannot leave its stage, nor close, while an
  activity that is not EXEMPT lacks a linked recording; complaints, disputes and petitions flag DISPUTED.
- R6, R10: documents are immutable; archiving needs the configured checklist complete.
- R7, R18, R19a: activity kinds, record modes, exemptions.
- R8: see `permissions`.
- R13: incidents.
- Legal review (Art. 1, 重大执法决定法制审核): a MAJOR_COMPLEX case leaves REVIEW_DECISION forward only
  after the legal affairs office approved in that visit of the stage.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from datetime import datetime
from typing import TypeVar

from servicekit.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from servicekit.policy import Actor

from case_svc.domain import commands as c
from case_svc.domain import events as e
from case_svc.domain.model import (
    DISPUTING_INCIDENTS,
    STAGE_ORDER,
    WORKING_STAGES,
    Activity,
    ActType,
    Attribution,
    CaseFileGap,
    CaseFlag,
    Document,
    FlagRecord,
    Incident,
    LegalReview,
    LegalReviewOutcome,
    Party,
    Procedure,
    RecordingLink,
    RecordMode,
    SkippedStage,
    Stage,
    StageTransition,
    TransitionKind,
)
from case_svc.domain.permissions import Action, authorize
from case_svc.domain.rules import RuleBook, rules_key

T = TypeVar("T")

# Stages AdvanceStage may move to; CLOSED and ARCHIVED have their own commands.
ADVANCE_TARGETS: tuple[Stage, ...] = (Stage.INVESTIGATION, Stage.REVIEW_DECISION, Stage.SERVICE_EXECUTION)


class Case:
    """A case. Construct with `Case.open` (new) or `Case.replay` (from events); adapters restore
    stored cases with `Case.restore`."""

    def __init__(self, case_id: str) -> None:
        self.case_id = case_id
        self.act_type: ActType = ActType.LICENSING
        self.procedure: Procedure | None = None
        self.unit = ""
        self.cause = ""
        self.responsible_officer = ""
        self.parties: tuple[Party, ...] = ()
        self.stage: Stage = Stage.INITIATION
        self.opened: Attribution | None = None
        self.inapplicable_stages: tuple[SkippedStage, ...] = ()
        self.flags: list[FlagRecord] = []
        self.history: list[StageTransition] = []
        self.activities: list[Activity] = []
        self.documents: list[Document] = []
        self.incidents: list[Incident] = []
        self.legal_reviews: list[LegalReview] = []
        self.recording_links: list[RecordingLink] = []
        # Index into legal_reviews where the current visit of REVIEW_DECISION began.
        self.review_visit_start = 0
        # Optimistic-concurrency version of the stored document (0 = never stored).
        self.version = 0
        # Events raised since the case was loaded; the repository writes them to the outbox.
        self.events: list[e.CaseEvent] = []

    # ------------------------------------------------------------------ construction

    @classmethod
    def open(cls, cmd: c.OpenCase, actor: Actor, now: datetime, case_id: str, rules: RuleBook) -> Case:
        act_type, parties = cmd.validate()
        authorize(actor, Action.OPEN_CASE, cmd.unit)
        case_rules = rules.for_case(act_type, cmd.procedure)
        inapplicable = tuple(
            SkippedStage(stage, case_rules.inapplicable_stages[stage])
            for stage in STAGE_ORDER
            if stage in case_rules.inapplicable_stages
        )
        case = cls(case_id)
        case._raise(
            e.CaseOpened(
                case_id=case_id,
                act_type=act_type,
                procedure=cmd.procedure,
                unit=cmd.unit,
                cause=cmd.cause,
                responsible_officer=cmd.responsible_officer,
                parties=parties,
                transition=StageTransition(
                    sequence=0,
                    from_stage=None,
                    to_stage=Stage.INITIATION,
                    kind=TransitionKind.OPENED,
                    reason=f"opened: {cmd.cause}",
                    changed=_attribution(actor, now),
                ),
                inapplicable_stages=inapplicable,
            )
        )
        return case

    @classmethod
    def replay(cls, events: Iterable[e.CaseEvent]) -> Case:
        """Rebuilds a case from its events (published ones and recording links), oldest first.
        Applying an event twice (at-least-once delivery) is harmless."""
        case: Case | None = None
        for event in events:
            if case is None:
                if not isinstance(event, e.CaseOpened):
                    raise ValueError(f"a case's history starts with CaseOpened, not {type(event).__name__}")
                case = cls(event.case_id)
            elif event.case_id != case.case_id:
                raise ValueError(f"event of case {event.case_id} in the history of {case.case_id}")
            case._apply(event)
        if case is None:
            raise ValueError("no events to replay")
        return case

    @classmethod
    def restore(cls, case_id: str, version: int, **state: object) -> Case:
        """Rebuilds a stored case from its fields (used by the repository)."""
        case = cls(case_id)
        for name, value in state.items():
            if not hasattr(case, name) or name in ("events", "version", "case_id"):
                raise ValueError(f"unknown case field {name!r}")
            setattr(case, name, value)
        case.version = version
        return case

    # ------------------------------------------------------------------ queries

    @property
    def flag_set(self) -> frozenset[CaseFlag]:
        return frozenset(f.flag for f in self.flags)

    @property
    def opened_at(self) -> datetime:
        assert self.opened is not None
        return self.opened.at

    def activity(self, activity_id: str) -> Activity | None:
        return next((a for a in self.activities if a.activity_id == activity_id), None)

    def document(self, document_id: str) -> Document | None:
        return next((d for d in self.documents if d.document_id == document_id), None)

    def recording_ids(self, activity_id: str) -> tuple[str, ...]:
        return tuple(link.recording_id for link in self.recording_links if link.activity_id == activity_id)

    def covers(self, link: RecordingLink) -> bool:
        """R5: whether ``link`` covers its activity: an activity of this case, a recording of the case's
        unit (or linked across units by the legal affairs office), recorded during the activity."""
        activity = self.activity(link.activity_id) if link.activity_id else None
        if activity is None:
            return False
        if link.unit and link.unit != self.unit and not link.linked_by_legal_office:
            return False
        return link.overlaps(activity.started_at, activity.ended_at)

    def uncovered_activities(self) -> list[Activity]:
        """R5: activities that are not EXEMPT and have no linked recording overlapping them in time."""
        covered = {link.activity_id for link in self.recording_links if self.covers(link)}
        return [
            a
            for a in self.activities
            if a.record_mode is not RecordMode.EXEMPT and a.activity_id not in covered
        ]

    def current_visit_reviews(self) -> list[LegalReview]:
        return self.legal_reviews[self.review_visit_start :]

    def next_stage(self) -> tuple[Stage, tuple[SkippedStage, ...]]:
        """The next applicable stage after the current one, and the stages passed over on the way."""
        inapplicable = {s.stage: s for s in self.inapplicable_stages}
        skipped: list[SkippedStage] = []
        for stage in STAGE_ORDER[self.stage.order + 1 :]:
            if stage in inapplicable:
                skipped.append(inapplicable[stage])
                continue
            return stage, tuple(skipped)
        raise FailedPrecondition(f"case {self.case_id} is {self.stage.value}: it has no further stage")

    def file_gaps(self, rules: RuleBook) -> list[CaseFileGap]:
        """R10: the checklist's documents this case file lacks (superseded documents still count)."""
        case_rules = rules.for_case(self.act_type, self.procedure)
        kinds = frozenset(a.kind for a in self.activities)
        filed = {d.document_type for d in self.documents}
        return [
            CaseFileGap(r.document_type, rules.document_name(r.document_type), r.because)
            for r in case_rules.requirements
            if r.applies(kinds, self.flag_set) and r.document_type not in filed
        ]

    @property
    def rules_key(self) -> str:
        return rules_key(self.act_type, self.procedure)

    # ------------------------------------------------------------------ stage changes (R3)

    def advance(self, cmd: c.AdvanceStage, actor: Actor, now: datetime) -> None:
        to_stage = cmd.validate()
        authorize(actor, Action.ADVANCE_STAGE, self.unit)
        if to_stage not in ADVANCE_TARGETS:
            hint = {Stage.CLOSED: "use CloseCase", Stage.ARCHIVED: "use ArchiveCase"}.get(
                to_stage, "cases start there when opened"
            )
            raise InvalidArgument(
                f"to_stage: AdvanceStage moves to INVESTIGATION, REVIEW_DECISION or SERVICE_EXECUTION; "
                f"for {to_stage.value} {hint}"
            )
        self._require_working_stage("advance")
        expected, skipped = self.next_stage()
        if to_stage != expected:
            raise FailedPrecondition(self._wrong_target(to_stage, expected))
        self._check_may_leave(forward=True)
        self._raise(
            e.CaseStageAdvanced(
                case_id=self.case_id,
                unit=self.unit,
                transition=StageTransition(
                    len(self.history),
                    self.stage,
                    to_stage,
                    TransitionKind.FORWARD,
                    cmd.reason,
                    _attribution(actor, now),
                    skipped,
                ),
            )
        )

    def return_for_reinvestigation(
        self, cmd: c.ReturnForReinvestigation, actor: Actor, now: datetime
    ) -> None:
        cmd.validate()
        authorize(actor, Action.RETURN_FOR_REINVESTIGATION, self.unit)
        if self.stage is not Stage.REVIEW_DECISION:
            raise FailedPrecondition(
                f"R3: only a case in REVIEW_DECISION can be returned for reinvestigation; "
                f"case {self.case_id} is in {self.stage.value}"
            )
        if any(s.stage is Stage.INVESTIGATION for s in self.inapplicable_stages):
            raise FailedPrecondition(
                f"R3: INVESTIGATION does not apply to {self.rules_key} cases, "
                "so there is nothing to return to"
            )
        self._check_may_leave(forward=False)
        self._raise(
            e.CaseReturnedForReinvestigation(
                case_id=self.case_id,
                unit=self.unit,
                transition=StageTransition(
                    len(self.history),
                    self.stage,
                    Stage.INVESTIGATION,
                    TransitionKind.RETURNED_FOR_REINVESTIGATION,
                    cmd.reason,
                    _attribution(actor, now),
                ),
            )
        )

    def close(self, cmd: c.CloseCase, actor: Actor, now: datetime) -> None:
        cmd.validate()
        authorize(actor, Action.CLOSE_CASE, self.unit)
        self._require_working_stage("close")
        expected, skipped = self.next_stage()
        if expected is not Stage.CLOSED:
            raise FailedPrecondition(
                f"R3: case {self.case_id} is in {self.stage.value}; it closes from its last working stage — "
                f"advance it to {expected.value} first"
            )
        self._check_may_leave(forward=True)
        self._check_may_close()
        self._raise(
            e.CaseClosed(
                case_id=self.case_id,
                unit=self.unit,
                act_type=self.act_type,
                procedure=self.procedure,
                transition=StageTransition(
                    len(self.history),
                    self.stage,
                    Stage.CLOSED,
                    TransitionKind.FORWARD,
                    cmd.reason,
                    _attribution(actor, now),
                    skipped,
                ),
            )
        )

    def archive(self, cmd: c.ArchiveCase, actor: Actor, now: datetime, rules: RuleBook) -> None:
        cmd.validate()
        authorize(actor, Action.ARCHIVE_CASE, self.unit)
        if self.stage is not Stage.CLOSED:
            raise FailedPrecondition(
                f"R3: only a CLOSED case can be archived; case {self.case_id} is in {self.stage.value}"
            )
        gaps = self.file_gaps(rules)
        if gaps:
            missing = "; ".join(
                f"{g.document_type} ({g.name}"
                + ("" if g.required_because == "always" else f", {g.required_because}")
                + ")"
                for g in gaps
            )
            raise FailedPrecondition(
                f"R10: the case file of {self.case_id} is incomplete under checklist {self.rules_key}; "
                f"file the missing documents first: {missing}"
            )
        self._check_may_leave(forward=True)
        self._raise(
            e.CaseArchived(
                case_id=self.case_id,
                unit=self.unit,
                act_type=self.act_type,
                procedure=self.procedure,
                transition=StageTransition(
                    len(self.history),
                    self.stage,
                    Stage.ARCHIVED,
                    TransitionKind.FORWARD,
                    cmd.reason,
                    _attribution(actor, now),
                ),
                documents=tuple(self.documents),
            )
        )

    # ------------------------------------------------------------------ particulars

    def amend_particulars(self, cmd: c.AmendCaseParticulars, actor: Actor, now: datetime) -> bool:
        """A new cause and parties (变更案由, 追加/变更当事人) while the case is open; returns False (and
        changes nothing) when they are the ones it has."""
        parties = cmd.validate()
        authorize(actor, Action.AMEND_PARTICULARS, self.unit)
        self._require_working_stage("amend the cause and parties of")
        if (cmd.cause, parties) == (self.cause, self.parties):
            return False
        self._raise(
            e.CaseParticularsAmended(
                self.case_id, self.unit, cmd.cause, parties, self.cause, self.parties, cmd.reason,
                _attribution(actor, now),
            )
        )  # fmt: skip
        return True

    # ------------------------------------------------------------------ flags (R5) and incidents (R13)

    def flag(self, cmd: c.FlagCase, actor: Actor, now: datetime) -> bool:
        """Sets a flag; returns False (and changes nothing) when the case already has it."""
        flag = cmd.validate()
        authorize(actor, Action.FLAG_CASE, self.unit)
        if flag in self.flag_set:
            return False
        self._raise(
            e.CaseFlagged(
                self.case_id, self.unit, FlagRecord(flag, cmd.reason, self.stage, _attribution(actor, now))
            )
        )
        return True

    def record_incident(
        self, cmd: c.RecordIncident, actor: Actor, now: datetime, incident_id: str
    ) -> Incident:
        kind, occurred_at = cmd.validate(now)
        authorize(actor, Action.RECORD_INCIDENT, self.unit)
        existing = next((i for i in self.incidents if i.incident_id == incident_id), None)
        if existing is not None:
            return existing  # a repeated request (same request_id)
        incident = Incident(
            incident_id=incident_id,
            kind=kind,
            occurred_at=occurred_at,
            reporter=cmd.reporter,
            description=cmd.description,
            reason=cmd.reason,
            stage=self.stage,
            recorded=_attribution(actor, now),
        )
        self._raise(e.CaseIncidentRecorded(self.case_id, self.unit, self.act_type, self.procedure, incident))
        if kind in DISPUTING_INCIDENTS and CaseFlag.DISPUTED not in self.flag_set:
            # R5 (有异议的执法活动): a complaint, dispute or petition makes the case disputed.
            self._raise(
                e.CaseFlagged(
                    self.case_id,
                    self.unit,
                    FlagRecord(
                        CaseFlag.DISPUTED,
                        f"{kind.value} incident {incident_id}: {cmd.description[:200]}",
                        self.stage,
                        _attribution(actor, now),
                        incident_id,
                    ),
                )
            )
        return incident

    # ------------------------------------------------------------------ activities (R7, R18, R19a)

    def record_activity(
        self, cmd: c.RecordActivity, actor: Actor, now: datetime, activity_id: str
    ) -> Activity:
        kind, started, ended, mode = cmd.validate(now)
        authorize(actor, Action.RECORD_ACTIVITY, self.unit)
        existing = self.activity(activity_id)
        if existing is not None:
            return existing  # a repeated request (same request_id)
        self._require_working_stage("record an activity on")
        if mode is RecordMode.KEY_STAGES_ONLY and self.document(cmd.text_record_document_id) is None:
            raise FailedPrecondition(
                f"R18: text_record_document_id {cmd.text_record_document_id!r} is not a document of case "
                f"{self.case_id}; file the text record with FileDocument first"
            )
        activity = Activity(
            activity_id=activity_id,
            kind=kind,
            started_at=started,
            ended_at=ended,
            place=cmd.place,
            officers=tuple(cmd.officers),
            record_mode=mode,
            key_stages_reason=cmd.key_stages_reason,
            text_record_document_id=cmd.text_record_document_id,
            exemption_reason=cmd.exemption_reason,
            exemption_note=cmd.exemption_note,
            stage=self.stage,
            recorded=_attribution(actor, now),
        )
        self._raise(e.ActivityRecorded(self.case_id, self.unit, activity))
        return activity

    # ------------------------------------------------------------------ documents (R6)

    def file_document(
        self, cmd: c.FileDocument, actor: Actor, now: datetime, document_id: str, sha256: str, rules: RuleBook
    ) -> Document:
        """Files a document whose content the caller already hashed (`sha256`, computed by the server).
        Filing the same document again (same type, number and content) returns the one on file."""
        cmd.validate(now)
        if cmd.document_type not in rules.document_types:
            raise InvalidArgument(
                f"document_type: {cmd.document_type!r} is not in the document-type vocabulary; use one of "
                + ", ".join(sorted(rules.document_types))
            )
        if cmd.sha256 and cmd.sha256 != sha256:
            raise InvalidArgument(
                f"sha256: the content received hashes to {sha256}, not {cmd.sha256}; "
                "the content was altered or truncated on the way — send it again"
            )
        authorize(actor, Action.FILE_DOCUMENT, self.unit, stage=self.stage)
        if self.stage is Stage.ARCHIVED:
            raise FailedPrecondition(f"R10: case {self.case_id} is archived; its case file is final")
        same_number = next(
            (d for d in self.documents if d.document_type == cmd.document_type and d.number == cmd.number),
            None,
        )
        if same_number is not None:
            if same_number.sha256 == sha256:
                return same_number  # a repeated request
            raise AlreadyExists(
                f"R6: a {cmd.document_type} numbered {cmd.number!r} is already on file as "
                f"{same_number.document_id} with different content; documents are immutable — file the "
                "correction under a new number with supersedes_document_id"
            )
        if cmd.supersedes_document_id and self.document(cmd.supersedes_document_id) is None:
            raise FailedPrecondition(
                f"supersedes_document_id: {cmd.supersedes_document_id!r} "
                f"is not a document of case {self.case_id}"
            )
        document = Document(
            document_id=document_id,
            document_type=cmd.document_type,
            number=cmd.number,
            title=cmd.title,
            author=cmd.author,
            signed_on=cmd.signed_on,
            sha256=sha256,
            size_bytes=len(cmd.content),
            content_type=cmd.content_type,
            supersedes_document_id=cmd.supersedes_document_id,
            stage=self.stage,
            filed=_attribution(actor, now),
        )
        self._raise(e.DocumentFiled(self.case_id, self.unit, document))
        return document

    # ------------------------------------------------------------------ legal review (Art. 1)

    def record_legal_review(
        self, cmd: c.RecordLegalReview, actor: Actor, now: datetime, review_id: str
    ) -> LegalReview:
        outcome = cmd.validate()
        authorize(actor, Action.RECORD_LEGAL_REVIEW, self.unit)
        if self.stage is not Stage.REVIEW_DECISION:
            raise FailedPrecondition(
                f"a legal review is recorded while the case is in REVIEW_DECISION; case {self.case_id} is in "
                f"{self.stage.value}"
            )
        review = LegalReview(review_id, outcome, cmd.opinion, _attribution(actor, now))
        self._raise(e.LegalReviewRecorded(self.case_id, self.unit, review))
        return review

    # ------------------------------------------------------------------ AV coverage projection (R5)

    def note_recording_link(self, cmd: c.LinkRecording) -> bool:
        """Records that media-svc linked a recording; False (no change) when already known.

        R5 refuses what must never count as coverage, so it is parked (dead-lettered) where operators
        see it instead of silently sitting in the case: a link naming an activity this case does not
        have, and a recording of another unit unless the legal affairs office linked it (then it is
        kept with ``linked_by_legal_office``). A link whose recording does not overlap its activity
        in time is kept (the recording is still part of the case) but covers nothing.
        """
        if any(
            link.recording_id == cmd.recording_id and link.activity_id == cmd.activity_id
            for link in self.recording_links
        ):
            return False
        if cmd.activity_id and self.activity(cmd.activity_id) is None:
            raise UnknownActivityLinked(
                f"R5: recording {cmd.recording_id} is linked to activity {cmd.activity_id}, which case "
                f"{self.case_id} does not have; a link to an unknown activity is not AV coverage",
                metadata={"case_id": self.case_id, "activity_id": cmd.activity_id},
            )
        if cmd.unit and cmd.unit != self.unit and not cmd.linked_by_legal_office:
            raise CrossUnitLink(
                f"R5: recording {cmd.recording_id} belongs to unit {cmd.unit!r} but case {self.case_id} to "
                f"unit {self.unit!r}; only the legal affairs office may link a recording across units",
                metadata={"case_id": self.case_id, "recording_unit": cmd.unit, "case_unit": self.unit},
            )
        self._raise(
            e.RecordingLinkNoted(
                self.case_id,
                RecordingLink(
                    cmd.recording_id,
                    cmd.activity_id,
                    cmd.sha256,
                    cmd.linked_at,
                    unit=cmd.unit,
                    recorded_from=cmd.recorded_from,
                    recorded_to=cmd.recorded_to,
                    linked_by_legal_office=cmd.linked_by_legal_office and cmd.unit != self.unit,
                ),
            )
        )
        return True

    # ------------------------------------------------------------------ rules shared by stage changes

    def _require_working_stage(self, what: str) -> None:
        if self.stage not in WORKING_STAGES:
            raise FailedPrecondition(f"R3: cannot {what} case {self.case_id}: it is {self.stage.value}")

    def _wrong_target(self, to_stage: Stage, expected: Stage) -> str:
        inapplicable = {s.stage: s.reason for s in self.inapplicable_stages}
        if to_stage in inapplicable:
            return (
                f"R3: {to_stage.value} does not apply to {self.rules_key} cases ({inapplicable[to_stage]}); "
                f"the next stage of case {self.case_id} is {expected.value}"
            )
        if to_stage.order <= self.stage.order:
            return f"R3: stages only move forward; case {self.case_id} is already in {self.stage.value}" + (
                " (use ReturnForReinvestigation to send a decision back)"
                if to_stage is Stage.INVESTIGATION
                else ""
            )
        return (
            f"R3: case {self.case_id} is in {self.stage.value}; "
            f"its next stage is {expected.value}, not {to_stage.value}"
        )

    def _check_may_close(self) -> None:
        """R5: a flagged case with no enforcement activity at all has no AV record of anything.

        It closes only once an activity is recorded (and covered) or an R19a exemption is given —
        an EXEMPT activity, which needs its reason.
        """
        if self.flags and not self.activities:
            names = ", ".join(f.flag.value for f in self.flags)
            raise AvCoverageMissing(
                f"R5: case {self.case_id} is flagged {names} and has no enforcement activity recorded, "
                "so nothing of it is on AV record; record the activities (with their recordings linked) "
                "or an EXEMPT activity with its R19a reason before closing",
                reason="R5_NO_ACTIVITY_RECORDED",
                metadata={"case_id": self.case_id},
            )

    def _check_may_leave(self, *, forward: bool) -> None:
        flagged = self.flags
        if flagged:
            uncovered = self.uncovered_activities()
            if uncovered:
                listed = "; ".join(
                    f"{a.activity_id} ({a.kind.value} {a.started_at.isoformat()} at {a.place})"
                    for a in uncovered
                )
                names = ", ".join(f.flag.value for f in flagged)
                raise AvCoverageMissing(
                    f"R5: case {self.case_id} is flagged {names}; "
                    f"it cannot leave {self.stage.value} or close "
                    f"until every activity that is not EXEMPT is covered by a linked recording. "
                    f"Uncovered ({len(uncovered)}): {listed} (a recording covers an activity when it is "
                    "linked to it, of the case's unit or linked by the legal affairs office, and its time "
                    "span overlaps the activity's)",
                    metadata={
                        "case_id": self.case_id,
                        "uncovered": ",".join(a.activity_id for a in uncovered),
                    },
                )
        if forward and self.stage is Stage.REVIEW_DECISION and CaseFlag.MAJOR_COMPLEX in self.flag_set:
            reviews = self.current_visit_reviews()
            if not reviews or reviews[-1].outcome is not LegalReviewOutcome.APPROVED:
                state = (
                    "no legal review has been recorded since it entered REVIEW_DECISION"
                    if not reviews
                    else f"the latest legal review ({reviews[-1].review_id}) did not approve"
                )
                raise FailedPrecondition(
                    f"legal review (重大执法决定法制审核): case {self.case_id} is MAJOR_COMPLEX and {state}; "
                    "the legal affairs office must record an approving review before the decision moves on"
                )

    # ------------------------------------------------------------------ events

    def _raise(self, event: e.CaseEvent) -> None:
        self._apply(event)
        self.events.append(event)

    def _apply(self, event: e.CaseEvent) -> None:
        match event:
            case e.CaseOpened():
                if self.opened is not None:
                    return  # the same event applied twice
                self.act_type = event.act_type
                self.procedure = event.procedure
                self.unit = event.unit
                self.cause = event.cause
                self.responsible_officer = event.responsible_officer
                self.parties = event.parties
                self.stage = event.transition.to_stage
                self.opened = event.transition.changed
                self.inapplicable_stages = event.inapplicable_stages
                self._append_history(event.transition)
            case (
                e.CaseStageAdvanced() | e.CaseReturnedForReinvestigation() | e.CaseClosed() | e.CaseArchived()
            ):
                self._move(event.transition)
            case e.CaseParticularsAmended():
                # the newest values: applying the same event again leaves them as they are
                self.cause = event.cause
                self.parties = event.parties
            case e.CaseFlagged():
                if event.flag.flag not in self.flag_set:
                    self.flags.append(event.flag)
            case e.CaseIncidentRecorded():
                _append_unique(self.incidents, event.incident, lambda i: i.incident_id)
            case e.ActivityRecorded():
                _append_unique(self.activities, event.activity, lambda a: a.activity_id)
            case e.DocumentFiled():
                _append_unique(self.documents, event.document, lambda d: d.document_id)
            case e.LegalReviewRecorded():
                _append_unique(self.legal_reviews, event.review, lambda r: r.review_id)
            case e.RecordingLinkNoted():
                _append_unique(self.recording_links, event.link, lambda lk: (lk.recording_id, lk.activity_id))
            case _:
                raise TypeError(f"unknown case event {type(event).__name__}")

    def _move(self, transition: StageTransition) -> None:
        if transition.sequence < len(self.history):
            return  # the same event applied twice
        if transition.sequence > len(self.history):
            raise ValueError(
                f"case {self.case_id}: history entry {transition.sequence} arrived before "
                f"entry {len(self.history)}"
            )
        self.stage = transition.to_stage
        if transition.to_stage is Stage.REVIEW_DECISION:
            self.review_visit_start = len(self.legal_reviews)
        self._append_history(transition)

    def _append_history(self, transition: StageTransition) -> None:
        self.history.append(transition)

    def snapshot(self) -> dict[str, object]:
        """The case's state as plain fields (for equality checks of replays)."""
        return {name: value for name, value in vars(self).items() if name not in ("events", "version")}


def _attribution(actor: Actor, now: datetime) -> Attribution:
    return Attribution(actor.subject, actor.unit, now)


def _append_unique(items: list[T], item: T, key: Callable[[T], Hashable]) -> None:
    """Appends `item` unless an item with the same key is there (events may be applied twice)."""
    k = key(item)
    if all(key(existing) != k for existing in items):
        items.append(item)


# ---------------------------------------------------------------------- R5 refusals (stable reasons)


class AvCoverageMissing(FailedPrecondition):
    """R5: a flagged case lacks AV coverage of its enforcement activities."""

    REASON = "R5_AV_COVERAGE_MISSING"


class UnknownActivityLinked(NotFound):
    """R5: a recording link names an activity the case does not have."""

    REASON = "R5_UNKNOWN_ACTIVITY"


class CrossUnitLink(PermissionDenied):
    """R5: a recording of another unit, not linked by the legal affairs office."""

    REASON = "R5_CROSS_UNIT_LINK"
