"""Use cases of continuity (R19c): enter linked segments into their series, explain interruptions,
list unexplained gaps.

A recording linked to an activity carries `continuity_pending` (set in the same write as the link) until
its segment is in the series document; `settle_pending` finishes any that a crash left behind, so a
series never misses a segment (single-document atomicity only: no transactions).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from servicekit.errors import (
    AlreadyExists,
    ConcurrencyConflict,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
)
from servicekit.paging import decode_page_token, encode_page_token, foreign_page_token

from media_svc.domain.continuity import Explanation, Gap, Segment, Series, series_id
from media_svc.domain.recordings import Attribution, Recording
from media_svc.service_layer.devices import Actor
from media_svc.service_layer.ports import RecordingRepository, SeriesRepository
from media_svc.service_layer.recordings import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    RecordingHandlers,
    can_see,
    utc_now_ms,
)

log = logging.getLogger(__name__)

DEFAULT_GAP_THRESHOLD = timedelta(seconds=60)
_ATTEMPTS = 10


@dataclass(frozen=True)
class SeriesGap:
    series: Series
    gap: Gap
    explanation: Explanation | None


@dataclass(frozen=True)
class GapPage:
    gaps: list[SeriesGap]
    next_page_token: str
    threshold: timedelta


class ContinuityHandlers:
    def __init__(
        self,
        *,
        recordings: RecordingRepository,
        series: SeriesRepository,
        recording_handlers: RecordingHandlers,
        gap_threshold: timedelta = DEFAULT_GAP_THRESHOLD,
        clock: Callable[[], datetime] = utc_now_ms,
    ) -> None:
        self._recordings = recordings
        self._series = series
        self._handlers = recording_handlers
        self.gap_threshold = gap_threshold
        self._clock = clock

    async def enter_segment(self, recording: Recording) -> None:
        """Adds the recording's segment to the series of its device and activity (idempotent), then clears
        its `continuity_pending` mark."""
        c = recording.classification
        if not recording.link.activity_id:
            return
        sid = series_id(recording.link.case_id, recording.link.activity_id, c.device_number)
        segment = Segment(recording.recording_id, c.recorded_from, c.recorded_to)
        for _ in range(_ATTEMPTS):
            current = await self._series.get(sid)
            try:
                if current is None:
                    new = Series.start(
                        unit=recording.unit,
                        case_id=recording.link.case_id,
                        activity_id=recording.link.activity_id,
                        device_number=c.device_number,
                    )
                    new.add_segment(segment)
                    await self._series.add(new)
                elif current.add_segment(segment):
                    await self._series.save(current)
                break
            except (AlreadyExists, ConcurrencyConflict):
                continue
        else:
            log.warning(
                "series %s busy; segment %s left pending for the next sweep", sid, recording.recording_id
            )
            return
        await self._recordings.mark_in_series(recording.recording_id)

    async def settle_pending(self, limit: int = 100) -> int:
        """Enters the segments a crash left pending; answers how many."""
        pending = await self._recordings.pending_continuity(limit)
        for recording in pending:
            await self.enter_segment(recording)
        return len(pending)

    async def explain(
        self,
        recording_id: str,
        actor: Actor,
        *,
        written_text: str = "",
        spoken_in_recording_id: str = "",
        spoken_offset: timedelta | None = None,
    ) -> SeriesGap:
        """R19c: explains the gap before `recording_id` → InterruptionExplained."""
        recording = await self._handlers.get(recording_id, actor)
        if recording.unit != actor.unit and not actor.supervises_all_units:
            raise PermissionDenied(
                f"only unit {recording.unit!r} may explain interruptions of its recordings"
            )
        if not recording.link.activity_id:
            raise FailedPrecondition(
                f"recording {recording_id} is not linked to an enforcement activity, so it is in no series; "
                "link it first (LinkRecording)"
            )
        spoken: Segment | None = None
        if spoken_in_recording_id:
            other = await self._handlers.get(spoken_in_recording_id, actor)
            if other.unit != recording.unit:
                raise InvalidArgument(
                    f"recording {spoken_in_recording_id} belongs to unit {other.unit!r}, "
                    f"not {recording.unit!r}"
                )
            oc = other.classification
            spoken = Segment(other.recording_id, oc.recorded_from, oc.recorded_to)
        c = recording.classification
        sid = series_id(recording.link.case_id, recording.link.activity_id, c.device_number)
        for _ in range(_ATTEMPTS):
            series = await self._series.get(sid)
            if series is None or all(s.recording_id != recording.recording_id for s in series.segments):
                await self.enter_segment(recording)
                series = await self._series.get(sid)
            if series is None:
                raise ConcurrencyConflict(
                    f"the series of recording {recording_id} is being created; try again"
                )
            explanation = series.explain(
                next_recording_id=recording.recording_id,
                explained=Attribution(actor.subject, actor.unit, self._clock()),
                written_text=written_text,
                spoken_in=spoken,
                spoken_offset=spoken_offset,
            )
            try:
                await self._series.save(series)
            except ConcurrencyConflict:
                continue
            gap = series.gap_before(recording.recording_id)
            return SeriesGap(series, gap, explanation)
        raise ConcurrencyConflict(f"the series of recording {recording_id} is busy; try again")

    async def unexplained_gaps(
        self, *, unit: str, case_id: str, page_size: int, page_token: str, actor: Actor
    ) -> GapPage:
        """Gaps over the threshold without explanation, per unit or per case (R19c)."""
        if bool(unit) == bool(case_id):
            raise InvalidArgument("give either a unit or a case_id")
        if unit and not can_see(actor, unit):
            raise PermissionDenied(
                f"{actor.subject!r} of unit {actor.unit!r} may list only its own unit's gaps (R8)"
            )
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            raise InvalidArgument(f"page_size must be 0 (default {DEFAULT_PAGE_SIZE}) to {MAX_PAGE_SIZE}")
        wanted = page_size or DEFAULT_PAGE_SIZE
        after = _decode(page_token)
        threshold = self.gap_threshold
        out: list[SeriesGap] = []
        last = after
        while True:
            batch = await self._series.with_unexplained_gaps(
                unit=unit,
                case_id=case_id,
                longer_than_s=threshold.total_seconds(),
                after_id=last,
                limit=wanted,
            )
            for i, series in enumerate(batch):
                last = series.series_id
                if can_see(actor, series.unit):
                    out.extend(SeriesGap(series, g, None) for g in series.unexplained_gaps(threshold))
                if len(out) >= wanted:
                    more = i < len(batch) - 1 or len(batch) == wanted
                    return GapPage(out, _encode(last) if more else "", threshold)
            if len(batch) < wanted:
                return GapPage(out, "", threshold)


def _encode(series_id_: str) -> str:
    return encode_page_token([series_id_])


def _decode(token: str) -> str:
    position = decode_page_token(token, field="page_token")
    if position is None:
        return ""
    if len(position) != 1 or not isinstance(position[0], str):
        raise foreign_page_token("page_token")
    return position[0]
