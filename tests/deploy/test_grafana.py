"""The Grafana dashboard is well-formed, its queries are valid PromQL, provisioning finds it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

# Grafana's variables, replaced by the values a query would take in the compose stack
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    '"$job"': '"touchstream"',
    '"$instance"': '".*"',
}


def expand(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


@pytest.fixture(scope="module")
def dashboard(deploy: Path) -> dict[str, Any]:
    return json.loads((deploy / "grafana" / "dashboards" / "touchstream.json").read_text())


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_every_panel_queries_prometheus_through_the_datasource_variable(
    dashboard: dict[str, Any],
) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels(dashboard):
        assert panel["targets"], panel["title"]
        for target in [panel, *panel["targets"]]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_panels_do_not_overlap_on_the_grid(dashboard: dict[str, Any]) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_every_dashboard_query_is_valid_promql(
    promtool: str, dashboard: dict[str, Any], tmp_path: Path
) -> None:
    # promtool parses expressions only inside rule files: one recording rule per query
    exprs = [expand(t["expr"]) for p in panels(dashboard) for t in p["targets"]]
    exprs += [expand(v["definition"]) for v in dashboard["templating"]["list"] if "definition" in v]
    queries = [e for e in exprs if not e.startswith("label_values(")]
    assert all("$" not in q for q in queries), "a Grafana variable left unexpanded"
    rules = [{"record": f"dashboard:query{i}", "expr": q} for i, q in enumerate(queries)]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_provisioning_points_grafana_at_the_compose_prometheus_and_dashboard(
    deploy: Path, compose: dict[str, Any], dashboard: dict[str, Any]
) -> None:
    provisioning = deploy / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]

    providers = yaml.safe_load((provisioning / "dashboards" / "touchstream.yml").read_text())
    (provider,) = providers["providers"]
    grafana = compose["services"]["grafana"]
    # short syntax SOURCE:TARGET[:MODE]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    # the provider reads the directory the dashboards folder is mounted at
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == provider["options"]["path"] + "/touchstream.json"
    assert dashboard["uid"] == "touchstream"
