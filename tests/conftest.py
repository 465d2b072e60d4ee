"""Shared fixtures: the embedded broker and Redis (session), a per-test stack of workers."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from touchstream.runtime.embedded import EmbeddedBroker, EmbeddedRedis, start_broker, start_redis
from touchstream.runtime.stack import Stack

_redis_dbs = itertools.cycle(range(1, 16))


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    server = start_broker(log_path=log)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = start_redis(log_path=tmp_path_factory.mktemp("redis") / "redis.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stack(broker: EmbeddedBroker, redis_server: EmbeddedRedis, tmp_path: Path) -> Iterator[Stack]:
    """Workers for one test: own topic prefix, consumer group, Redis DB and data dirs."""
    db = next(_redis_dbs)
    client = redis.Redis.from_url(redis_server.url(db))
    client.flushdb()
    client.close()
    prefix = f"t{uuid.uuid4().hex[:8]}."
    s = Stack(
        workdir=tmp_path,
        broker=broker,
        redis=redis_server,
        redis_db=db,
        owns_servers=False,
        settings={"topic_prefix": prefix, "app_id": f"{prefix}touchstream", "partitions": "4"},
    )
    try:
        yield s
    finally:
        s.stop()
