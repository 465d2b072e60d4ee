"""TOUCHSTREAM_STORE=rocksdb: the tables live on disk under the worker's data directory, and a
restarted worker carries on from them (with the changelog tail) without losing or repeating."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from touchstream.runtime.kafka_io import produce
from touchstream.runtime.stack import Stack
from touchstream.simulator.factory import purchase

pytestmark = pytest.mark.integration

SHOPPER = {"customer_id": "crm-rocks"}


def served(stack: Stack, version: int, timeout_s: float = 30.0) -> dict[str, str]:
    client = redis.Redis.from_url(stack.redis.url(stack.redis_db), decode_responses=True)
    deadline = time.monotonic() + timeout_s
    profile: dict[str, str] = {}
    while time.monotonic() < deadline:
        profile = client.hgetall("ts:profile:crm-rocks")
        if profile and int(profile["version"]) >= version:
            return profile
        time.sleep(0.1)
    raise AssertionError(f"profile not at version {version}: {profile}")


def send(stack: Stack, orders: range) -> None:
    topic = stack.settings["topic_prefix"] + "touchpoints"
    events = [(b"crm-rocks", purchase(SHOPPER, f"o-{i}", 1_000)) for i in orders]
    produce(stack.broker.bootstrap, topic, events)


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_a_restarted_rocksdb_worker_carries_on_from_its_disk(stack: Stack, how: str) -> None:
    worker = stack.start_worker(name="rocks", store="rocksdb")
    worker.wait_ready()
    send(stack, range(5))
    assert served(stack, version=5)["points"] == "50"
    if how == "killed":
        worker.child.kill()  # kill -9: offsets may lag what RocksDB and the changelog hold
    else:
        assert worker.stop() == 0
    databases = list(Path(worker.data_dir).rglob("CURRENT"))  # one per RocksDB database
    assert databases, f"no RocksDB database under {worker.data_dir}"

    restarted = stack.start_worker(name="rocks", store="rocksdb")
    restarted.wait_ready()
    send(stack, range(3, 8))  # orders 3 and 4 sent again: their points must not count twice
    served(stack, version=10)  # five more events applied on top of the five from disk
    time.sleep(1.0)  # anything applied late would show now
    profile = served(stack, version=10)
    assert profile["points"] == "80"
    assert profile["orders"] == "8"
    assert profile["version"] == "10"
    assert profile["points_today"] == "80"  # the daily loyalty window came back from disk too
