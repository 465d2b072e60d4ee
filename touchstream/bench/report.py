"""Benchmark results: the numbers, the printed report and the JSON file."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from touchstream.runtime.brokers import describe


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (an observed value, never an interpolation)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(math.ceil(p / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count() or 0,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


@dataclass
class BenchResult:
    events: int
    customers: int
    started_at: str
    workers: int = 1
    broker: str = "kafka"  # runtime.brokers.KINDS: numbers of two brokers are not comparable
    broker_version: str = ""
    raw_eps: float = 0.0
    naive_faust_eps: float = 0.0
    pipeline_eps: float = 0.0
    settled_eps: float = 0.0
    latency_rate_eps: float = 0.0
    latency_rate_fixed: bool = False  # --latency-rate, not half of the settled rate
    latency_sent: int = 0
    latency_matched: int = 0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    latency_max_ms: float = 0.0
    worker_peak_rss_mib: float = 0.0
    pipeline_duplicate_outputs: int = 0
    wall_seconds: float = 0.0
    machine: dict[str, Any] = field(default_factory=machine)

    @property
    def ratio_pipeline_vs_naive(self) -> float:
        return ratio(self.pipeline_eps, self.naive_faust_eps)

    @property
    def ratio_settled_vs_naive(self) -> float:
        return ratio(self.settled_eps, self.naive_faust_eps)

    @property
    def ratio_pipeline_vs_raw(self) -> float:
        return ratio(self.pipeline_eps, self.raw_eps)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio_pipeline_vs_naive"] = round(self.ratio_pipeline_vs_naive, 4)
        data["ratio_pipeline_vs_raw"] = round(self.ratio_pipeline_vs_raw, 4)
        data["ratio_settled_vs_naive"] = round(self.ratio_settled_vs_naive, 4)
        # whole events/s, rounded the way the text report formats them, so both agree
        for name in (
            "raw_eps",
            "naive_faust_eps",
            "pipeline_eps",
            "settled_eps",
            "latency_rate_eps",
        ):
            data[name] = round(data[name])
        for name in (
            "latency_p50_ms",
            "latency_p99_ms",
            "latency_max_ms",
            "worker_peak_rss_mib",
            "wall_seconds",
        ):
            data[name] = round(float(data[name]), 1)
        return data

    def write_json(self, path: str | Path) -> None:
        Path(path).write_bytes(
            orjson.dumps(self.as_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        )

    def text(self) -> str:
        m = self.machine
        lines = [
            f"touchstream bench  {self.started_at}",
            f"  machine: {m['nproc']} CPUs, Python {m['python']}, {m['platform']}",
            f"  broker:  {describe(self.broker, self.broker_version)}, one node on loopback",
            f"  data:    {self.events:,} events of {self.customers:,} customers, "
            f"8 partitions, {self.workers} worker(s)",
            "",
            "  throughput (events/s, start-up excluded)",
            f"    (a) raw aiokafka + orjson consume   {self.raw_eps:>12,.0f}",
            f"    (b) naive Faust, 1 table update/ev  {self.naive_faust_eps:>12,.0f}",
            f"    (c) Touchstream pipeline, applied   {self.pipeline_eps:>12,.0f}",
            f"        every identity link settled     {self.settled_eps:>12,.0f}",
            f"    c / b  {self.ratio_pipeline_vs_naive:8.2f}x applied, "
            f"{self.ratio_settled_vs_naive:.2f}x settled",
            f"    c / a  {self.ratio_pipeline_vs_raw:8.3f}x",
            "",
            f"  latency event -> profiles.updates at {self.latency_rate_eps:,.0f} ev/s "
            + ("(fixed by --latency-rate)" if self.latency_rate_fixed else "(half of c settled)"),
            f"    matched {self.latency_matched:,} of {self.latency_sent:,} sent",
            f"    p50 {self.latency_p50_ms:,.1f} ms   p99 {self.latency_p99_ms:,.1f} ms   "
            f"max {self.latency_max_ms:,.1f} ms",
            "",
            f"  worker peak RSS (VmHWM)  {self.worker_peak_rss_mib:,.1f} MiB",
            f"  duplicate outputs on profiles.updates (skipped)  {self.pipeline_duplicate_outputs:,}",
            f"  total wall time  {self.wall_seconds:,.1f} s (start-ups included)",
        ]
        return "\n".join(lines)
