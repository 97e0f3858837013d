"""The compliance rules: from facts (events) and the passing of time to raised findings.

`Monitor` keeps what the time-based rules wait for in a mutable mapping of plain JSON values
(in production a faust table, so the state survives restarts through its changelog; in unit tests a
dict). Every value is replaced, never mutated in place: a faust table only records assignments.

- `observe(fact)` — the findings an event raises at once (R11a, R19b, R20/R21 from ingest; R23-2; R5)
  and the waits it starts or ends (unlinked recordings, activities without records, gaps).
- `due(now)` — the findings whose wait has run out (R23-4, R23-1, R19c). A finding is raised at
  its deadline, so `raised_at` does not depend on when the timer ran: a replay raises the same findings.
- `judge(now)` — the same findings with the state they came from, and the entries whose purpose is over
  (`Judged.over`): a wait that came due (its finding is in the same judgement), a recording series and a
  link's marker `kept_after` past their last event. `retire(over)` deletes those, once what the
  judgement raised is stored, unless they were written since — so the state holds the waits still
  running plus a window of `kept_after`, not every recording ever seen. Per case and per activity one
  small entry stays (the R5 check at the case's close reads them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from compliance_svc.domain import facts as f
from compliance_svc.domain.model import Raised

State = MutableMapping[str, Any]

UNLINKED = "unlinked:"
ACTIVITY = "activity:"
AV = "av:"  # an activity with a recording linked to it
LINKED = "linked:"  # a recording linked to a case (its link time)
SERIES = "series:"
CASE = "case:"


@dataclass(frozen=True)
class Deadlines:
    """How long each wait lasts (configurable; R23's "N days", R19c's explanation period)."""

    unlinked_after: timedelta = timedelta(days=7)
    activity_recorded_within: timedelta = timedelta(days=3)
    gap_explained_within: timedelta = timedelta(days=3)
    gap_threshold: timedelta = timedelta(seconds=60)
    # How long a recording series and a link's marker are kept after their last event, once nothing
    # waits on them: a segment linked later still finds its neighbours (a gap between it and a retired
    # series is not seen), and a link outlives any redelivery or late read of its ingest.
    kept_after: timedelta = timedelta(days=30)


@dataclass
class Judged:
    """What `Monitor.judge` found: the findings that came due, each with the state entry it came from,
    and the entries whose purpose is over (key, value as judged), to `retire` once those are stored."""

    raised: list[tuple[str, Raised]] = field(default_factory=list)
    over: list[tuple[str, Any]] = field(default_factory=list)


def _ts(value: datetime) -> float:
    return value.timestamp()


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class Monitor:
    def __init__(self, state: State, deadlines: Deadlines) -> None:
        self.state = state
        self.deadlines = deadlines

    # ---- events -------------------------------------------------------------------------------
    def observe(self, fact: f.Fact) -> list[Raised]:
        match fact:
            case f.RecordingIngested():
                return self._ingested(fact)
            case f.RecordingLinked():
                self._linked(fact)
            case f.InterruptionExplained():
                self._explained(fact)
            case f.IntegrityCheckFailed():
                return [self._integrity(fact)]
            case f.ActivityRecorded():
                self._activity(fact)
            case f.CaseFlagged():
                self._flagged(fact)
            case f.CaseClosed():
                return self._closed(fact)
        return []

    def _ingested(self, fact: f.RecordingIngested) -> list[Raised]:
        raised = [
            Raised(
                code=finding.code,
                article=finding.requirement,
                unit=fact.unit,
                officer=fact.officer,
                subject=fact.recording_id,
                detail=finding.detail,
                evidence=(fact.event_id,),
                raised_at=fact.time,
            )
            # Findings without a requirement (DURATION_MISMATCH) are technical, not conduct: not ours.
            for finding in fact.findings
            if finding.requirement
        ]
        key = UNLINKED + fact.recording_id
        if not fact.case_id and key not in self.state and LINKED + fact.recording_id not in self.state:
            self.state[key] = {
                "due": _ts(fact.time + self.deadlines.unlinked_after),
                "unit": fact.unit,
                "officer": fact.officer,
                "device": fact.device,
                "ingested": _ts(fact.time),
                "evidence": [fact.event_id],
            }
        return raised

    def _linked(self, fact: f.RecordingLinked) -> None:
        self.state.pop(UNLINKED + fact.recording_id, None)
        # Remembered in case the link is read before the ingest (they may sit in different batches), and
        # against a redelivered ingest; retired `kept_after` past the point any of that could happen.
        self.state[LINKED + fact.recording_id] = _ts(fact.time)
        if not fact.activity_id:
            return
        if not self.state.get(AV + fact.activity_id):
            # Written once per activity: every table write is a changelog record.
            self.state[AV + fact.activity_id] = True
        activity = self.state.get(ACTIVITY + fact.activity_id)
        if activity is not None and not activity.get("covered"):
            self.state[ACTIVITY + fact.activity_id] = {**activity, "covered": True}
        key, series = self._series(fact.device, fact.activity_id, fact.unit, fact.officer, fact.case_id)
        if any(segment[2] == fact.recording_id for segment in series["segments"]):
            return
        segment = [
            _ts(fact.recorded_from),
            _ts(fact.recorded_to),
            fact.recording_id,
            fact.event_id,
            _ts(fact.time),
        ]
        self.state[key] = {
            **series,
            "segments": sorted([*series["segments"], segment]),
            "touched": max(series["touched"], _ts(fact.time)),
        }

    def _explained(self, fact: f.InterruptionExplained) -> None:
        key, series = self._series(fact.device, fact.activity_id, fact.unit, "", "")
        span = [_ts(fact.gap_from), _ts(fact.gap_to)]
        if span not in series["explained"]:
            self.state[key] = {
                **series,
                "explained": [*series["explained"], span],
                "touched": max(series["touched"], _ts(fact.time)),
            }

    def _series(self, device: str, activity: str, unit: str, officer: str, case: str) -> tuple[str, Any]:
        """A recording series' key and value: as stored, or a new one named by the event that starts it
        (`touched`: when its last event happened — a link, an explanation)."""
        key = SERIES + device + "|" + activity
        new = {"unit": unit, "officer": officer, "device": device, "activity": activity, "case": case,
               "segments": [], "explained": [], "touched": 0.0}  # fmt: skip
        return key, self.state.get(key) or new

    def _integrity(self, fact: f.IntegrityCheckFailed) -> Raised:
        return Raised(
            code="R23_2_INTEGRITY_FAILED",
            article="R23-2",
            unit=fact.unit,
            officer="",
            subject=fact.recording_id,
            detail=f"stored content of recording {fact.recording_id} failed its integrity check "
            f"({fact.detected_by}): {fact.detail}",
            evidence=(fact.event_id,),
            raised_at=fact.time,
        )

    def _activity(self, fact: f.ActivityRecorded) -> None:
        case_key = CASE + fact.case_id
        case = self.state.get(case_key) or {"unit": fact.unit, "flags": [], "activities": []}
        if fact.exempt:
            return
        if fact.activity_id not in case["activities"]:
            self.state[case_key] = {**case, "activities": [*case["activities"], fact.activity_id]}
        if fact.text_record or ACTIVITY + fact.activity_id in self.state:
            return
        self.state[ACTIVITY + fact.activity_id] = {
            "case": fact.case_id,
            "unit": fact.unit,
            "officer": fact.officers[0] if fact.officers else "",
            "due": _ts(fact.ended_at + self.deadlines.activity_recorded_within),
            "covered": bool(self.state.get(AV + fact.activity_id)),
            "evidence": [fact.event_id],
        }

    def _flagged(self, fact: f.CaseFlagged) -> None:
        key = CASE + fact.case_id
        case = self.state.get(key) or {"unit": fact.unit, "flags": [], "activities": []}
        if fact.flag not in case["flags"]:
            self.state[key] = {**case, "flags": [*case["flags"], fact.flag]}

    def _closed(self, fact: f.CaseClosed) -> list[Raised]:
        case = self.state.get(CASE + fact.case_id)
        if not case or not case["flags"]:
            return []
        uncovered = [a for a in case["activities"] if not self.state.get(AV + a)]
        if not uncovered:
            return []
        # case-svc refuses this close (R5); seeing it here means that guard was bypassed.
        return [
            Raised(
                code="R5_FLAGGED_CASE_CLOSED_WITHOUT_AV",
                article="R5",
                unit=fact.unit,
                officer=fact.closed_by,
                subject=fact.case_id,
                detail=f"case {fact.case_id} flagged {', '.join(case['flags'])} was closed while "
                f"{len(uncovered)} enforcement activit{'y has' if len(uncovered) == 1 else 'ies have'} "
                f"no AV record: {', '.join(uncovered)}",
                evidence=(fact.event_id,),
                raised_at=fact.time,
            )
        ]

    # ---- time ---------------------------------------------------------------------------------
    def due(self, now: datetime) -> list[Raised]:
        return [raised for _key, raised in self.judge(now).raised]

    def judge(self, now: datetime) -> Judged:
        judged = Judged()
        for _ in self.judging(now, judged):
            pass
        return judged

    def judging(self, now: datetime, judged: Judged) -> Iterator[None]:
        """`judge`, one state entry per step (a caller on an event loop yields to it between steps: the
        state may hold hundreds of thousands of entries). Entries written or deleted meanwhile are
        judged as they are when their step comes."""
        t = _ts(now)
        for key in list(self.state.keys()):
            value = self.state.get(key)
            if value is not None:
                self._judge(key, value, t, judged)
            yield None

    def retire(self, over: Iterable[tuple[str, Any]]) -> int:
        """Delete the entries a judgement found over, unless they were written since (then they are
        judged again next time); how many were deleted."""
        retired = 0
        for key, value in over:
            if self.state.get(key) == value:
                del self.state[key]
                retired += 1
        return retired

    def _judge(self, key: str, value: Any, now: float, judged: Judged) -> None:
        kept = self.deadlines.kept_after.total_seconds()
        if key.startswith((UNLINKED, ACTIVITY)):
            # A wait: at its deadline its finding (unless the activity got covered), then it is over.
            if value["due"] > now:
                return
            if key.startswith(UNLINKED):
                recording = key[len(UNLINKED) :]
                days = self.deadlines.unlinked_after / timedelta(days=1)
                judged.raised.append(
                    _waited(key, value, "R23_4_UNLINKED_RECORDING", "R23-4", recording,
                            f"recording {recording} (device {value['device']}) is linked to no case "
                            f"{days:g} days after its ingest at {_dt(value['ingested']).isoformat()}")
                )  # fmt: skip
            elif not value["covered"]:
                activity = key[len(ACTIVITY) :]
                judged.raised.append(
                    _waited(key, value, "R23_1_ACTIVITY_WITHOUT_RECORD", "R23-1", activity,
                            f"enforcement activity {activity} of case {value['case']} has no AV recording "
                            f"and no text record by {_dt(value['due']).isoformat()}")
                )  # fmt: skip
            judged.over.append((key, value))
        elif key.startswith(SERIES):
            judged.raised.extend((key, raised) for raised in self._unexplained_gaps(value, now))
            if value["touched"] + self.deadlines.gap_explained_within.total_seconds() + kept <= now:
                judged.over.append((key, value))
        elif key.startswith(LINKED) and value + self.deadlines.unlinked_after.total_seconds() + kept <= now:
            judged.over.append((key, value))

    def _unexplained_gaps(self, series: dict[str, Any], now: float) -> Iterator[Raised]:
        within = self.deadlines.gap_explained_within.total_seconds()
        for start, end, before, after, evidence, known in _gaps(
            series["segments"], self.deadlines.gap_threshold.total_seconds()
        ):
            if any(a <= start and end <= b for a, b in series["explained"]) or known + within > now:
                continue
            yield Raised(
                code="R19C_UNEXPLAINED_GAP",
                article="R19c",
                unit=series["unit"],
                officer=series["officer"],
                subject=f"{series['device']}|{series['activity']}|{_dt(start).isoformat()}",
                detail=f"device {series['device']} stopped recording for {end - start:.0f} s during activity "
                f"{series['activity']} ({_dt(start).isoformat()} → {_dt(end).isoformat()}, between "
                f"recordings {before} and {after}); no explanation within {within / 3600:g} h",
                evidence=evidence,
                raised_at=_dt(known + within),
            )


def _waited(
    key: str, wait: dict[str, Any], code: str, article: str, subject: str, detail: str
) -> tuple[str, Raised]:
    """The finding of a wait whose deadline passed (raised at the deadline: a replay dates it the same)."""
    raised = Raised(
        code=code, article=article, unit=wait["unit"], officer=wait["officer"], subject=subject,
        detail=detail, evidence=tuple(wait["evidence"]), raised_at=_dt(wait["due"]),
    )  # fmt: skip
    return key, raised


Gap = tuple[float, float, str, str, tuple[str, ...], float]


def _gaps(segments: list[list[Any]], threshold_s: float) -> Iterator[Gap]:
    """Gaps of a series sorted by start: (latest end so far → next start) longer than the threshold,
    with the recordings and link events on either side and when the gap became known: the later of
    the two links. That depends only on the segments, not on the order their events were read in
    (the two links may sit in different partitions), so a replay dates every gap the same."""
    latest_end: float | None = None
    last_rec, last_event, last_linked = "", "", 0.0
    for start, end, recording, event_id, linked in segments:
        if latest_end is not None and start - latest_end > threshold_s:
            yield latest_end, start, last_rec, recording, (last_event, event_id), max(last_linked, linked)
        if latest_end is None or end >= latest_end:
            latest_end, last_rec, last_event, last_linked = end, recording, event_id, linked
