"""Findings and their lifecycle (pure Python: no I/O, no protobuf).

A finding's id is derived from its code and what it is about, so the same facts always give the same id:
a redelivered or replayed event cannot raise a finding twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from servicekit.errors import FailedPrecondition, InvalidArgument

MAX_DISPOSITION = 1000


class Severity(StrEnum):
    """R23's grades: minor → criticism and education; serious → suspension and discipline."""

    MINOR = "MINOR"
    SERIOUS = "SERIOUS"


class State(StrEnum):
    OPEN = "OPEN"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    RESOLVED = "RESOLVED"


@dataclass(frozen=True)
class Attribution:
    subject: str
    unit: str
    at: datetime


@dataclass(frozen=True)
class Raised:
    """What a rule concludes, before the severity policy grades it."""

    code: str
    article: str
    unit: str
    officer: str
    subject: str
    detail: str
    evidence: tuple[str, ...]
    raised_at: datetime

    @property
    def finding_id(self) -> str:
        return finding_id(self.code, self.subject)


def finding_id(code: str, subject: str) -> str:
    """32 hex characters from the rule and its subject (stable across replays)."""
    return hashlib.sha256(f"{code}\x1f{subject}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class SeverityPolicy:
    """Which article is how grave, and the consequence of each grade (configurable, R23)."""

    by_article: Mapping[str, Severity]
    consequences: Mapping[Severity, str]
    default: Severity = Severity.MINOR

    def grade(self, article: str) -> Severity:
        return self.by_article.get(article, self.default)

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> SeverityPolicy:
        """From the TOML shape `[severity] R19b = "MINOR"`, `[consequences] MINOR = "…"`."""
        raw_sev = data.get("severity", {})
        raw_cons = data.get("consequences", {})
        if not isinstance(raw_sev, Mapping) or not isinstance(raw_cons, Mapping):
            raise ValueError("[severity] and [consequences] must be tables")
        by_article: dict[str, Severity] = {}
        for article, value in raw_sev.items():
            try:
                by_article[str(article)] = Severity(str(value).upper())
            except ValueError:
                raise ValueError(
                    f"severity.{article} = {value!r}: expected one of {[s.value for s in Severity]}"
                ) from None
        consequences: dict[Severity, str] = {}
        for grade in Severity:
            text = raw_cons.get(grade.value)
            if not isinstance(text, str) or not text:
                raise ValueError(f"consequences.{grade.value} must be a non-empty string")
            consequences[grade] = text
        return cls(by_article, consequences)


@dataclass(frozen=True)
class Finding:
    finding_id: str
    article: str
    code: str
    severity: Severity
    consequence: str
    unit: str
    officer: str
    subject: str
    detail: str
    evidence: tuple[str, ...]
    raised_at: datetime
    state: State = State.OPEN
    acknowledged: Attribution | None = None
    resolved: Attribution | None = None
    disposition: str = ""
    version: int = field(default=0, compare=False)

    @classmethod
    def raise_(cls, raised: Raised, policy: SeverityPolicy) -> Finding:
        severity = policy.grade(raised.article)
        return cls(
            finding_id=raised.finding_id,
            article=raised.article,
            code=raised.code,
            severity=severity,
            consequence=policy.consequences[severity],
            unit=raised.unit,
            officer=raised.officer,
            subject=raised.subject,
            detail=raised.detail,
            evidence=raised.evidence,
            raised_at=raised.raised_at,
        )

    def acknowledge(self, by: Attribution) -> Finding:
        if self.state is not State.OPEN:
            raise FailedPrecondition(
                f"finding {self.finding_id!r} is {self.state.value}: only an OPEN finding can be acknowledged"
            )
        return replace(self, state=State.ACKNOWLEDGED, acknowledged=by)

    def resolve(self, disposition: str, by: Attribution) -> Finding:
        text = disposition.strip()
        if not text:
            raise InvalidArgument("disposition: required (the decision taken on the finding)")
        if len(text) > MAX_DISPOSITION:
            raise InvalidArgument(f"disposition: at most {MAX_DISPOSITION} characters, got {len(text)}")
        if self.state is State.RESOLVED:
            raise FailedPrecondition(f"finding {self.finding_id!r} is already RESOLVED")
        return replace(self, state=State.RESOLVED, resolved=by, disposition=text)
