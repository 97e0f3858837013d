"""Commands: what a caller asks case-svc to do, in domain terms (imperative names).

The gRPC layer builds them from requests (an API enum's zero value becomes `None`); each command's
`validate` checks everything that does not depend on the case's state and raises `InvalidArgument`
naming the field, before anything is read or written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from servicekit.errors import InvalidArgument

from case_svc.domain import validation as v
from case_svc.domain.model import (
    ActivityKind,
    ActType,
    CaseFlag,
    ExemptionReason,
    IncidentKind,
    LegalReviewOutcome,
    Party,
    PartyKind,
    Procedure,
    RecordMode,
    Stage,
)

CHINA_STANDARD_TIME = ZoneInfo("Asia/Shanghai")
MAX_REASON = 1000
MAX_LONG_TEXT = 4000
MAX_PARTIES = 20
MAX_OFFICERS = 20
MAX_ACTIVITY_SPAN = timedelta(days=7)
MAX_DOCUMENT_BYTES = 2 * 1024 * 1024
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*(;.*)?", re.IGNORECASE)


@dataclass(frozen=True)
class PartyInput:
    name: str
    kind: PartyKind | None
    identifier: str = ""


@dataclass(frozen=True)
class OpenCase:
    act_type: ActType | None
    procedure: Procedure | None
    unit: str
    cause: str
    responsible_officer: str
    parties: tuple[PartyInput, ...]
    request_id: str = ""

    def validate(self) -> tuple[ActType, tuple[Party, ...]]:
        act_type = v.required("act_type", self.act_type, ActType)
        if act_type is ActType.PENALTY and self.procedure is None:
            raise InvalidArgument("procedure: required for PENALTY cases (GENERAL or SIMPLE)")
        if act_type is not ActType.PENALTY and self.procedure is not None:
            raise InvalidArgument(
                f"procedure: only PENALTY cases have a procedure; leave it unspecified for {act_type.value}"
            )
        v.identifier("unit", self.unit)
        v.text("cause", self.cause, max_len=200)
        v.identifier("responsible_officer", self.responsible_officer)
        v.identifier("request_id", self.request_id, required=False)
        return act_type, _parties(self.parties)


def _parties(given: tuple[PartyInput, ...]) -> tuple[Party, ...]:
    if not given:
        raise InvalidArgument("parties: at least one party is required")
    if len(given) > MAX_PARTIES:
        raise InvalidArgument(f"parties: {len(given)} given; at most {MAX_PARTIES} allowed")
    parties = []
    for i, p in enumerate(given):
        v.text(f"parties[{i}].name", p.name, max_len=100)
        kind = v.required(f"parties[{i}].kind", p.kind, PartyKind)
        v.text(f"parties[{i}].identifier", p.identifier, max_len=64, required=False)
        parties.append(Party(p.name, kind, p.identifier))
    return tuple(parties)


@dataclass(frozen=True)
class CaseCommand:
    """A command on an existing case."""

    case_id: str

    def validate_case_id(self) -> None:
        v.identifier("case_id", self.case_id)


@dataclass(frozen=True)
class AdvanceStage(CaseCommand):
    to_stage: Stage | None
    reason: str

    def validate(self) -> Stage:
        self.validate_case_id()
        to_stage = v.required("to_stage", self.to_stage, Stage)
        v.text("reason", self.reason, max_len=MAX_REASON, multiline=True)
        return to_stage


@dataclass(frozen=True)
class ReturnForReinvestigation(CaseCommand):
    reason: str

    def validate(self) -> None:
        self.validate_case_id()
        v.text("reason", self.reason, max_len=MAX_REASON, multiline=True)


@dataclass(frozen=True)
class CloseCase(CaseCommand):
    reason: str

    def validate(self) -> None:
        self.validate_case_id()
        v.text("reason", self.reason, max_len=MAX_REASON, multiline=True)


@dataclass(frozen=True)
class ArchiveCase(CaseCommand):
    reason: str

    def validate(self) -> None:
        self.validate_case_id()
        v.text("reason", self.reason, max_len=MAX_REASON, multiline=True)


@dataclass(frozen=True)
class AmendCaseParticulars(CaseCommand):
    """The cause and parties from now on (变更案由, 追加/变更当事人), given in full."""

    cause: str
    parties: tuple[PartyInput, ...]
    reason: str

    def validate(self) -> tuple[Party, ...]:
        self.validate_case_id()
        v.text("cause", self.cause, max_len=200)
        parties = _parties(self.parties)
        v.text("reason", self.reason, max_len=MAX_REASON, multiline=True)
        return parties


@dataclass(frozen=True)
class FlagCase(CaseCommand):
    flag: CaseFlag | None
    reason: str

    def validate(self) -> CaseFlag:
        self.validate_case_id()
        flag = v.required("flag", self.flag, CaseFlag)
        v.text("reason", self.reason, max_len=MAX_REASON, multiline=True)
        return flag


@dataclass(frozen=True)
class RecordIncident(CaseCommand):
    kind: IncidentKind | None
    occurred_at: datetime | None
    reporter: str
    description: str
    reason: str = ""
    request_id: str = ""

    def validate(self, now: datetime) -> tuple[IncidentKind, datetime]:
        self.validate_case_id()
        kind = v.required("kind", self.kind, IncidentKind)
        occurred_at = v.instant("occurred_at", self.occurred_at, now=now)
        v.text("reporter", self.reporter, max_len=100)
        v.text("description", self.description, max_len=MAX_LONG_TEXT, multiline=True)
        v.text(
            "reason",
            self.reason,
            max_len=MAX_REASON,
            multiline=True,
            required=kind is IncidentKind.OTHER_IMPORTANT,
        )
        v.identifier("request_id", self.request_id, required=False)
        return kind, occurred_at


@dataclass(frozen=True)
class RecordActivity(CaseCommand):
    kind: ActivityKind | None
    started_at: datetime | None
    ended_at: datetime | None
    place: str
    officers: tuple[str, ...]
    record_mode: RecordMode | None
    key_stages_reason: str = ""
    text_record_document_id: str = ""
    exemption_reason: ExemptionReason | None = None
    exemption_note: str = ""
    request_id: str = ""

    def validate(self, now: datetime) -> tuple[ActivityKind, datetime, datetime, RecordMode]:
        self.validate_case_id()
        kind = v.required("kind", self.kind, ActivityKind)
        started = v.instant("started_at", self.started_at, now=now)
        ended = v.instant("ended_at", self.ended_at, now=now)
        if ended <= started:
            raise InvalidArgument(
                f"ended_at: {ended.isoformat()} is not after started_at {started.isoformat()}"
            )
        if ended - started > MAX_ACTIVITY_SPAN:
            raise InvalidArgument(
                f"ended_at: the activity spans {ended - started}; at most {MAX_ACTIVITY_SPAN.days} days "
                "per activity — record longer work as several activities"
            )
        v.text("place", self.place, max_len=200)
        v.identifiers("officers", self.officers, min_items=1, max_items=MAX_OFFICERS)
        mode = v.required("record_mode", self.record_mode, RecordMode)
        v.identifier("request_id", self.request_id, required=False)
        if mode is RecordMode.KEY_STAGES_ONLY:
            # R18: key stages only needs a written reason and a text record.
            v.text("key_stages_reason", self.key_stages_reason, max_len=MAX_REASON, multiline=True)
            if not self.text_record_document_id:
                raise InvalidArgument(
                    "text_record_document_id: required for KEY_STAGES_ONLY (R18): file the text record "
                    "of the activity as a document first and give its id"
                )
            v.identifier("text_record_document_id", self.text_record_document_id)
        else:
            for name in ("key_stages_reason", "text_record_document_id"):
                if getattr(self, name):
                    raise InvalidArgument(f"{name}: only for record_mode KEY_STAGES_ONLY (got {mode.value})")
        if mode is RecordMode.EXEMPT:
            # R19a: only hazardous chemicals or a classified site exempt an activity from AV recording.
            if self.exemption_reason is None:
                raise InvalidArgument(
                    "exemption_reason: required for EXEMPT (R19a): HAZARDOUS_CHEMICALS or CLASSIFIED_SITE; "
                    "for other obstacles record KEY_STAGES_ONLY with a reason"
                )
            v.text("exemption_note", self.exemption_note, max_len=MAX_REASON, multiline=True)
        else:
            if self.exemption_reason is not None:
                raise InvalidArgument(f"exemption_reason: only for record_mode EXEMPT (got {mode.value})")
            if self.exemption_note:
                raise InvalidArgument(f"exemption_note: only for record_mode EXEMPT (got {mode.value})")
        return kind, started, ended, mode


@dataclass(frozen=True)
class FileDocument(CaseCommand):
    document_type: str
    number: str
    title: str
    author: str
    signed_on: str
    content: bytes
    content_type: str
    sha256: str = ""
    supersedes_document_id: str = ""

    def validate(self, now: datetime) -> None:
        self.validate_case_id()
        if not self.document_type:
            raise InvalidArgument("document_type: required (a code of the document-type vocabulary)")
        v.text("number", self.number, max_len=64)
        v.text("title", self.title, max_len=200)
        v.text("author", self.author, max_len=100)
        v.calendar_date("signed_on", self.signed_on, today=now.astimezone(CHINA_STANDARD_TIME).date())
        if not self.content:
            raise InvalidArgument("content: required (the document's bytes, at most 2 MiB)")
        if len(self.content) > MAX_DOCUMENT_BYTES:
            raise InvalidArgument(
                f"content: {len(self.content)} bytes is too large; at most {MAX_DOCUMENT_BYTES} bytes (2 MiB)"
            )
        v.text("content_type", self.content_type, max_len=100)
        if not _CONTENT_TYPE.fullmatch(self.content_type):
            raise InvalidArgument(
                f"content_type: {self.content_type!r} is not a media type such as application/pdf"
            )
        if self.sha256:
            v.sha256_hex("sha256", self.sha256)
        v.identifier("supersedes_document_id", self.supersedes_document_id, required=False)


@dataclass(frozen=True)
class RecordLegalReview(CaseCommand):
    outcome: LegalReviewOutcome | None
    opinion: str

    def validate(self) -> LegalReviewOutcome:
        self.validate_case_id()
        outcome = v.required("outcome", self.outcome, LegalReviewOutcome)
        v.text("opinion", self.opinion, max_len=MAX_LONG_TEXT, multiline=True)
        return outcome


@dataclass(frozen=True)
class LinkRecording:
    """From media-svc's `RecordingLinked` event (R5 coverage projection)."""

    recording_id: str
    case_id: str
    activity_id: str
    unit: str
    sha256: str
    linked_at: datetime
    # The recording's time span (device clock, UTC); None when media-svc did not say.
    recorded_from: datetime | None = None
    recorded_to: datetime | None = None
    # Linked by the legal affairs office: the only link that may cross units (R5).
    linked_by_legal_office: bool = False

    def validate(self) -> None:
        v.identifier("recording_id", self.recording_id)
        v.identifier("case_id", self.case_id)
        v.identifier("activity_id", self.activity_id, required=False)
