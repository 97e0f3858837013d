"""Recordings (声像资料): classification metadata, ingest findings, links and integrity state.

A recording is evidence. Once its content is stored, its SHA-256 and size never change and no operation
of this model deletes or replaces them (R23-2). What may change afterwards is only additive: a link to a
case and activity (R5, R17), the result of integrity verifications, and (in `continuity`) explanations
of interruptions (R19c).

Pure Python: no I/O, no protobuf. Times are timezone-aware UTC `datetime`s, kept to the millisecond
(what the database stores), so a record reads back equal.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from servicekit.clock import to_ms
from servicekit.errors import FailedPrecondition, InvalidArgument

from media_svc.domain.cases import CaseParticulars
from media_svc.domain.events import IntegrityCheckFailed, RecordingEvent, RecordingIngested, RecordingLinked

MIB = 1024 * 1024
# Content is verified in blocks of this size when read (download): the SHA-256 of every block is
# recorded at ingest, so a corrupt block is detected before any of its bytes are released.
BLOCK_SIZE = MIB
MAX_ID_LEN = 64
MAX_TEXT_LEN = 200
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class MediaKind(enum.Enum):
    """R7: audio-visual records are video, audio or photo."""

    VIDEO = "VIDEO"
    AUDIO = "AUDIO"
    PHOTO = "PHOTO"


class IntegrityStatus(enum.Enum):
    UNVERIFIED = "UNVERIFIED"
    VERIFIED = "VERIFIED"
    FAILED = "FAILED"


def require_sha256(value: str, what: str = "sha256") -> str:
    text = value.strip().lower()
    if not _SHA256_HEX.match(text):
        raise InvalidArgument(
            f"{what} must be 64 hexadecimal characters (the SHA-256 of the file), got {value!r}"
        )
    return text


def _text(value: str, what: str, max_len: int, *, required: bool) -> str:
    text = value.strip()
    if required and not text:
        raise InvalidArgument(f"{what} is required")
    if len(text) > max_len:
        raise InvalidArgument(f"{what} is too long: {len(text)} characters, at most {max_len}")
    return text


@dataclass(frozen=True)
class SearchQuery:
    """R17 search criteria; empty strings / None mean "any"."""

    unit: str = ""
    device_number: str = ""
    officer: str = ""
    party: str = ""
    case_cause: str = ""
    case_id: str = ""
    media_kind: MediaKind | None = None
    recorded_after: datetime | None = None
    recorded_before: datetime | None = None


@dataclass(frozen=True)
class Attribution:
    """Who did something and when (server time), from the verified token (R4)."""

    subject: str
    unit: str
    at: datetime


@dataclass(frozen=True)
class Classification:
    """The metadata a recording is classified and searched by (R17) and whether the party was informed
    at the start (R19b). Declared by the uploader; never changed after ingest."""

    unit: str
    device_number: str
    officer: str
    recorded_from: datetime
    recorded_to: datetime
    media_kind: MediaKind
    party_informed: bool
    party: str = ""
    case_cause: str = ""
    case_id: str = ""
    activity_id: str = ""

    @classmethod
    def create(
        cls,
        *,
        unit: str,
        device_number: str,
        officer: str,
        recorded_from: datetime | None,
        recorded_to: datetime | None,
        media_kind: MediaKind | None,
        party_informed: bool,
        party: str = "",
        case_cause: str = "",
        case_id: str = "",
        activity_id: str = "",
    ) -> Classification:
        """Validates and normalises the declared metadata; raises `InvalidArgument` naming the field."""
        if recorded_from is None:
            raise InvalidArgument("recorded_from (recording start, UTC) is required")
        if recorded_to is None:
            raise InvalidArgument("recorded_to (recording end, UTC) is required")
        if media_kind is None:
            raise InvalidArgument("media_kind is required: VIDEO, AUDIO or PHOTO")
        start, end = to_ms(recorded_from), to_ms(recorded_to)
        if end < start:
            raise InvalidArgument(
                f"recorded_to {end.isoformat()} is before recorded_from {start.isoformat()}"
            )
        case_id = _text(case_id, "case_id", MAX_ID_LEN, required=False)
        activity_id = _text(activity_id, "activity_id", MAX_ID_LEN, required=False)
        if activity_id and not case_id:
            raise InvalidArgument("activity_id needs the case_id of the case the activity belongs to")
        return cls(
            unit=_text(unit, "unit", MAX_ID_LEN, required=True),
            device_number=_text(device_number, "device_number", MAX_ID_LEN, required=True),
            officer=_text(officer, "officer", MAX_ID_LEN, required=True),
            recorded_from=start,
            recorded_to=end,
            media_kind=media_kind,
            party_informed=party_informed,
            party=_text(party, "party", MAX_TEXT_LEN, required=False),
            case_cause=_text(case_cause, "case_cause", MAX_TEXT_LEN, required=False),
            case_id=case_id,
            activity_id=activity_id,
        )

    @property
    def declared_duration(self) -> timedelta:
        return self.recorded_to - self.recorded_from


@dataclass(frozen=True)
class MediaFacts:
    """What ffprobe found in the stored bytes."""

    format_name: str
    duration: timedelta
    codecs: tuple[str, ...]
    width: int = 0
    height: int = 0
    creation_time: datetime | None = None


@dataclass(frozen=True)
class Finding:
    """A compliance or technical doubt about a recording, recorded at ingest. Evidence is never refused."""

    code: str
    requirement: str
    detail: str


FINDING_PARTY_NOT_INFORMED = "R19B_PARTY_NOT_INFORMED"
FINDING_LATE_INGEST = "R11A_LATE_INGEST"
FINDING_DURATION_MISMATCH = "DURATION_MISMATCH"


@dataclass(frozen=True)
class IngestPolicy:
    """Thresholds of the ingest findings (configurable)."""

    # R11a: a recording ingested later than this after its end is a compliance finding (default 24 h).
    late_ingest_limit: timedelta = timedelta(hours=24)
    # A probed duration differing from the declared one by more than max(abs, ratio × declared) is a finding.
    duration_tolerance: timedelta = timedelta(seconds=5)
    duration_tolerance_ratio: float = 0.10


def ingest_findings(
    classification: Classification,
    facts: MediaFacts,
    ingested_at: datetime,
    policy: IngestPolicy,
    device_findings: Sequence[str] = (),
) -> list[Finding]:
    """Findings raised when a recording is ingested: R19b party not informed, R11a late ingest, a declared
    duration far from the probed one, and the device findings of R20/R21 (`"CODE: explanation"` strings
    from `media_svc.domain.devices.device_findings_for_recording`)."""
    out: list[Finding] = []
    if not classification.party_informed:
        out.append(
            Finding(
                FINDING_PARTY_NOT_INFORMED,
                "R19b",
                "the uploader declared that the party was not informed at the start of the recording",
            )
        )
    delay = ingested_at - classification.recorded_to
    if delay > policy.late_ingest_limit:
        out.append(
            Finding(
                FINDING_LATE_INGEST,
                "R11a",
                f"ingested {_hours(delay)} after the recording ended, later than the limit of "
                f"{_hours(policy.late_ingest_limit)}",
            )
        )
    if classification.media_kind is not MediaKind.PHOTO:
        declared = classification.declared_duration
        tolerance = max(policy.duration_tolerance, declared * policy.duration_tolerance_ratio)
        if abs(facts.duration - declared) > tolerance:
            out.append(
                Finding(
                    FINDING_DURATION_MISMATCH,
                    "",
                    f"declared duration {declared.total_seconds():.3f} s (recorded_to − recorded_from) "
                    f"differs from the probed {facts.duration.total_seconds():.3f} s by more than "
                    f"{tolerance.total_seconds():.3f} s",
                )
            )
    for text in device_findings:
        code, _, detail = text.partition(": ")
        requirement = code.split("_", 1)[0] if code[:1] == "R" and code[1:2].isdigit() else ""
        out.append(Finding(code, requirement, detail or text))
    return out


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"


def link_ids(case_id: str, activity_id: str) -> tuple[str, str]:
    """The case and activity ids of a link, checked and trimmed; raises `InvalidArgument` naming the field."""
    return (
        _text(case_id, "case_id", MAX_ID_LEN, required=True),
        _text(activity_id, "activity_id", MAX_ID_LEN, required=False),
    )


@dataclass(frozen=True)
class Link:
    case_id: str = ""
    activity_id: str = ""
    linked: Attribution | None = None
    # Made by the legal affairs office: the one link case-svc counts across units (R5).
    by_legal_office: bool = False


# ---------------------------------------------------------------------------------------------
# The Recording aggregate
# ---------------------------------------------------------------------------------------------


@dataclass
class Recording:
    recording_id: str
    sha256: str
    size_bytes: int
    classification: Classification
    facts: MediaFacts
    findings: tuple[Finding, ...]
    ingested: Attribution
    # SHA-256 of each BLOCK_SIZE block of the content, concatenated (32 bytes per block).
    block_hashes: bytes
    link: Link = field(default_factory=Link)
    integrity: IntegrityStatus = IntegrityStatus.UNVERIFIED
    integrity_checked_at: datetime | None = None
    # True from the write that links the recording to an activity until its segment is in the continuity
    # series of its device and activity (R19c); a sweep finishes what a crash left pending.
    continuity_pending: bool = False
    # The cause and parties of the linked case as media-svc last saw them (R17): searched beside the
    # uploader's declared party and cause, which stay as declared (classification is never changed).
    case_particulars: CaseParticulars | None = None
    version: int = 0
    events: list[RecordingEvent] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def ingest(
        cls,
        *,
        recording_id: str,
        sha256: str,
        size_bytes: int,
        classification: Classification,
        facts: MediaFacts,
        findings: Sequence[Finding],
        ingested: Attribution,
        block_hashes: bytes,
    ) -> Recording:
        """A recording whose content has just become durable. Emits RecordingIngested, and
        RecordingLinked when the upload named a case."""
        expected_blocks = max(1, -(-size_bytes // BLOCK_SIZE))
        if len(block_hashes) != 32 * expected_blocks:
            raise ValueError(f"{len(block_hashes) // 32} block hashes for {size_bytes} bytes")
        link = Link()
        if classification.case_id:
            link = Link(classification.case_id, classification.activity_id, ingested)
        rec = cls(
            recording_id=recording_id,
            sha256=sha256,
            size_bytes=size_bytes,
            classification=classification,
            facts=facts,
            findings=tuple(findings),
            ingested=ingested,
            block_hashes=block_hashes,
            link=link,
            continuity_pending=bool(link.activity_id),
        )
        rec.events.append(RecordingIngested(rec))
        if link.linked is not None:
            rec.events.append(RecordingLinked(rec, link.case_id, link.activity_id, ingested))
        return rec

    @property
    def unit(self) -> str:
        return self.classification.unit

    @property
    def ingest_delay(self) -> timedelta:
        """R11a: time from the recording's end to the moment its content was durable."""
        return self.ingested.at - self.classification.recorded_to

    @property
    def block_count(self) -> int:
        return len(self.block_hashes) // 32

    def block_hash(self, index: int) -> bytes:
        return self.block_hashes[32 * index : 32 * (index + 1)]

    def link_to(
        self, case_id: str, activity_id: str, by: Attribution, *, by_legal_office: bool = False
    ) -> bool:
        """Links the recording to a case (and activity). Additive only: the same link again is a no-op
        (returns False); an activity may be added to a case-only link; a link to another case or activity
        is refused, because it would rewrite what the evidence was filed under. Whether the case exists,
        has the activity and may be linked by this caller is checked before (`domain.cases.check_link`)."""
        case_id, activity_id = link_ids(case_id, activity_id)
        current = self.link
        if current.case_id and current.case_id != case_id:
            raise FailedPrecondition(
                f"recording {self.recording_id} is linked to case {current.case_id!r}; a link is never moved "
                f"to another case ({case_id!r})"
            )
        if current.activity_id and activity_id != current.activity_id:
            if not activity_id:
                return False
            raise FailedPrecondition(
                f"recording {self.recording_id} is linked to activity {current.activity_id!r}; "
                f"a link is never moved to another activity ({activity_id!r})"
            )
        if current.case_id == case_id and current.activity_id == activity_id:
            return False
        self.link = Link(case_id, activity_id, by, by_legal_office)
        self.continuity_pending = bool(activity_id)
        self.events.append(RecordingLinked(self, case_id, activity_id, by, by_legal_office))
        return True

    def take_case_particulars(self, particulars: CaseParticulars, case_unit: str) -> bool:
        """R17: the linked case's cause and parties become searchable on this recording. Only a newer
        version replaces what it holds (a late or repeated delivery changes nothing), and only from a case
        the recording may be linked to (its own unit's, or any by the legal affairs office — a link given
        at upload to another unit's case is not one); returns whether it changed."""
        if not self.link.case_id:
            return False
        if case_unit != self.unit and not self.link.by_legal_office:
            return False
        held = self.case_particulars
        if held is not None and held.version >= particulars.version:
            return False
        self.case_particulars = particulars
        return True

    @property
    def search_parties(self) -> tuple[str, ...]:
        """R17: the party names a search by party finds this recording under: the uploader's declared
        party and the linked case's parties."""
        case = self.case_particulars.parties if self.case_particulars else ()
        return tuple(dict.fromkeys(p for p in (self.classification.party, *case) if p))

    @property
    def search_causes(self) -> tuple[str, ...]:
        """R17: the causes a search by case cause finds this recording under (declared, and the case's)."""
        case = self.case_particulars.cause if self.case_particulars else ""
        return tuple(dict.fromkeys(c for c in (self.classification.case_cause, case) if c))

    def integrity_failed(
        self, *, actual_sha256: str, first_bad_offset: int, detected_by: str, at: datetime, detail: str
    ) -> IntegrityCheckFailed:
        """Records that the stored content no longer matches the hash recorded at ingest (R23-2). The
        recorded hash is kept: it is the proof of what the original was."""
        self.integrity = IntegrityStatus.FAILED
        self.integrity_checked_at = at if detected_by == "scrub" else self.integrity_checked_at
        event = IntegrityCheckFailed(
            recording_id=self.recording_id,
            unit=self.unit,
            expected_sha256=self.sha256,
            actual_sha256=actual_sha256,
            first_bad_offset=first_bad_offset,
            detected_by=detected_by,
            detected_at=at,
            detail=detail,
        )
        self.events.append(event)
        return event

    def integrity_verified(self, at: datetime) -> None:
        """A full re-hash matched. A FAILED status is not cleared: tampering once detected stays on record."""
        if self.integrity is not IntegrityStatus.FAILED:
            self.integrity = IntegrityStatus.VERIFIED
        self.integrity_checked_at = at

    def same_classification(self, other: Classification) -> bool:
        return other == self.classification
