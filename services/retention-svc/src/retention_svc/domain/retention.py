"""Retention of case files and recordings (R12) and long-term holds (R13). Pure Python.

State is built only from facts other services published (case-svc: opened, incidents, closure; media-svc:
ingest, links). Every fact is recorded so that applying it twice, or in another order, gives the same
facts (sets grow, values are the same whoever reports them), and the retention *decision* is a pure
function of the facts and the rules (`decide_recording`, `decide_case_file`). So redelivered, replayed
or out-of-order events end in the same state: a link that arrives before the incident, or after, holds
the recording either way.

An aggregate records its decision when it changes (`reconcile`) and appends the events to publish:
`RetentionAssigned` the first time, `RetentionChanged` after, `LongTermHoldPlaced` once per hold.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from servicekit.errors import FailedPrecondition, InvalidArgument

from retention_svc.domain.rules import PERMANENT, RuleBook, RuleClass

# What each hold-placing incident kind means, in the words of 第十三条 (for the hold's reason).
INCIDENT_MEANING = {
    "COMPLAINT": "投诉 complaint (第十三条(一))",
    "DISPUTE": "异议 dispute (第十三条(一))",
    "PETITION": "上访 petition (第十三条(一))",
    "OBSTRUCTION": "逃避、拒绝、阻碍执法 obstruction (第十三条(二))",
    "ASSAULT": "谩骂、侮辱、殴打执法人员 assault (第十三条(二))",
    "MASS_INCIDENT": "群体性事件 mass incident (第十三条(三))",
    "EMERGENCY": "突发事件 emergency (第十三条(三))",
    "OTHER_IMPORTANT": "其他需要长期保存的情形 other important event (第十三条(四))",
}


class RecordKind(enum.Enum):
    CASE_FILE = "CASE_FILE"
    RECORDING = "RECORDING"


class RetentionState(enum.Enum):
    DATED = "DATED"
    PENDING = "PENDING"
    PERMANENT = "PERMANENT"


@dataclass(frozen=True)
class Incident:
    """A case incident as case-svc published it; `source_event` = "<ce_source>/<ce_id>"."""

    incident_id: str
    kind: str
    reason: str
    recorded_at: datetime
    source_event: str


@dataclass(frozen=True)
class Hold:
    """A long-term hold (R13): never expires, never lifted."""

    incident_id: str
    incident_kind: str
    reason: str
    case_id: str
    source_event: str
    placed_at: datetime


@dataclass(frozen=True)
class AppliedRule:
    rule_class: str
    period: str
    source: str
    until: datetime | None
    why: str


@dataclass(frozen=True)
class Decision:
    """The outcome of the rules for one record (what RetentionAssigned/Changed publish)."""

    state: RetentionState
    retain_until: datetime | None
    rules: tuple[AppliedRule, ...]
    summary: str


@dataclass(frozen=True)
class RetentionEvent:
    """A domain event to publish: `kind` is RetentionAssigned, RetentionChanged or LongTermHoldPlaced
    (`record_id` = the recording held, `sha256` its hash)."""

    kind: str
    record_kind: RecordKind
    record_id: str
    previous_state: RetentionState | None = None
    hold: Hold | None = None
    sha256: str = ""


@dataclass
class CaseRecord:
    """What retention-svc knows of a case: its class facts, holding incidents, recordings, closure."""

    case_id: str
    unit: str = ""
    act_type: str = ""
    procedure: str = ""
    closed_at: datetime | None = None
    incidents: dict[str, Incident] = field(default_factory=dict)
    recording_ids: set[str] = field(default_factory=set)
    # The SHA-256 media-svc reported with each link: a hold's announcement carries it, and knowing it
    # here spares a read of every recording before the holds can be written (the fan-out's latency).
    recording_sha256: dict[str, str] = field(default_factory=dict)
    extended_until: datetime | None = None
    extension_reason: str = ""
    decision: Decision | None = None
    held: bool = False  # a hold-placing incident was recorded (set by reconcile, from the rules)
    # "<recording id>/<incident id>" of every LongTermHoldPlaced already written with this case: the
    # case announces its recordings' holds in one write (one outbox, one relay pass for all of them).
    announced: set[str] = field(default_factory=set)
    version: int = 0
    pending_events: list[RetentionEvent] = field(default_factory=list)

    # --- facts (idempotent, order-independent) ---
    def learn_class(self, *, unit: str, act_type: str, procedure: str) -> None:
        self.unit = unit or self.unit
        self.act_type = act_type or self.act_type
        self.procedure = procedure or self.procedure

    def record_incident(self, incident: Incident) -> None:
        self.incidents.setdefault(incident.incident_id, incident)

    def close(self, at: datetime) -> None:
        # The first closure starts the clock (R12); a repeated report of it changes nothing.
        if self.closed_at is None or at < self.closed_at:
            self.closed_at = at

    def link(self, recording_id: str, sha256: str = "") -> bool:
        """Learns a recording of the case (and its hash, once known); True when that is news."""
        news = recording_id not in self.recording_ids or bool(
            sha256 and self.recording_sha256.get(recording_id) != sha256
        )
        self.recording_ids.add(recording_id)
        if sha256:
            self.recording_sha256[recording_id] = sha256
        return news

    def holding_incidents(self, rules: RuleBook) -> list[Incident]:
        return sorted(
            (i for i in self.incidents.values() if i.kind in rules.hold_incident_kinds),
            key=lambda i: (i.recorded_at, i.incident_id),
        )

    def is_held(self, rules: RuleBook) -> bool:
        return bool(self.holding_incidents(rules))

    def unannounced(self, rules: RuleBook) -> list[str]:
        """Recordings of the case with a hold not announced yet."""
        incidents = self.holding_incidents(rules)
        return [
            r
            for r in sorted(self.recording_ids)
            if any(f"{r}/{i.incident_id}" not in self.announced for i in incidents)
        ]

    def announce_holds(self, rules: RuleBook, sha256_of: dict[str, str], at_most: int | None = None) -> bool:
        """Appends one LongTermHoldPlaced per (recording, holding incident) not announced yet (R13), at
        most `at_most` of them (one write carries a bounded number of events); True when some are left
        for the next write."""
        for incident in self.holding_incidents(rules):
            for recording_id in sorted(self.recording_ids):
                key = f"{recording_id}/{incident.incident_id}"
                if key in self.announced:
                    continue
                if at_most is not None and at_most <= 0:
                    return True
                if at_most is not None:
                    at_most -= 1
                self.announced.add(key)
                self.pending_events.append(
                    RetentionEvent(
                        "LongTermHoldPlaced",
                        RecordKind.RECORDING,
                        recording_id,
                        hold=hold_for(self.case_id, incident),
                        sha256=sha256_of.get(recording_id, ""),
                    )
                )
        return False

    # --- decision ---
    def case_file_until(self, rules: RuleBook) -> tuple[RetentionState, datetime | None, AppliedRule]:
        rule = rules.case_file_rule(self.act_type, self.procedure)
        what = f"{self.act_type or 'unknown act type'}{' ' + self.procedure if self.procedure else ''}"
        if rule.period.permanent:
            applied = AppliedRule("case_file", PERMANENT, rule.source, None, f"case file of a {what} case")
            return RetentionState.PERMANENT, None, applied
        if self.closed_at is None:
            applied = AppliedRule(
                "case_file",
                str(rule.period),
                rule.source,
                None,
                f"case file of a {what} case; the clock starts when the case is closed (R12): still open",
            )
            return RetentionState.PENDING, None, applied
        until = rule.period.after(self.closed_at)
        applied = AppliedRule(
            "case_file",
            str(rule.period),
            rule.source,
            until,
            f"case file of a {what} case, {rule.period} from its closure on {self.closed_at.date()}",
        )
        return RetentionState.DATED, until, applied

    def reconcile(self, rules: RuleBook) -> None:
        self.held = self.is_held(rules)
        state, until, applied = self.case_file_until(rules)
        if state is RetentionState.DATED and self.extended_until and until and self.extended_until > until:
            extension = AppliedRule(
                "extension",
                "",
                self.extension_reason,
                self.extended_until,
                "extended by order (never shorter)",
            )
            decision = Decision(
                state, self.extended_until, (applied, extension), _summary(state, self.extended_until)
            )
        else:
            decision = Decision(state, until, (applied,), _summary(state, until))
        _record(self, decision, RecordKind.CASE_FILE, self.case_id)

    def extend(self, until: datetime, reason: str) -> None:
        _check_extension(self.decision, until, reason, f"case file {self.case_id}")
        self.extended_until, self.extension_reason = until, reason


@dataclass
class RecordingRecord:
    """What retention-svc knows of a recording, its holds and its current decision."""

    recording_id: str
    unit: str = ""
    sha256: str = ""
    size_bytes: int = 0
    media_kind: str = ""
    format_name: str = ""
    device_number: str = ""
    officer: str = ""
    recorded_from: datetime | None = None
    recorded_to: datetime | None = None
    ingested_at: datetime | None = None
    case_id: str = ""
    disposed_at: datetime | None = None  # media-svc's RecordingDisposed: only a tombstone remains
    holds: dict[str, Hold] = field(default_factory=dict)
    extended_until: datetime | None = None
    extension_reason: str = ""
    decision: Decision | None = None
    version: int = 0
    pending_events: list[RetentionEvent] = field(default_factory=list)

    def learn(
        self,
        *,
        unit: str = "",
        sha256: str = "",
        size_bytes: int = 0,
        media_kind: str = "",
        format_name: str = "",
        device_number: str = "",
        officer: str = "",
        recorded_from: datetime | None = None,
        recorded_to: datetime | None = None,
        ingested_at: datetime | None = None,
    ) -> None:
        """Records facts about the recording; ingest and link report the same values, in any order."""
        self.unit = unit or self.unit
        self.sha256 = sha256 or self.sha256
        self.size_bytes = size_bytes or self.size_bytes
        self.media_kind = media_kind or self.media_kind
        self.format_name = format_name or self.format_name
        self.device_number = device_number or self.device_number
        self.officer = officer or self.officer
        self.recorded_from = recorded_from or self.recorded_from
        self.recorded_to = recorded_to or self.recorded_to
        self.ingested_at = ingested_at or self.ingested_at

    def link(self, case_id: str) -> None:
        if self.case_id and self.case_id != case_id:
            # media-svc never moves a link (RecordingLinked); a second case would be a bug upstream.
            raise InvalidArgument(
                f"recording {self.recording_id} is linked to case {self.case_id}, not {case_id}"
            )
        self.case_id = case_id

    @property
    def held(self) -> bool:
        return bool(self.holds)

    def reconcile(self, case: CaseRecord | None, rules: RuleBook) -> None:
        """Places the holds the case's incidents call for and records the decision if it changed.
        (`LongTermHoldPlaced` is announced by the case: `CaseRecord.announce_holds`.)"""
        if case is not None:
            for incident in case.holding_incidents(rules):
                self.holds.setdefault(incident.incident_id, hold_for(case.case_id, incident))
        _record(self, decide_recording(self, case, rules), RecordKind.RECORDING, self.recording_id)

    def extend(self, until: datetime, reason: str) -> None:
        _check_extension(self.decision, until, reason, f"recording {self.recording_id}")
        self.extended_until, self.extension_reason = until, reason


def hold_for(case_id: str, incident: Incident) -> Hold:
    reason = INCIDENT_MEANING.get(incident.kind, incident.kind)
    if incident.reason:
        reason += f": {incident.reason}"
    return Hold(
        incident.incident_id, incident.kind, reason, case_id, incident.source_event, incident.recorded_at
    )


def decide_recording(rec: RecordingRecord, case: CaseRecord | None, rules: RuleBook) -> Decision:
    """Every rule that applies to the recording; the longest wins; a hold wins over all (R12, R13)."""
    applied: list[AppliedRule] = []
    start = rec.recorded_to or rec.ingested_at
    nev = rules.not_evidence
    assert nev.period is not None  # the rule book refuses "case_file" here
    if start is not None:
        until = nev.period.after(start)
        applied.append(
            AppliedRule(
                RuleClass.RECORDING_NOT_EVIDENCE.value,
                nev.period_text,
                nev.source,
                until,
                f"every recording: at least {nev.period} from the end of the recording",
            )
        )
    pending = start is None
    permanent = False
    if rec.case_id:
        ev = rules.evidence
        if ev.period is None:
            if case is None:
                state, case_until, note = RetentionState.PENDING, None, "its case is not known yet"
            else:
                state, case_until, case_rule = case.case_file_until(rules)
                note = case_rule.why
            applied.append(
                AppliedRule(
                    RuleClass.RECORDING_EVIDENCE.value,
                    ev.period_text,
                    ev.source,
                    case_until,
                    f"evidence in case {rec.case_id}: kept exactly as long as its case file (R12) — {note}",
                )
            )
            pending = pending or state is RetentionState.PENDING
            permanent = permanent or state is RetentionState.PERMANENT
        else:
            link_start = start
            until = ev.period.after(link_start) if link_start else None
            applied.append(
                AppliedRule(
                    RuleClass.RECORDING_EVIDENCE.value,
                    ev.period_text,
                    ev.source,
                    until,
                    f"evidence in case {rec.case_id}: {ev.period} from the end of the recording",
                )
            )
            permanent = permanent or ev.period.permanent
    if rec.holds:
        held = rules.held
        for hold in sorted(rec.holds.values(), key=lambda h: (h.placed_at, h.incident_id)):
            applied.append(
                AppliedRule(
                    RuleClass.HELD.value,
                    held.period_text,
                    held.source,
                    None,
                    f"long-term hold (R13): incident {hold.incident_id}, case {hold.case_id}: {hold.reason}",
                )
            )
        permanent = True
    if permanent:
        return Decision(
            RetentionState.PERMANENT, None, tuple(applied), _summary(RetentionState.PERMANENT, None)
        )
    if pending:
        return Decision(RetentionState.PENDING, None, tuple(applied), _summary(RetentionState.PENDING, None))
    dates = [r.until for r in applied if r.until is not None]
    if rec.extended_until is not None:
        applied.append(
            AppliedRule(
                "extension", "", rec.extension_reason, rec.extended_until, "extended by order (never shorter)"
            )
        )
        dates.append(rec.extended_until)
    until = max(dates)
    return Decision(RetentionState.DATED, until, tuple(applied), _summary(RetentionState.DATED, until))


def _summary(state: RetentionState, until: datetime | None) -> str:
    if state is RetentionState.PERMANENT:
        return "kept permanently: never disposed of"
    if state is RetentionState.PENDING:
        return "kept at least until its case is closed; the date is set then (R12)"
    assert until is not None
    return f"kept until {until.isoformat()} (the longest applicable rule); reviewable for disposal after that"


def _record(
    record: CaseRecord | RecordingRecord, decision: Decision, kind: RecordKind, record_id: str
) -> None:
    previous = record.decision
    if previous == decision:
        return
    record.decision = decision
    if previous is None:
        record.pending_events.append(RetentionEvent("RetentionAssigned", kind, record_id))
    else:
        record.pending_events.append(
            RetentionEvent("RetentionChanged", kind, record_id, previous_state=previous.state)
        )


def _check_extension(decision: Decision | None, until: datetime, reason: str, what: str) -> None:
    if not reason.strip() or len(reason) > 1000:
        raise InvalidArgument("reason must be 1–1000 characters: say why the retention is extended")
    if decision is None:
        raise FailedPrecondition(f"{what} has no retention decision yet; extend it once it has one")
    if decision.state is RetentionState.PERMANENT:
        raise FailedPrecondition(f"{what} is kept permanently already; there is nothing to extend")
    if decision.state is RetentionState.PENDING:
        raise FailedPrecondition(
            f"{what} has no retention date yet (its case is open, R12); extend it after the case is closed"
        )
    assert decision.retain_until is not None
    if until <= decision.retain_until:
        raise FailedPrecondition(
            f"{what} is kept until {decision.retain_until.isoformat()}; an extension must be later "
            "(a retention is never shortened below its rules)"
        )
