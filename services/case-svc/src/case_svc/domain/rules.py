"""Configuration of the rules that differ per act type and procedure (R2, R3, R10): which stages do not
apply, and the required-documents checklist of the case file (立卷标准).

This is data, not code: `RuleBook.from_mapping` reads the parsed configuration file
(`case_svc/config/case_rules.toml` by default; see docs/case-svc.md for its source and format) and
refuses anything it does not understand, so a mistake in the file stops the service at start rather
than silently weakening a rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from case_svc.domain.model import OPTIONAL_STAGES, ActivityKind, ActType, CaseFlag, Procedure, Stage

_E = TypeVar("_E", Stage, ActivityKind, CaseFlag)

__all__ = ["CaseRules", "DocumentType", "Requirement", "RuleBook", "RulesError", "rules_key"]


class RulesError(ValueError):
    """The rules configuration is invalid; the message names the entry."""


@dataclass(frozen=True)
class DocumentType:
    """A document type of the vocabulary: code (used in the API), Chinese name, English gloss."""

    code: str
    name: str
    english: str


@dataclass(frozen=True)
class Requirement:
    """One checklist line: a document type, required always or only under a condition."""

    document_type: str
    when_activity: ActivityKind | None = None
    when_flag: CaseFlag | None = None

    @property
    def because(self) -> str:
        if self.when_activity is not None:
            return f"activity {self.when_activity.value}"
        if self.when_flag is not None:
            return f"flag {self.when_flag.value}"
        return "always"

    def applies(self, activity_kinds: frozenset[ActivityKind], flags: frozenset[CaseFlag]) -> bool:
        if self.when_activity is not None and self.when_activity not in activity_kinds:
            return False
        return not (self.when_flag is not None and self.when_flag not in flags)


@dataclass(frozen=True)
class CaseRules:
    """The rules of one act type (and procedure, for penalties)."""

    key: str
    inapplicable_stages: Mapping[Stage, str]
    requirements: tuple[Requirement, ...]
    source: str


def rules_key(act_type: ActType, procedure: Procedure | None) -> str:
    """`PENALTY/GENERAL`, `LICENSING`, …: the key of a case's rules and checklist."""
    return f"{act_type.value}/{procedure.value}" if procedure is not None else act_type.value


REQUIRED_KEYS: tuple[str, ...] = (
    rules_key(ActType.LICENSING, None),
    rules_key(ActType.PENALTY, Procedure.GENERAL),
    rules_key(ActType.PENALTY, Procedure.SIMPLE),
    rules_key(ActType.INSPECTION, None),
    rules_key(ActType.LEVY, None),
)


@dataclass(frozen=True)
class RuleBook:
    """Every act type's rules plus the document-type vocabulary."""

    document_types: Mapping[str, DocumentType]
    rules: Mapping[str, CaseRules]

    def for_case(self, act_type: ActType, procedure: Procedure | None) -> CaseRules:
        return self.rules[rules_key(act_type, procedure)]

    def document_name(self, code: str) -> str:
        doc = self.document_types.get(code)
        return doc.name if doc else code

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RuleBook:
        unknown = set(data) - {"document_types", "case_types"}
        if unknown:
            raise RulesError(f"unknown top-level keys {sorted(unknown)}; expected document_types, case_types")
        raw_types = _table(data, "document_types", "")
        types: dict[str, DocumentType] = {}
        for code, entry in raw_types.items():
            where = f"document_types.{code}"
            if not code.isupper() or not code.replace("_", "").isalnum():
                raise RulesError(f"{where}: codes are UPPER_SNAKE_CASE")
            entry = _as_table(entry, where)
            _only(entry, {"name", "english"}, where)
            types[code] = DocumentType(code, _str(entry, "name", where), _str(entry, "english", where))
        raw_rules = _table(data, "case_types", "")
        missing = [k for k in REQUIRED_KEYS if k not in raw_rules]
        if missing:
            raise RulesError(
                f"case_types: missing {missing}; every act type (and penalty procedure) needs rules"
            )
        extra = sorted(set(raw_rules) - set(REQUIRED_KEYS))
        if extra:
            raise RulesError(f"case_types: unknown {extra}; expected {list(REQUIRED_KEYS)}")
        rules = {
            key: _case_rules(key, _as_table(raw_rules[key], f"case_types.{key}"), types)
            for key in REQUIRED_KEYS
        }
        return cls(document_types=types, rules=rules)


def _case_rules(key: str, entry: Mapping[str, Any], types: Mapping[str, DocumentType]) -> CaseRules:
    where = f"case_types.{key}"
    _only(entry, {"inapplicable_stages", "required_documents", "source"}, where)
    stages: dict[Stage, str] = {}
    for name, reason in _as_table(
        entry.get("inapplicable_stages", {}), f"{where}.inapplicable_stages"
    ).items():
        stage = _enum(Stage, name, f"{where}.inapplicable_stages")
        if stage not in OPTIONAL_STAGES:
            raise RulesError(
                f"{where}.inapplicable_stages: {name} applies to every case; only "
                f"{[s.value for s in OPTIONAL_STAGES]} may be declared inapplicable"
            )
        if not isinstance(reason, str) or not reason.strip():
            raise RulesError(f"{where}.inapplicable_stages.{name}: give the reason as text")
        stages[stage] = reason
    requirements: list[Requirement] = []
    raw_requirements = entry.get("required_documents", [])
    if not isinstance(raw_requirements, Sequence) or isinstance(raw_requirements, str):
        raise RulesError(f"{where}.required_documents: expected a list of tables")
    for i, raw in enumerate(raw_requirements):
        at = f"{where}.required_documents[{i}]"
        item = _as_table(raw, at)
        _only(item, {"type", "when_activity", "when_flag"}, at)
        code = _str(item, "type", at)
        if code not in types:
            raise RulesError(f"{at}: document type {code!r} is not in document_types")
        when_activity = item.get("when_activity")
        when_flag = item.get("when_flag")
        if when_activity is not None and when_flag is not None:
            raise RulesError(f"{at}: give at most one of when_activity, when_flag")
        requirements.append(
            Requirement(
                code,
                _enum(ActivityKind, when_activity, at) if when_activity is not None else None,
                _enum(CaseFlag, when_flag, at) if when_flag is not None else None,
            )
        )
    if not requirements:
        raise RulesError(
            f"{where}.required_documents: an empty checklist would let any file be archived (R10)"
        )
    return CaseRules(key, stages, tuple(requirements), _str(entry, "source", where))


def _table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    if key not in data:
        raise RulesError(f"{where + '.' if where else ''}{key}: missing")
    return _as_table(data[key], f"{where + '.' if where else ''}{key}")


def _as_table(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RulesError(f"{where}: expected a table")
    return value


def _only(entry: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(entry) - allowed)
    if extra:
        raise RulesError(f"{where}: unknown keys {extra}; allowed {sorted(allowed)}")


def _str(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RulesError(f"{where}.{key}: required text")
    return value


def _enum(enum_type: type[_E], value: object, where: str) -> _E:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return enum_type(value)
    except ValueError:
        raise RulesError(f"{where}: {value!r} is not one of {[m.value for m in enum_type]}") from None
