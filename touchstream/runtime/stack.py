"""A local stack: a broker (embedded or Apache Kafka) and Redis plus Touchstream workers as
child processes.

Used by ``touchstream demo`` and by the integration tests, so both run the product the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from touchstream.runtime import brokers
from touchstream.runtime.apache_kafka import KafkaUnavailable
from touchstream.runtime.brokers import Broker
from touchstream.runtime.embedded import EmbeddedRedis, start_redis
from touchstream.runtime.processes import Child, free_port

WORKER_READY_TIMEOUT_S = 60.0


def clean_env() -> dict[str, str]:
    """This process's environment without TOUCHSTREAM_* settings, for child processes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHSTREAM_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def worker_env(
    broker_url: str,
    redis_url: str,
    web_port: int,
    data_dir: str,
    /,
    embedded_broker: bool,
    **extra: str,
) -> dict[str, str]:
    env = clean_env()
    env.update(
        TOUCHSTREAM_ENV="development",
        TOUCHSTREAM_BROKER=broker_url,
        TOUCHSTREAM_REDIS_URL=redis_url,
        TOUCHSTREAM_WEB_PORT=str(web_port),
        TOUCHSTREAM_DATA_DIR=data_dir,
    )
    if embedded_broker:
        # tansu 0.6 under-reports end offsets (streams/transport.py); Apache Kafka does not
        env["TOUCHSTREAM_PROBE_END_OFFSETS"] = "true"

    env.update({f"TOUCHSTREAM_{k.upper()}": v for k, v in extra.items()})
    return env


@dataclass
class WorkerProcess:
    child: Child
    web_port: int
    data_dir: str

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def get(self, path: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.http + path, timeout=timeout_s) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, timeout_s: float = WORKER_READY_TIMEOUT_S) -> float:
        """Seconds until /readyz answered 200; raises with the worker's log tail otherwise."""
        return self.wait_for("/readyz", timeout_s)

    def wait_for(self, path: str, timeout_s: float = WORKER_READY_TIMEOUT_S) -> float:
        """Seconds until ``path`` answered 200; raises with the worker's log tail otherwise."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if not self.child.alive():
                raise RuntimeError(
                    f"worker exited with code {self.child.proc.returncode}:\n{self.child.tail()}"
                )
            try:
                status, _ = self.get(path, timeout_s=1.0)
                if status == 200:
                    return time.monotonic() - started
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"worker: no 200 on {path} after {timeout_s}s:\n{self.child.tail()}")

    def poll(
        self, path: str, done: Callable[[dict[str, Any]], bool], timeout_s: float = 30
    ) -> dict[str, Any]:
        """The JSON answer of ``path`` once ``done`` holds for it; raises with the last answer."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            status, body = self.get(path)
            last = (status, body[:300])
            if status == 200:
                view: dict[str, Any] = json.loads(body)
                if done(view):
                    return view
            time.sleep(0.2)
        raise AssertionError(f"{path} never satisfied the condition; last answer {last}")

    def metrics(self) -> dict[str, float]:
        """Sum of each touchstream_* metric over its labels (for progress and summaries)."""
        _, body = self.get("/metrics")
        return parse_metric_sums(body.decode())

    def stop(self, timeout_s: float = 15.0) -> int | None:
        return self.child.stop(timeout_s)


def parse_metric_sums(text: str) -> dict[str, float]:
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("touchstream_"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        try:
            sums[name] = sums.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return sums


@dataclass
class Stack:
    workdir: Path
    broker: Broker
    redis: EmbeddedRedis
    workers: list[WorkerProcess] = field(default_factory=list)
    redis_db: int = 0
    owns_servers: bool = True
    settings: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, workdir: Path | None = None, broker_kind: str = brokers.EMBEDDED) -> Stack:
        path = workdir or Path(tempfile.mkdtemp(prefix="touchstream-"))
        path.mkdir(parents=True, exist_ok=True)
        try:
            broker = brokers.start(broker_kind, path)
        except KafkaUnavailable:
            # nothing ran, so there is no log to keep: leave no directory of ours behind
            if workdir is None:
                shutil.rmtree(path, ignore_errors=True)
            raise
        try:
            redis = start_redis(log_path=path / "redis.log")
        except Exception:
            broker.stop()
            raise
        return cls(path, broker, redis)

    def start_worker(
        self, rules: str | None = None, name: str | None = None, **settings: str
    ) -> WorkerProcess:
        name = name or f"worker-{len(self.workers) + 1}"
        port = free_port()
        data_dir = str(self.workdir / name)
        merged = {**self.settings, **settings}
        env = worker_env(
            self.broker.url,
            self.redis.url(self.redis_db),
            port,
            data_dir,
            embedded_broker=self.broker.kind == "embedded",
            **merged,
        )
        argv = [sys.executable, "-m", "touchstream", "worker"]
        if rules:
            argv += ["--rules", rules]
        child = Child(argv, name, env=env, log_path=self.workdir / f"{name}.log")
        worker = WorkerProcess(child, port, data_dir)
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.owns_servers:
            self.redis.stop()
            self.broker.stop()
