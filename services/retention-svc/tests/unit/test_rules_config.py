"""R12: retention rules are data; an invalid file stops the start with the file, the line and the reason."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
from retention_svc.bootstrap import load_rules
from retention_svc.domain.rules import Period

SHIPPED = resources.files("retention_svc").joinpath("config/retention_rules.toml").read_text(encoding="utf-8")


def test_r12_shipped_rules_load_with_a_legal_source_beside_every_rule() -> None:
    rules = load_rules()
    assert rules.case_file_rule("PENALTY", "GENERAL").period == Period(years=30)
    assert rules.case_file_rule("PENALTY", "SIMPLE").period == Period(years=10)
    assert rules.not_evidence.period == Period(months=6)
    assert rules.evidence.period is None  # as long as the case file (R12)
    assert rules.held.period == Period(permanent=True)
    assert rules.hold_incident_kinds >= {"COMPLAINT", "ASSAULT", "MASS_INCIDENT", "OTHER_IMPORTANT"}
    for rule in (*rules.case_files, rules.evidence, rules.not_evidence, rules.held):
        assert rule.source.strip()


@pytest.mark.parametrize(
    ("old", "new", "entry", "reason"),
    [
        ('period = "6m"\nminimum = "6m"', 'period = "3m"\nminimum = "6m"',
         "recording_not_evidence.period", "shorter than the class minimum 6m"),
        ('procedure = "SIMPLE"\nperiod = "10y"', 'procedure = "SIMPLE"\nperiod = "5y"',
         "case_file.class[2].period", "shorter than the class minimum 10y"),
        ('act_type = "LEVY"', 'act_type = "TAX"', "case_file.class[4].act_type", "'TAX' is not one of"),
        ('"MASS_INCIDENT", "EMERGENCY"', '"MASS_INCIDENT", "RIOT"',
         "held.incident_kinds", "'RIOT' is not one of"),
        ('[held]\nperiod = "permanent"', '[held]\nperiod = "50y"', "held.period", "kept permanently"),
        ('period = "case_file"', 'period = "forever"', "recording_evidence.period", "is not a period"),
    ],
)  # fmt: skip
def test_r12_invalid_rules_fail_the_start_with_file_line_and_reason(
    tmp_path: Path, old: str, new: str, entry: str, reason: str
) -> None:
    assert old in SHIPPED
    text = SHIPPED.replace(old, new, 1)
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SystemExit) as stopped:
        load_rules(path)
    message = str(stopped.value)
    match = re.match(rf"retention rules {re.escape(str(path))}:(\d+): {re.escape(entry)}: ", message)
    assert match, message
    assert reason in message
    line = text.splitlines()[int(match.group(1)) - 1]
    assert entry.rsplit(".", 1)[-1] in line or line.startswith("["), line


def test_r12_a_broken_toml_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[held\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=re.escape(str(path))):
        load_rules(path)
