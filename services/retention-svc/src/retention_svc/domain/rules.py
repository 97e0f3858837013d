"""Retention rules as data (R12, R13): periods per record class, with their legal source beside them.

The rules file (`retention_svc/config/retention_rules.toml`, or LAWTRAIL_RETENTION_RULES_FILE) is parsed
into a `RuleBook` here; anything wrong raises `RuleError` naming the entry (a path such as
`case_file[2].period`) so the loader can point at the file and line. Pure Python.
"""

from __future__ import annotations

import calendar
import enum
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# The incident kinds case-svc records (lawtrail.case.v1.IncidentKind without its prefix).
INCIDENT_KINDS = frozenset(
    {
        "COMPLAINT",
        "DISPUTE",
        "PETITION",
        "OBSTRUCTION",
        "ASSAULT",
        "MASS_INCIDENT",
        "EMERGENCY",
        "OTHER_IMPORTANT",
    }
)
ACT_TYPES = frozenset({"LICENSING", "PENALTY", "INSPECTION", "LEVY"})
PROCEDURES = frozenset({"GENERAL", "SIMPLE"})

# "as long as the case file": only a recording used as evidence may say so (R12).
SAME_AS_CASE_FILE = "case_file"
PERMANENT = "permanent"

_PERIOD = re.compile(r"^([1-9][0-9]{0,2})([ymd])$")


