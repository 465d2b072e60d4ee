"""`touchstream demo` as a newcomer runs it: traffic, DLQ, Redis profiles, clean exit, on the
embedded broker (`make demo`) and on Apache Kafka (`--broker kafka`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.leftovers import holders_of, port_open

pytestmark = pytest.mark.integration


def _run_demo(summary_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "touchstream", "demo", *options]
    argv += ["--rate", "150", "--malformed", "0.05", "--customers", "100"]
    argv += ["--summary-json", str(summary_path)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _said(result: subprocess.CompletedProcess[str], prefix: str) -> str:
    return next(line for line in result.stdout.splitlines() if line.startswith(prefix))[
        len(prefix) :
    ]


def test_demo_with_traffic_writes_a_truthful_summary(tmp_path) -> None:
    """``make demo``: the embedded broker, nothing installed but the wheels."""
    summary_path = tmp_path / "summary.json"
    result = _run_demo(summary_path, "--duration", "8")
    summary = orjson.loads(summary_path.read_bytes())
    assert summary["broker"] == "embedded"
    assert _said(result, "broker software: ").startswith("embedded Tansu ")
    assert summary["events_processed"] > 0
    assert summary["malformed_injected"] > 0
    assert summary["dlq_events"] == summary["malformed_injected"]
    # a simulated shopper has a web device and a loyalty card, linked once she identifies on
    # the web: until then two profiles, never more, and some are merged already
    assert 0 < summary["profiles_in_redis"] <= 2 * 100
    assert summary["merged_ids_in_redis"] > 0
    assert summary["events_processed"] + summary["dlq_events"] == summary["events_produced"]
    assert isinstance(summary["triggers"], dict)
    assert "Touchstream demo summary" in result.stdout
    assert not port_open(_said(result, "broker: ")), "the embedded broker outlived the demo"


def test_demo_on_apache_kafka_processes_the_traffic_and_leaves_nothing_behind(tmp_path) -> None:
    summary_path = tmp_path / "summary.json"
    result = _run_demo(summary_path, "--broker", "kafka", "--duration", "6")
    summary = orjson.loads(summary_path.read_bytes())
    assert summary["broker"] == "kafka"
    version = summary["broker_version"]
    assert _said(result, "broker software: ") == f"Apache Kafka {version}"
    assert f"broker         Apache Kafka {version}" in result.stdout
    assert summary["events_processed"] > 0
    assert summary["malformed_injected"] > 0
    assert summary["dlq_events"] == summary["malformed_injected"]
    assert summary["events_processed"] + summary["dlq_events"] == summary["events_produced"]
    assert 0 < summary["profiles_in_redis"] <= 2 * 100
    assert summary["merged_ids_in_redis"] > 0
    assert "every malformed event is in the DLQ; caught up: yes" in result.stdout
    # Kafka, Redis and the worker are gone, and none of them still holds a file of the demo
    # the demo reads a profile through the customer API with the token it issued and printed
    assert summary["api_read"]["status"] == 200
    assert _said(result, "token: ").startswith("ts_")
    for prefix in ("broker: ", "redis: redis://", "http: http://", "ops: http://"):
        hostport = _said(result, prefix).split("/", 1)[0]
        assert not port_open(hostport), f"{prefix}{hostport} outlived the demo"
    assert holders_of(_said(result, "logs: ")) == []


def test_demo_without_traffic_serves_until_sigterm_and_leaves_nothing_behind() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "touchstream", "demo", "--no-traffic"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = [proc.stdout.readline().strip() for _ in range(3)]  # type: ignore[union-attr]
        assert lines[0].startswith("broker: 127.0.0.1:")
        assert lines[1].startswith("redis: redis://127.0.0.1:")
        assert lines[2].startswith("http: http://127.0.0.1:")
        broker = lines[0].split(": ", 1)[1]
        redis_hostport = lines[1].split("//", 1)[1].rsplit("/", 1)[0]
        deadline = time.monotonic() + 60
        ready = False
        while time.monotonic() < deadline and not ready:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            ready = line.startswith("worker ready")
        assert ready
        assert port_open(broker) and port_open(redis_hostport)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not port_open(broker) and not port_open(redis_hostport)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_stopped_while_apache_kafka_starts_exits_quietly_and_leaves_nothing(
    tmp_path,
) -> None:
    # Kafka takes a few seconds to start: a SIGTERM then stops it and exits, no traceback
    temp = tmp_path / "temp"
    temp.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "touchstream", "demo", "--broker", "kafka", "--no-traffic"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TMPDIR": str(temp)},  # where the demo makes its directory
    )
    try:
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # 143 while Kafka was starting; 0 if it had started already (SIGTERM ends --no-traffic)
    assert proc.returncode in (143, 0), out[-3000:]
    assert "Traceback" not in out
    assert holders_of(str(temp)) == []


def test_cli_help_documents_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "touchstream", "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    for command in ("worker", "demo", "simulate", "bench", "dlq", "tokens"):
        assert command in result.stdout
    demo = subprocess.run(
        [sys.executable, "-m", "touchstream", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    for option in ("--duration", "--summary-json", "--no-traffic", "--rules", "--broker"):
        assert option in demo
