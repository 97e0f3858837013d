"""Continuity of recording (R19c 连续完整；中断须在后续视音频中说明，或事后书面说明).

The segments one device recorded during one enforcement activity form a `Series`. Between consecutive
segments (ordered by start) there may be a gap: the time from the latest end so far to the next start.
Every gap longer than the configured threshold needs an interruption explanation — spoken in a later
recording (its id and the offset into it) or written afterwards (text and author). Unexplained gaps are
compliance findings.

An explanation covers the time span of the gap it was given for. When a late-arriving segment later
splits that gap, the parts stay covered: explanations are never lost or rewritten, only added.

Pure Python.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from servicekit.errors import FailedPrecondition, InvalidArgument

from media_svc.domain.events import InterruptionExplained
from media_svc.domain.recordings import Attribution

MAX_EXPLANATION_LEN = 4000


def series_id(case_id: str, activity_id: str, device_number: str) -> str:
    """Stable id of the series of one device during one activity (ids may contain any character)."""
    raw = json.dumps([case_id, activity_id, device_number], ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Segment:
    recording_id: str
    recorded_from: datetime
    recorded_to: datetime


@dataclass(frozen=True)
class Gap:
    previous_recording_id: str
    next_recording_id: str
    gap_from: datetime
    gap_to: datetime

    @property
    def duration(self) -> timedelta:
        return self.gap_to - self.gap_from


@dataclass(frozen=True)
class Explanation:
    """An interruption explanation (中断说明) covering [gap_from, gap_to] of its series."""

    next_recording_id: str
    previous_recording_id: str
    gap_from: datetime
    gap_to: datetime
    explained: Attribution
    spoken_in_recording_id: str = ""
    spoken_offset: timedelta | None = None
    written_text: str = ""

    def covers(self, gap: Gap) -> bool:
        return self.gap_from <= gap.gap_from and gap.gap_to <= self.gap_to


@dataclass
class Series:
    """The segments of one device during one activity and the explanations of their gaps."""

    series_id: str
    unit: str
    case_id: str
    activity_id: str
    device_number: str
    segments: list[Segment] = field(default_factory=list)
    explanations: list[Explanation] = field(default_factory=list)
    version: int = 0
    events: list[InterruptionExplained] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def start(cls, *, unit: str, case_id: str, activity_id: str, device_number: str) -> Series:
        return cls(series_id(case_id, activity_id, device_number), unit, case_id, activity_id, device_number)

    def add_segment(self, segment: Segment) -> bool:
        """Adds a recording's segment; False when it is already there (idempotent)."""
        if any(s.recording_id == segment.recording_id for s in self.segments):
            return False
        self.segments.append(segment)
        self.segments.sort(key=lambda s: (s.recorded_from, s.recorded_to, s.recording_id))
        return True

    def gaps(self) -> list[Gap]:
        """Every gap between consecutive segments: from the latest end so far to the next start
        (overlapping segments leave no gap)."""
        out: list[Gap] = []
        if not self.segments:
            return out
        latest = self.segments[0]
        for seg in self.segments[1:]:
            if seg.recorded_from > latest.recorded_to:
                out.append(Gap(latest.recording_id, seg.recording_id, latest.recorded_to, seg.recorded_from))
            if seg.recorded_to >= latest.recorded_to:
                latest = seg
        return out

    def explanation_of(self, gap: Gap) -> Explanation | None:
        return next((e for e in self.explanations if e.covers(gap)), None)

    def unexplained_gaps(self, threshold: timedelta) -> list[Gap]:
        return [g for g in self.gaps() if g.duration > threshold and self.explanation_of(g) is None]

    @property
    def longest_unexplained_gap(self) -> timedelta:
        """Longest gap without explanation (whatever the threshold), zero when none: stored so that
        "series with a gap over the threshold" is an indexed query that follows threshold changes."""
        return max((g.duration for g in self.unexplained_gaps(timedelta(0))), default=timedelta(0))

    def gap_before(self, recording_id: str) -> Gap:
        for gap in self.gaps():
            if gap.next_recording_id == recording_id:
                return gap
        raise FailedPrecondition(
            f"recording {recording_id} has no gap before it in the series of device {self.device_number} "
            f"during activity {self.activity_id}: nothing to explain"
        )

    def explain(
        self,
        *,
        next_recording_id: str,
        explained: Attribution,
        written_text: str = "",
        spoken_in: Segment | None = None,
        spoken_offset: timedelta | None = None,
    ) -> Explanation:
        """Explains the gap before `next_recording_id` (R19c): either spoken in a later recording
        (`spoken_in`, which must start at or after the end of the gap) or written afterwards."""
        gap = self.gap_before(next_recording_id)
        text = written_text.strip()
        if bool(text) == (spoken_in is not None):
            raise InvalidArgument(
                "give exactly one explanation: the later recording it is spoken in, or a written text"
            )
        if len(text) > MAX_EXPLANATION_LEN:
            raise InvalidArgument(
                f"written explanation is too long: {len(text)} characters, at most {MAX_EXPLANATION_LEN}"
            )
        if spoken_in is not None:
            offset = spoken_offset or timedelta(0)
            if offset < timedelta(0) or offset > spoken_in.recorded_to - spoken_in.recorded_from:
                raise InvalidArgument(
                    f"offset {offset.total_seconds():.3f} s is outside recording {spoken_in.recording_id} "
                    f"({(spoken_in.recorded_to - spoken_in.recorded_from).total_seconds():.3f} s long)"
                )
            if spoken_in.recorded_from < gap.gap_to:
                raise InvalidArgument(
                    f"recording {spoken_in.recording_id} starts {spoken_in.recorded_from.isoformat()}, "
                    f"before the end of the gap ({gap.gap_to.isoformat()}): an interruption is explained "
                    "in a later recording"
                )
        explanation = Explanation(
            next_recording_id=gap.next_recording_id,
            previous_recording_id=gap.previous_recording_id,
            gap_from=gap.gap_from,
            gap_to=gap.gap_to,
            explained=explained,
            spoken_in_recording_id=spoken_in.recording_id if spoken_in else "",
            spoken_offset=(spoken_offset or timedelta(0)) if spoken_in else None,
            written_text=text,
        )
        self.explanations.append(explanation)
        self.events.append(InterruptionExplained(self, gap, explanation))
        return explanation