class RuleError(ValueError):
    """An invalid rules file: `path` names the entry (`held.incident_kinds`), `reason` says what is wrong."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, order=True)
class Period:
    """A retention period: permanent, or a number of years, months or days (calendar arithmetic)."""

    permanent: bool = False
    years: int = 0
    months: int = 0
    days: int = 0

    @staticmethod
    def parse(text: str, path: str) -> Period:
        if text == PERMANENT:
            return Period(permanent=True)
        match = _PERIOD.match(text)
        if match is None:
            raise RuleError(
                path, f"{text!r} is not a period: write 'permanent' or a number and y, m or d ('30y', '6m')"
            )
        n, unit = int(match.group(1)), match.group(2)
        return Period(
            years=n if unit == "y" else 0, months=n if unit == "m" else 0, days=n if unit == "d" else 0
        )

    def after(self, start: datetime) -> datetime | None:
        """The instant this period ends when it starts at `start`; None when permanent."""
        if self.permanent:
            return None
        total = start.month - 1 + self.months + 12 * self.years
        year, month = start.year + total // 12, total % 12 + 1
        day = min(start.day, calendar.monthrange(year, month)[1])

        return start.replace(year=year, month=month, day=day) + timedelta(days=self.days)

    def at_least(self, other: Period) -> bool:
        """Whether this period is never shorter than `other` (compared from a fixed reference date)."""
        if self.permanent:
            return True
        if other.permanent:
            return False
        ref = datetime(2000, 1, 31)
        mine, theirs = self.after(ref), other.after(ref)
        assert mine is not None
        assert theirs is not None
        return mine >= theirs

    def __str__(self) -> str:
        if self.permanent:
            return PERMANENT
        if self.years:
            return f"{self.years}y"
        if self.months:
            return f"{self.months}m"
        return f"{self.days}d"


class RuleClass(enum.Enum):
    """The record classes the rules file configures."""

    CASE_FILE = "case_file"
    RECORDING_EVIDENCE = "recording_evidence"
    RECORDING_NOT_EVIDENCE = "recording_not_evidence"
    HELD = "held"


@dataclass(frozen=True)
class CaseFileRule:
    """A case-file class: act type (and procedure for penalties) → period; the clock starts at closure."""

    act_type: str
    procedure: str  # "" = any procedure
    period: Period
    source: str


@dataclass(frozen=True)
class ClassRule:
    """A recording class: its period (or as long as the case file), its minimum and legal source."""

    rule_class: RuleClass
    period: Period | None  # None = as long as the case file (recording_evidence only)
    minimum: Period
    source: str

    @property
    def period_text(self) -> str:
        return SAME_AS_CASE_FILE if self.period is None else str(self.period)


@dataclass(frozen=True)
class RuleBook:
    """Every retention rule: case-file classes, recording classes and which incidents place a hold."""

    case_files: tuple[CaseFileRule, ...]
    case_file_minimum: Period
    case_file_default: CaseFileRule
    evidence: ClassRule
    not_evidence: ClassRule
    held: ClassRule
    hold_incident_kinds: frozenset[str]

    def case_file_rule(self, act_type: str, procedure: str) -> CaseFileRule:
        """The most specific case-file rule: act type and procedure, then act type, then the default."""
        for rule in self.case_files:
            if rule.act_type == act_type and rule.procedure == procedure:
                return rule
        for rule in self.case_files:
            if rule.act_type == act_type and not rule.procedure:
                return rule
        return self.case_file_default

    @staticmethod
    def from_mapping(data: Mapping[str, Any]) -> RuleBook:
        known = {c.value for c in RuleClass}
        for key in data:
            if key not in known:
                raise RuleError(key, f"unknown section; the sections are {', '.join(sorted(known))}")
        for section in known:
            if section not in data:
                raise RuleError(section, "missing section")

        case_section = _table(data, "case_file")
        minimum = Period.parse(_text(case_section, "case_file.minimum", "minimum"), "case_file.minimum")
        default = CaseFileRule(
            "",
            "",
            _period_at_least(case_section, "case_file", minimum),
            _text(case_section, "case_file.source", "source"),
        )
        classes = case_section.get("class", [])
        if not isinstance(classes, list):
            raise RuleError("case_file.class", "must be an array of tables ([[case_file.class]])")
        rules: list[CaseFileRule] = []
        seen: set[tuple[str, str]] = set()
        for i, entry in enumerate(classes, start=1):
            path = f"case_file.class[{i}]"
            if not isinstance(entry, dict):
                raise RuleError(path, "must be a table")
            _only(entry, path, {"act_type", "procedure", "period", "source"})
            act_type = _text(entry, f"{path}.act_type", "act_type")
            if act_type not in ACT_TYPES:
                raise RuleError(
                    f"{path}.act_type", f"{act_type!r} is not one of {', '.join(sorted(ACT_TYPES))}"
                )
            procedure = str(entry.get("procedure", ""))
            if procedure and procedure not in PROCEDURES:
                raise RuleError(f"{path}.procedure", f"{procedure!r} is not GENERAL or SIMPLE")
            if procedure and act_type != "PENALTY":
                raise RuleError(f"{path}.procedure", "only PENALTY cases have a procedure (R2)")
            if (act_type, procedure) in seen:
                raise RuleError(path, f"a second rule for {act_type} {procedure or '(any procedure)'}")
            seen.add((act_type, procedure))
            rules.append(
                CaseFileRule(
                    act_type,
                    procedure,
                    _period_at_least(entry, path, minimum),
                    _text(entry, f"{path}.source", "source"),
                )
            )

        evidence = _class_rule(data, RuleClass.RECORDING_EVIDENCE, allow_case_file=True)
        not_evidence = _class_rule(data, RuleClass.RECORDING_NOT_EVIDENCE)
        held = _class_rule(data, RuleClass.HELD, extra={"incident_kinds"})
        if held.period is None or not held.period.permanent:
            raise RuleError("held.period", "held material is kept permanently (R13): write 'permanent'")
        kinds = _table(data, "held").get("incident_kinds")
        if not isinstance(kinds, list) or not kinds:
            raise RuleError("held.incident_kinds", "must list the incident kinds that place a hold (R13)")
        for kind in kinds:
            if kind not in INCIDENT_KINDS:
                raise RuleError(
                    "held.incident_kinds", f"{kind!r} is not one of {', '.join(sorted(INCIDENT_KINDS))}"
                )
        return RuleBook(
            case_files=tuple(rules),
            case_file_minimum=minimum,
            case_file_default=default,
            evidence=evidence,
            not_evidence=not_evidence,
            held=held,
            hold_incident_kinds=frozenset(kinds),
        )


def _table(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name)
    if not isinstance(value, dict):
        raise RuleError(name, "must be a table")
    return value


def _text(entry: Mapping[str, Any], path: str, key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RuleError(path, "missing or empty (every rule names its legal source and period)")
    return value


def _only(entry: Mapping[str, Any], path: str, keys: set[str]) -> None:
    for key in entry:
        if key not in keys:
            raise RuleError(f"{path}.{key}", f"unknown key; the keys are {', '.join(sorted(keys))}")


def _period_at_least(entry: Mapping[str, Any], path: str, minimum: Period) -> Period:
    period = Period.parse(_text(entry, f"{path}.period", "period"), f"{path}.period")
    if not period.at_least(minimum):
        raise RuleError(f"{path}.period", f"{period} is shorter than the class minimum {minimum}")
    return period


def _class_rule(
    data: Mapping[str, Any],
    rule_class: RuleClass,
    *,
    allow_case_file: bool = False,
    extra: Collection[str] = (),
) -> ClassRule:
    name = rule_class.value
    entry = _table(data, name)
    _only(entry, name, {"period", "minimum", "source", *extra})
    minimum_text = entry.get("minimum", entry.get("period"))
    minimum = Period.parse(str(minimum_text), f"{name}.minimum")
    period_text = _text(entry, f"{name}.period", "period")
    if period_text == SAME_AS_CASE_FILE:
        if not allow_case_file:
            raise RuleError(f"{name}.period", "only recording_evidence may be kept as long as the case file")
        period: Period | None = None
    else:
        period = _period_at_least(entry, name, minimum)
    return ClassRule(rule_class, period, minimum, _text(entry, f"{name}.source", "source"))
