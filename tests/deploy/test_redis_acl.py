"""deploy/redis/users.acl: the workers' service user can do its job and nothing destructive."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import yaml
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from touchstream.runtime.embedded import HOST, redis_binary
from touchstream.runtime.kafka_io import produce
from touchstream.runtime.processes import Child, free_port, wait_for_port
from touchstream.runtime.stack import Stack, issue_token
from touchstream.simulator.factory import purchase


@pytest.fixture(scope="module")
def service_user(deploy: Path) -> dict[str, str]:
    """The Redis credentials the compose workers use."""
    compose: dict[str, Any] = yaml.safe_load((deploy / "docker-compose.yml").read_text())
    env = compose["services"]["worker-1"]["environment"]
    return {
        "username": env["TOUCHSTREAM_REDIS_USERNAME"],
        "password": env["TOUCHSTREAM_REDIS_PASSWORD"],
    }


@pytest.fixture(scope="module")
def acl_redis(deploy: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server loaded with the shipped ACL file, as the compose stack starts it."""
    workdir = tmp_path_factory.mktemp("acl-redis")
    port = free_port(HOST)
    argv = [
        redis_binary(),
        *("--bind", HOST, "--port", str(port), "--dir", str(workdir), "--save", ""),
        *("--aclfile", str(deploy / "redis" / "users.acl")),
    ]
    child = Child(argv, "acl-redis", log_path=workdir / "redis.log")
    try:
        try:
            wait_for_port(HOST, port, 10.0, child.proc)
        except RuntimeError:
            pytest.fail(f"redis-server refused the ACL file:\n{child.tail()}")
        yield f"redis://{HOST}:{port}/0"
    finally:
        child.stop(timeout_s=5)


def connect(url: str, **credentials: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, **credentials)


def test_the_default_user_is_disabled(acl_redis: str) -> None:
    with pytest.raises((AuthenticationError, ResponseError)):
        connect(acl_redis).ping()


def test_service_user_reads_writes_and_runs_scripts_on_touchstream_keys(
    acl_redis: str, service_user: dict[str, str]
) -> None:
    client = connect(acl_redis, **service_user)
    client.hset("ts:profile:acl-1", mapping={"version": 1, "points": 10})
    client.set("ts:alias:loyalty_id:L-1", "acl-1")
    version = client.register_script("return redis.call('HGET', KEYS[1], 'version')")
    with client.pipeline(transaction=False) as pipe:
        version(keys=["ts:profile:acl-1"], client=pipe)
        pipe.exists("ts:alias:loyalty_id:L-1")
        assert pipe.execute() == [b"1", 1]
    assert client.delete("ts:alias:loyalty_id:L-1") == 1


@pytest.mark.parametrize(
    "command",
    [("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "maxmemory"), ("CONFIG", "SET", "save", "")],
)
def test_service_user_may_not_flush_or_reconfigure(
    acl_redis: str, service_user: dict[str, str], command: tuple[str, ...]
) -> None:
    client = connect(acl_redis, **service_user)
    client.set("ts:meta:acl-probe", "kept")
    with pytest.raises(NoPermissionError):
        client.execute_command(*command)
    assert client.get("ts:meta:acl-probe") == b"kept"


def test_service_user_cannot_touch_keys_outside_its_namespace(
    acl_redis: str, service_user: dict[str, str]
) -> None:
    with pytest.raises(NoPermissionError):
        connect(acl_redis, **service_user).set("session:other-app", "x")


@pytest.mark.integration
def test_a_worker_logged_in_as_the_service_user_serves_profiles(
    stack: Stack, acl_redis: str, service_user: dict[str, str]
) -> None:
    worker = stack.start_worker(
        redis_url=acl_redis,
        redis_username=service_user["username"],
        redis_password=service_user["password"],
    )
    # the customer API's tokens live in the Redis the worker reads, under the same ACL
    worker.token = issue_token(connect(acl_redis, **service_user), "acl test")
    worker.wait_ready()
    topic = stack.settings["topic_prefix"] + "touchpoints"
    produce(
        stack.broker.bootstrap,
        topic,
        [(b"crm-acl", purchase({"customer_id": "crm-acl"}, "o-acl", 10_000))],
    )
    worker.wait_for("/customers/crm-acl", timeout_s=30)
    status, body = worker.get("/customers/crm-acl")
    assert status == 200
    view = orjson.loads(body)
    assert view["customer_id"] == "crm-acl" and view["orders"] == 1
    stored = connect(acl_redis, **service_user).hgetall("ts:profile:crm-acl")
    assert stored[b"version"] == str(view["version"]).encode()
