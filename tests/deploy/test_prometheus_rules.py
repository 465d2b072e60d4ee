"""The shipped Prometheus config and alert rules load in Prometheus and behave as unit-tested."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml


def run_promtool(promtool: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def alerts(alert_rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in alert_rules["groups"] for rule in group["rules"] if "alert" in rule]


def test_prometheus_config_is_valid(promtool: str, deploy: Path) -> None:
    result = run_promtool(promtool, deploy / "prometheus", "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rules_are_valid(promtool: str, deploy: Path, alert_rules: dict[str, Any]) -> None:
    result = run_promtool(promtool, deploy / "prometheus", "check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    rules = sum(len(group["rules"]) for group in alert_rules["groups"])
    assert f"SUCCESS: {rules} rules found" in result.stdout


def test_alert_unit_tests_pass(promtool: str, deploy: Path) -> None:
    result = run_promtool(promtool, deploy / "prometheus", "test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_config_loads_the_rules_and_scrapes_touchstream(deploy: Path) -> None:
    config = yaml.safe_load((deploy / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    # alerts.yml selects Prometheus's `up` series by this job name
    assert jobs["touchstream"].get("metrics_path", "/metrics") == "/metrics"


def test_every_alert_is_tested_firing_and_staying_quiet(
    deploy: Path, alert_rules: dict[str, Any]
) -> None:
    tests = yaml.safe_load((deploy / "prometheus" / "alerts_test.yml").read_text())
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts(alert_rules)}
    assert names - fires == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested staying quiet"


def test_every_alert_has_severity_summary_and_a_runbook_section(
    repo: Path, alert_rules: dict[str, Any]
) -> None:
    docs = (repo / "docs" / "operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", docs, flags=re.MULTILINE)
    }
    for rule in alerts(alert_rules):
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        path, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert path == "docs/operations.md", rule["alert"]
        assert anchor == rule["alert"].lower() and anchor in anchors, rule["alert"]
