"""``touchstream bench`` end to end on a small data set: every number is there and sane.

No speed thresholds here: timing claims live in the benchmark's own output, never in tests.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.leftovers import holders_of

KEYS = {
    "events",
    "customers",
    "raw_eps",
    "naive_faust_eps",
    "pipeline_eps",
    "settled_eps",
    "ratio_pipeline_vs_naive",
    "ratio_settled_vs_naive",
    "ratio_pipeline_vs_raw",
    "latency_rate_eps",
    "latency_rate_fixed",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "latency_matched",
    "worker_peak_rss_mib",
    "started_at",
    "broker",
    "broker_version",
}


def _bench_argv(json_path: Path, latency_seconds: str = "3", broker: str = "kafka") -> list[str]:
    return [
        sys.executable,
        "-m",
        "touchstream",
        "bench",
        "--broker",
        broker,
        "--events",
        "3000",
        "--customers",
        "300",
        "--latency-seconds",
        latency_seconds,
        "--json",
        str(json_path),
    ]


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TOUCHSTREAM_")}


@pytest.mark.integration
@pytest.mark.parametrize("broker", ["kafka", "embedded"])
def test_bench_reports_every_number(tmp_path: Path, broker: str) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        _bench_argv(out, broker=broker),
        capture_output=True,
        text=True,
        timeout=400,
        env=_clean_env(),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    data = json.loads(out.read_text())
    assert data.keys() >= KEYS, KEYS - data.keys()
    # which broker the numbers are of, in the JSON and in the printed report
    assert data["broker"] == broker
    product = {"kafka": "Apache Kafka", "embedded": "embedded Tansu"}[broker]
    assert re.fullmatch(r"\d+\.\d+\.\d+", data["broker_version"])
    assert f"broker:  {product} {data['broker_version']}" in proc.stdout
    assert data["events"] == 3000
    assert data["customers"] == 300
    assert data["raw_eps"] > 0
    assert data["naive_faust_eps"] > 0
    assert data["pipeline_eps"] > 0
    # settling (identity links done) comes after every event's first output, never before
    assert 0 < data["settled_eps"] <= data["pipeline_eps"]
    # without --latency-rate, the latency phase offers half of what the worker settled at
    assert data["latency_rate_fixed"] is False
    assert abs(data["latency_rate_eps"] - data["settled_eps"] / 2) <= 1
    assert data["latency_matched"] > 0
    assert data["latency_matched"] <= data["latency_sent"]
    assert data["latency_max_ms"] >= data["latency_p99_ms"] >= data["latency_p50_ms"]
    assert data["worker_peak_rss_mib"] > 0
    assert data["ratio_pipeline_vs_naive"] == pytest.approx(
        data["pipeline_eps"] / data["naive_faust_eps"], rel=0.01
    )
    # the printed report carries the same numbers as the JSON
    assert f"{data['pipeline_eps']:,.0f}" in proc.stdout
    assert f"{data['settled_eps']:,.0f}" in proc.stdout
    assert "p99" in proc.stdout and "MiB" in proc.stdout


@pytest.mark.integration
def test_interrupted_bench_leaves_nothing_behind(tmp_path: Path) -> None:
    bench = subprocess.Popen(
        _bench_argv(tmp_path / "bench.json", latency_seconds="30"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_clean_env(),
    )
    try:
        assert bench.stderr is not None
        workdir = None
        for line in bench.stderr:
            found = re.search(r"logs in (\S+) ", line)
            if found:
                workdir = found.group(1)
            if "(c) Touchstream worker" in line:  # broker, Redis and the worker are all up
                break
        assert workdir is not None, "the bench never said where its logs are"
        time.sleep(2)
        bench.send_signal(signal.SIGINT)
        code = bench.wait(timeout=60)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    assert code == 130
    assert not Path(workdir).exists()
    assert holders_of(workdir) == []
    assert not (tmp_path / "bench.json").exists()
