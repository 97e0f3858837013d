"""R2, R3, R10: the rules per act type are configuration data, checked strictly at start."""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from pathlib import Path

import pytest
from case_svc.bootstrap import load_rules
from case_svc.domain.model import ActType, Procedure, Stage
from case_svc.domain.rules import REQUIRED_KEYS, RuleBook, RulesError


def default_data() -> dict:
    text = resources.files("case_svc").joinpath("config/case_rules.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def test_r02_the_default_rules_cover_every_act_type_and_penalty_procedure():
    book = load_rules()
    assert set(book.rules) == set(REQUIRED_KEYS)
    for act_type in ActType:
        procedures = list(Procedure) if act_type is ActType.PENALTY else [None]
        for procedure in procedures:
            rules = book.for_case(act_type, procedure)
            assert rules.requirements
            assert rules.source


def test_r10_every_checklist_names_known_document_types():
    book = load_rules()
    for rules in book.rules.values():
        assert all(r.document_type in book.document_types for r in rules.requirements)


def test_r10_a_file_path_overrides_the_default(tmp_path: Path):
    data = default_data()
    data["case_types"]["LEVY"]["required_documents"] = [{"type": "OTHER"}]
    path = tmp_path / "rules.toml"
    lines = []
    for code, doc in data["document_types"].items():
        lines.append(f'document_types.{code} = {{ name = "{doc["name"]}", english = "{doc["english"]}" }}')
    text = "\n".join(lines) + "\n"
    for key in REQUIRED_KEYS:
        rules = data["case_types"][key]
        reqs = ", ".join(
            "{ " + ", ".join(f'{k} = "{v}"' for k, v in r.items()) + " }" for r in rules["required_documents"]
        )
        stages = ", ".join(f'{k} = "{v}"' for k, v in rules.get("inapplicable_stages", {}).items())
        text += f'\n[case_types."{key}"]\nsource = "test"\nrequired_documents = [{reqs}]\n'
        text += f"inapplicable_stages = {{ {stages} }}\n"
    path.write_text(text, encoding="utf-8")
    book = load_rules(path)
    assert [r.document_type for r in book.for_case(ActType.LEVY, None).requirements] == ["OTHER"]


def _broken(mutate) -> dict:
    data = copy.deepcopy(default_data())
    mutate(data)
    return data


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["case_types"].pop("LEVY"), "missing \\['LEVY'\\]"),
        (lambda d: d["case_types"].__setitem__("LEVY/GENERAL", {}), "unknown \\['LEVY/GENERAL'\\]"),
        (
            lambda d: d["case_types"]["LEVY"]["required_documents"].append({"type": "MEMO"}),
            "document type 'MEMO' is not in document_types",
        ),
        (
            lambda d: d["case_types"]["LEVY"].__setitem__("required_documents", []),
            "an empty checklist would let any file be archived",
        ),
        (
            lambda d: d["case_types"]["LEVY"].__setitem__("inapplicable_stages", {"INITIATION": "x"}),
            "INITIATION applies to every case",
        ),
        (
            lambda d: d["case_types"]["LEVY"].__setitem__("inapplicable_stages", {"DECIDING": "x"}),
            "'DECIDING' is not one of",
        ),
        (
            lambda d: d["case_types"]["LEVY"]["required_documents"].append(
                {"type": "OTHER", "when_activity": "DANCING"}
            ),
            "'DANCING' is not one of",
        ),
        (lambda d: d["case_types"]["LEVY"].__setitem__("colour", "red"), "unknown keys \\['colour'\\]"),
        (lambda d: d["case_types"]["LEVY"].pop("source"), "LEVY.source: required text"),
    ],
)
def test_r10_a_mistake_in_the_rules_stops_the_service(mutate, message):
    with pytest.raises(RulesError, match=message):
        RuleBook.from_mapping(_broken(mutate))


def test_r03_an_inapplicable_stage_is_declared_with_its_reason():
    book = load_rules()
    inspection = book.for_case(ActType.INSPECTION, None)
    assert set(inspection.inapplicable_stages) == {Stage.REVIEW_DECISION}
    assert book.for_case(ActType.PENALTY, Procedure.GENERAL).inapplicable_stages == {}


def test_r10_an_invalid_rules_file_fails_loudly(tmp_path: Path):
    path = tmp_path / "rules.toml"
    path.write_text("document_types = 3\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=rf"case rules {path} are invalid: document_types: expected a table"):
        load_rules(path)
