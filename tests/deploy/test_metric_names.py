"""The alerts and the dashboard query metrics the worker really exports, and show all of them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from touchstream import metrics

SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}
METRIC_NAME = re.compile(r"\btouchstream_[a-z0-9_]+")


def family_samples(name: str, kind: str) -> set[str]:
    base = name.removesuffix("_total") if kind == "counter" else name
    return {base + suffix for suffix in SAMPLE_SUFFIXES[kind]}


def exported() -> dict[str, set[str]]:
    """Family name -> the sample names it exposes on /metrics, for every touchstream metric."""
    families: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                families[family.name] = family_samples(family.name, family.type)
    return families


def names_in(text: str) -> set[str]:
    return set(METRIC_NAME.findall(text))


def alert_exprs(alert_rules: dict[str, Any]) -> list[str]:
    return [rule["expr"] for group in alert_rules["groups"] for rule in group["rules"]]


def dashboard_exprs(deploy: Path) -> list[str]:
    dashboard = json.loads((deploy / "grafana" / "dashboards" / "touchstream.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["definition"])
    return exprs


def test_touchstream_metrics_are_found_in_the_registry() -> None:
    # guards the test itself: a registry walk that finds nothing would let everything pass
    samples = set().union(*exported().values())
    assert {"touchstream_events_in_total", "touchstream_ready"} <= samples
    assert "touchstream_event_to_decision_seconds_bucket" in samples


def test_alerts_and_dashboard_query_only_exported_metrics(
    deploy: Path, alert_rules: dict[str, Any]
) -> None:
    known = set().union(*exported().values())
    used = names_in("\n".join(alert_exprs(alert_rules) + dashboard_exprs(deploy)))
    assert used - known == set(), "queried but not exported by touchstream/metrics.py"


def test_dashboard_shows_every_exported_metric(deploy: Path) -> None:
    used = names_in("\n".join(dashboard_exprs(deploy)))
    missing = sorted(name for name, samples in exported().items() if not samples & used)
    assert missing == [], "metrics in touchstream/metrics.py without a dashboard panel"
