"""Alerts and dashboard: `promtool check rules` and `promtool test rules` (one unit test per alert,
components/monitoring/alerts.test.yaml), every metric they use exists in the code, every alert has
its answer in docs/runbook.md, and the Grafana dashboard is well-formed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from codefacts import ROOT
from k8s_support import K8S, tool

MONITORING = K8S / "components/monitoring"
# Series that Lawtrail's code exports (servicekit and the services); the rest come from Prometheus
# itself (up) or Strimzi's Kafka Exporter (kafka_*), named in its documentation.
OWN_METRIC = re.compile(r"(?<![:\w])((?:lawtrail|grpc_server)_[a-z_]+?)(?:_bucket|_count|_sum)?\b")


def _rule_spec() -> dict[str, Any]:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    return rule["spec"]


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool", "PROMTOOL"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _prepared(tmp_path: Path) -> Path:
    (tmp_path / "lawtrail.rules.yaml").write_text(yaml.safe_dump(_rule_spec(), sort_keys=False))
    shutil.copy(MONITORING / "alerts.test.yaml", tmp_path / "alerts.test.yaml")
    return tmp_path


def test_promtool_check_rules(tmp_path: Path) -> None:
    done = _promtool("check", "rules", "lawtrail.rules.yaml", cwd=_prepared(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_test_rules(tmp_path: Path) -> None:
    done = _promtool("test", "rules", "alerts.test.yaml", cwd=_prepared(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_test_rules_catches_a_wrong_expectation(tmp_path: Path) -> None:
    """The alert tests can fail: a changed expected summary is reported."""
    folder = _prepared(tmp_path)
    test_file = folder / "alerts.test.yaml"
    test_file.write_text(test_file.read_text().replace("holds 2 records", "holds 3 records"))
    done = _promtool("test", "rules", "alerts.test.yaml", cwd=folder)
    assert done.returncode != 0
    assert "holds 3 records" in done.stdout + done.stderr


def _alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in _rule_spec()["groups"] for r in group["rules"] if "alert" in r}


def test_every_alert_has_a_unit_test() -> None:
    tests = yaml.safe_load((MONITORING / "alerts.test.yaml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])}
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert set(_alerts()) - tested == set(), (
        f"alerts without a promtool test: {sorted(set(_alerts()) - tested)}"
    )
    assert set(_alerts()) - fired == set(), f"alerts never shown firing: {sorted(set(_alerts()) - fired)}"


def test_every_alert_has_a_severity_and_a_runbook_section() -> None:
    runbook = (ROOT / "docs/runbook.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in runbook.splitlines()
        if line.startswith("#")
    }
    for name, rule in _alerts().items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        url = rule["annotations"]["runbook_url"]
        assert url == f"docs/runbook.md#{name.lower()}", f"{name}: runbook_url {url}"
        assert name.lower() in anchors, f"docs/runbook.md has no section '### {name}'"


def _code_text() -> str:
    sources = [*(ROOT / "libs/servicekit/src").rglob("*.py"), *(ROOT / "services").glob("*/src/**/*.py")]
    return "\n".join(p.read_text(encoding="utf-8") for p in sources)


def _expressions() -> list[str]:
    rules = [r["expr"] for group in _rule_spec()["groups"] for r in group["rules"]]
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    panels = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return rules + panels


def test_alerts_and_dashboard_use_only_metrics_the_code_exports() -> None:
    code = _code_text()
    used = {m for expr in _expressions() for m in OWN_METRIC.findall(expr)}
    missing = sorted(m for m in used if f'"{m}"' not in code)
    assert not missing, f"metrics that no code exports: {missing}"
    assert "lawtrail_media_integrity_failures_total" in used


def test_the_grafana_dashboard_is_well_formed() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert dashboard["uid"] == "lawtrail-overview"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], f"panel {panel['title']} has no query"
            assert all(t["expr"].strip() for t in panel["targets"])
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "service"} <= variables
