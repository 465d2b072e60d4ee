"""A real Prometheus scrapes a real worker with the shipped config and rules; figures add up."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from touchstream.runtime.kafka_io import produce
from touchstream.runtime.processes import Child, free_port
from touchstream.runtime.stack import Stack, WorkerProcess
from touchstream.simulator.factory import event, purchase

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
HOST = "127.0.0.1"


class Prometheus:
    def __init__(self, child: Child, port: int) -> None:
        self.child = child
        self.url = f"http://{HOST}:{port}"

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(self.url + path + query, timeout=5) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # a refused query: the JSON body says why
            return json.loads(exc.read())

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def by(self, expr: str, *labels: str) -> dict[tuple[str, ...], float]:
        return {
            tuple(r["metric"].get(label, "") for label in labels): float(r["value"][1])
            for r in self.query(expr)
        }


def eventually(check: Callable[[], Any], expected: Any, timeout_s: float = 30.0) -> Any:
    """Poll ``check`` until it returns ``expected``; return the last value seen otherwise."""
    deadline = time.monotonic() + timeout_s
    seen = check()
    while seen != expected and time.monotonic() < deadline:
        time.sleep(0.25)
        seen = check()
    return seen


def grafana_expand(expr: str) -> str:
    """A dashboard query with Grafana's variables set as the compose stack would."""
    for variable, value in (
        ("$__rate_interval", "1m"),
        ('"$job"', '"touchstream"'),
        ('"$instance"', '".*"'),
    ):
        expr = expr.replace(variable, value)
    return expr


def scrape_config(worker: WorkerProcess) -> dict[str, Any]:
    """The shipped prometheus.yml, pointed at this worker, scraping and evaluating every second."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(DEPLOY / "prometheus" / rules) for rules in config["rule_files"]]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "touchstream"]
    job["static_configs"] = [{"targets": [f"{HOST}:{worker.ops_port}"]}]
    config["scrape_configs"] = [job]
    return config


@pytest.fixture
def worker(stack: Stack) -> WorkerProcess:
    worker = stack.start_worker()
    worker.wait_ready()
    return worker


@pytest.fixture
def prometheus(worker: WorkerProcess, tmp_path: Path) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if not binary:
        pytest.fail("prometheus not found on PATH: run `make test-tools` (Debian's prometheus)")
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(worker)))
    port = free_port(HOST)
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address={HOST}:{port}",
        "--log.level=warn",
    ]
    child = Child(argv, "prometheus", log_path=tmp_path / "prometheus.log")
    server = Prometheus(child, port)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert child.alive(), f"prometheus exited:\n{child.tail()}"
            assert time.monotonic() < deadline, f"prometheus not ready:\n{child.tail()}"
            try:
                with urllib.request.urlopen(server.url + "/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        yield server
    finally:
        child.stop(timeout_s=10)


def test_prometheus_reads_the_workers_figures(
    stack: Stack, worker: WorkerProcess, prometheus: Prometheus
) -> None:
    events = [
        purchase({"customer_id": f"crm-scrape-{i}"}, f"o-scrape-{i}", 2_500, channel="pos")
        for i in range(3)
    ] + [
        event("page_view", {"anonymous_id": f"anon-scrape-{i}"}, {"url": "https://shop.example/"})
        for i in range(2)
    ]
    malformed = [b"{not json", b"\xff\xfe"]
    topic = stack.settings["topic_prefix"] + "touchpoints"
    produce(
        stack.broker.bootstrap, topic, [(None, e) for e in events] + [(None, m) for m in malformed]
    )

    target = {"job": "touchstream", "instance": f"{HOST}:{worker.ops_port}"}
    assert eventually(lambda: prometheus.value('up{job="touchstream"}'), 1.0) == 1.0
    ready = eventually(
        lambda: prometheus.by("touchstream_ready", "job", "instance"),
        {(target["job"], target["instance"]): 1.0},
    )
    assert ready == {(target["job"], target["instance"]): 1.0}

    counted = eventually(lambda: prometheus.value("sum(touchstream_events_in_total)"), 5.0)
    assert counted == 5.0
    assert prometheus.by(
        "sum by (type, channel) (touchstream_events_in_total)", "type", "channel"
    ) == {
        ("purchase", "pos"): 3.0,
        ("page_view", "web"): 2.0,
    }
    dlq = eventually(
        lambda: prometheus.by("sum by (reason) (touchstream_dlq_total)", "reason"),
        {("invalid_json",): 1.0, ("invalid_utf8",): 1.0},
    )
    assert dlq == {("invalid_json",): 1.0, ("invalid_utf8",): 1.0}
    decided = eventually(
        lambda: prometheus.value("sum(touchstream_event_to_decision_seconds_count)"), 5.0
    )
    assert decided == 5.0


def test_shipped_rules_and_dashboard_queries_evaluate_against_real_data(
    stack: Stack, worker: WorkerProcess, prometheus: Prometheus
) -> None:
    topic = stack.settings["topic_prefix"] + "touchpoints"
    produce(
        stack.broker.bootstrap,
        topic,
        [(None, purchase({"customer_id": "crm-rules"}, "o-r", 1_000))],
    )
    assert eventually(lambda: prometheus.value("sum(touchstream_events_in_total)"), 1.0) == 1.0

    def rule_health() -> dict[str, str]:
        groups = prometheus.get("/api/v1/rules")["data"]["groups"]
        return {r["name"]: r["health"] for g in groups for r in g["rules"]}

    health = eventually(lambda: set(rule_health().values()), {"ok"}, timeout_s=15)
    assert health == {"ok"}, rule_health()
    shipped = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    names = {r.get("alert") or r["record"] for g in shipped["groups"] for r in g["rules"]}
    assert set(rule_health()) == names

    # every panel's query is accepted by the server (no many-to-many matches, no type errors)
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "touchstream.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            prometheus.query(grafana_expand(target["expr"]))  # asserts status success
