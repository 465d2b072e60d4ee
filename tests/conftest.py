"""Shared fixtures: Apache Kafka and Redis (session), a per-test stack of workers.

The broker is Apache Kafka (``touchstream.runtime.apache_kafka``, the pinned version), what
users run. ``TOUCHSTREAM_TEST_BROKER=embedded`` runs the suite on the embedded Tansu broker of
``make demo`` instead. A machine without a JDK or Maven fails the run naming what to install:
a Kafka test never skips.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from touchstream.runtime.apache_kafka import KafkaUnavailable, start_kafka
from touchstream.runtime.brokers import Broker
from touchstream.runtime.embedded import EmbeddedRedis, start_broker, start_redis
from touchstream.runtime.stack import Stack

_redis_dbs = itertools.cycle(range(1, 16))


def broker_kind() -> str:
    kind = os.environ.get("TOUCHSTREAM_TEST_BROKER", "kafka")
    if kind not in ("kafka", "embedded"):
        pytest.fail(f"TOUCHSTREAM_TEST_BROKER must be 'kafka' or 'embedded', got {kind!r}")
    return kind


def start_test_kafka(workdir: Path, **kwargs: Any) -> Any:
    try:
        return start_kafka(workdir, **kwargs)
    except KafkaUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    workdir = tmp_path_factory.mktemp("broker")
    server: Broker
    if broker_kind() == "embedded":
        server = start_broker(log_path=workdir / "broker.log")
    else:
        server = start_test_kafka(workdir)
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
def stack(broker: Broker, redis_server: EmbeddedRedis, tmp_path: Path) -> Iterator[Stack]:
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
