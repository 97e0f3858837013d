"""The facts compliance-svc reads from other services' events, in its own words (no protobuf here).

The adapter `adapters/event_mapping.py` turns each CloudEvent into one of these; an event type that
is not listed here carries nothing the rules need and is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class IngestFinding:
    """A finding media-svc attached to a recording at ingest (its code and requirement)."""

    code: str
    requirement: str
    detail: str


@dataclass(frozen=True, kw_only=True)
class Fact:
    """What every fact carries: the event id (evidence) and the event time (ce_time, UTC)."""

    event_id: str
    time: datetime


@dataclass(frozen=True, kw_only=True)
class RecordingIngested(Fact):
    recording_id: str
    unit: str
    officer: str
    device: str
    recorded_from: datetime
    recorded_to: datetime
    case_id: str
    activity_id: str
    findings: tuple[IngestFinding, ...]
    ingest_delay_s: float


@dataclass(frozen=True, kw_only=True)
class RecordingLinked(Fact):
    recording_id: str
    case_id: str
    activity_id: str
    unit: str
    officer: str
    device: str
    recorded_from: datetime
    recorded_to: datetime


@dataclass(frozen=True, kw_only=True)
class InterruptionExplained(Fact):
    device: str
    activity_id: str
    unit: str
    gap_from: datetime
    gap_to: datetime


@dataclass(frozen=True, kw_only=True)
class IntegrityCheckFailed(Fact):
    recording_id: str
    unit: str
    detail: str
    detected_by: str


@dataclass(frozen=True, kw_only=True)
class ActivityRecorded(Fact):
    case_id: str
    unit: str
    activity_id: str
    officers: tuple[str, ...]
    # EXEMPT activities (R19a) need no AV; KEY_STAGES_ONLY ones name their text record (R18).
    exempt: bool
    text_record: bool
    ended_at: datetime


@dataclass(frozen=True, kw_only=True)
class CaseFlagged(Fact):
    case_id: str
    unit: str
    flag: str


@dataclass(frozen=True, kw_only=True)
class CaseClosed(Fact):
    case_id: str
    unit: str
    closed_by: str


@dataclass(frozen=True, kw_only=True)
class CaseOpened(Fact):
    case_id: str
    unit: str
    officer: str
