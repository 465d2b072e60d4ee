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

import redis

from touchstream.runtime import brokers
from touchstream.runtime.apache_kafka import KafkaUnavailable
from touchstream.runtime.brokers import Broker
from touchstream.runtime.embedded import EmbeddedRedis, start_redis
from touchstream.runtime.processes import Child, free_port
from touchstream.serving import tokens

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
    ops_port: int | None = None,
    **extra: str,
) -> dict[str, str]:
    """A worker's environment; the operations listener on ``ops_port`` (a free one if None)."""
    ops_port = free_port() if ops_port is None else ops_port
    env = clean_env()
    env.update(
        TOUCHSTREAM_ENV="development",
        TOUCHSTREAM_BROKER=broker_url,
        TOUCHSTREAM_REDIS_URL=redis_url,
        TOUCHSTREAM_WEB_PORT=str(web_port),
        TOUCHSTREAM_OPS_PORT=str(ops_port),
        TOUCHSTREAM_DATA_DIR=data_dir,
    )
    if embedded_broker:
        # tansu 0.6 under-reports end offsets (streams/transport.py); Apache Kafka does not
        env["TOUCHSTREAM_PROBE_END_OFFSETS"] = "true"

    env.update({f"TOUCHSTREAM_{k.upper()}": v for k, v in extra.items()})
    return env


# served by the operations listener, without a token; every other path is the customer API's
OPS_PATHS = ("/metrics", "/healthz", "/readyz")


def issue_token(client: redis.Redis, name: str, *scopes: str) -> str:
    """A bearer token stored (hashed) in ``client``'s Redis, as ``touchstream tokens issue``."""
    token, record = tokens.new_token(name, scopes or (tokens.ADMIN,))
    client.hset(tokens.TOKENS_KEY, record.id, record.stored())
    return token


@dataclass
class WorkerProcess:
    child: Child
    web_port: int
    data_dir: str
    ops_port: int = 0
    # sent as the bearer token to the customer API ("" sends none)
    token: str = ""

    @property
    def http(self) -> str:
        """The customer API (bearer token)."""
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def ops(self) -> str:
        """The operations listener: /metrics, /healthz, /readyz."""
        return f"http://127.0.0.1:{self.ops_port}"

    def url(self, path: str) -> str:
        ops = path.split("?", 1)[0] in OPS_PATHS
        return (self.ops if ops else self.http) + path

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        token: str | None = None,
        timeout_s: float = 2.0,
    ) -> tuple[int, bytes, dict[str, str]]:
        """Status, body and headers of one request; the worker's token on customer paths
        unless ``token`` is given ("" for none)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url(path), data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        bearer = self.token if token is None else token
        if bearer and path.split("?", 1)[0] not in OPS_PATHS:
            req.add_header("Authorization", f"Bearer {bearer}")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    def get(self, path: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
        status, body, _ = self.request("GET", path, timeout_s=timeout_s)
        return status, body

    def lookup(self, kind: str, value: str, token: str | None = None) -> tuple[int, bytes]:
        """POST /customers/lookup with the identifier in the body."""
        status, body, _ = self.request(
            "POST", "/customers/lookup", {"kind": kind, "value": value}, token=token
        )
        return status, body

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
    _token: str = ""

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
        ops_port = free_port()
        data_dir = str(self.workdir / name)
        merged = {**self.settings, **settings}
        env = worker_env(
            self.broker.url,
            self.redis.url(self.redis_db),
            port,
            data_dir,
            embedded_broker=self.broker.kind == "embedded",
            ops_port=ops_port,
            **merged,
        )
        argv = [sys.executable, "-m", "touchstream", "worker"]
        if rules:
            argv += ["--rules", rules]
        child = Child(argv, name, env=env, log_path=self.workdir / f"{name}.log")
        worker = WorkerProcess(child, port, data_dir, ops_port, self.token)
        self.workers.append(worker)
        return worker

    @property
    def token(self) -> str:
        """An admin token of this stack's Redis, issued on first use, which its workers send."""
        if not self._token:
            client = redis.Redis.from_url(self.redis.url(self.redis_db))
            try:
                self._token = issue_token(client, "touchstream stack")
            finally:
                client.close()
        return self._token

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.owns_servers:
            self.redis.stop()
            self.broker.stop()
