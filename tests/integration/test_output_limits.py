"""Output against Apache Kafka's size limits: a record over the smallest of the producer's, the
broker's and the topic's limit is dead-lettered when it is added, never holding up its
partition; a limit lowered while running is read again; access exports arrive in parts."""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.integration.test_outbox import App, create
from touchstream import metrics
from touchstream.config.settings import Settings
from touchstream.domain.identity import home_of
from touchstream.domain.privacy import reassemble
from touchstream.runtime.kafka_io import produce_inputs, read_topic
from touchstream.runtime.stack import Broker, Stack, WorkerProcess
from touchstream.simulator.factory import event, purchase
from touchstream.streams.outbox import Outbox
from touchstream.streams.size_limits import SizeLimits, batch_size, largest_value
from touchstream.streams.topic_admin import read_size_limits

pytestmark = pytest.mark.integration

LIMIT = 2048
PAGE = {"url": "https://shop.example/p/1"}


def refused(error: str) -> float:
    sample: Any = metrics.OUTPUT_REFUSED.labels("profiles.updates", error)
    return float(sample._value.get())


async def set_limit(bootstrap: str, topic: str, limit: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        resource = ConfigResource(
            ConfigResourceType.TOPIC, topic, {"max.message.bytes": str(limit)}
        )
        await admin.alter_configs([resource])
    finally:
        await admin.close()


def test_the_limits_are_read_from_the_broker_and_the_largest_value_they_allow_is_accepted(
    broker: Broker,
) -> None:
    # the computed record batch size is the broker's: the largest value allowed lands, one
    # byte more is dead-lettered before it is sent
    out, dlq = f"l{uuid.uuid4().hex[:8]}.profiles.updates", "l.touchpoints.dlq"
    key = b"customer-1"
    largest = largest_value(LIMIT, key)

    async def main() -> SizeLimits:
        await create(broker.bootstrap, (out, {"max.message.bytes": str(LIMIT)}), (dlq, {}))
        limits = SizeLimits(producer=1_000_000)
        limits.update(await read_size_limits(Settings(broker=broker.bootstrap), [out, dlq]))
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            outbox = Outbox(App(producer), dlq, "l.", limits)
            outbox.add(out, key, b"a" * largest)
            outbox.add(out, key, b"b" * (largest + 1))
            await asyncio.wait_for(outbox.flush(delivered=True), 60)
        finally:
            await producer.stop()
        return limits

    limits = asyncio.run(main())

    assert limits.topics[out] == LIMIT
    assert limits.broker is not None and limits.broker >= LIMIT  # Kafka's default
    assert limits.limit(out) == LIMIT
    (landed,) = read_topic(broker.bootstrap, out, expect=1)
    assert landed.value == b"a" * largest
    (entry,) = [r.json() for r in read_topic(broker.bootstrap, dlq, expect=1)]
    assert entry["output_topic"] == out and entry["value_size"] == largest + 1


def test_a_record_over_the_limit_is_dead_lettered_when_added_and_its_partition_moves_on(
    broker: Broker,
) -> None:
    prefix = f"a{uuid.uuid4().hex[:8]}."
    out, dlq = prefix + "profiles.updates", prefix + "touchpoints.dlq"
    key = b"customer-1"  # one key: one partition, the huge record in the middle of it
    small = [(key, orjson.dumps({"version": v})) for v in range(6)]
    huge = (key, b"x" * (LIMIT * 2))
    at_add, at_send = refused("SizeLimit"), refused("MessageSizeTooLargeError")

    async def main() -> str | None:
        await create(broker.bootstrap, (out, {"max.message.bytes": str(LIMIT)}), (dlq, {}))
        limits = SizeLimits(producer=1_000_000)
        limits.update(await read_size_limits(Settings(broker=broker.bootstrap), [out, dlq]))
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            outbox = Outbox(App(producer), dlq, prefix, limits)
            for k, v in [*small[:3], huge, *small[3:]]:
                outbox.add(out, k, v)
            await asyncio.wait_for(outbox.flush(delivered=True), 60)
            await asyncio.wait_for(outbox.settled(), 60)
            return outbox.health
        finally:
            await producer.stop()

    health = asyncio.run(main())

    assert health is None  # not blocked: the worker would be ready
    landed = read_topic(broker.bootstrap, out, expect=len(small))
    assert [(r.key, r.value) for r in landed] == small  # the rest of the partition, in order
    (entry,) = [r.json() for r in read_topic(broker.bootstrap, dlq, expect=1)]
    assert entry["reason"] == "output_refused"
    assert entry["output_topic"] == out
    assert entry["limit_bytes"] == LIMIT
    assert entry["record_batch_bytes"] == batch_size(*huge)
    assert entry["value_size"] == len(huge[1])
    assert refused("SizeLimit") == at_add + 1
    assert refused("MessageSizeTooLargeError") == at_send  # never sent to the broker


def test_a_limit_lowered_while_running_is_refused_at_send_then_read_again(
    broker: Broker,
) -> None:
    prefix = f"b{uuid.uuid4().hex[:8]}."
    out, dlq = prefix + "profiles.updates", prefix + "touchpoints.dlq"
    key = b"customer-2"
    huge = b"y" * (LIMIT * 2)
    at_add, at_send = refused("SizeLimit"), refused("MessageSizeTooLargeError")

    async def main() -> tuple[int | None, int | None]:
        await create(broker.bootstrap, (out, {}), (dlq, {}))
        settings = Settings(broker=broker.bootstrap)
        limits = SizeLimits(1_000_000, lambda names: read_size_limits(settings, names), [out])
        await limits.refresh()
        before = limits.limit(out)
        await set_limit(broker.bootstrap, out, LIMIT)  # an operator lowers it meanwhile
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            outbox = Outbox(App(producer), dlq, prefix, limits)
            outbox.add(out, key, b'{"n":1}')
            outbox.add(out, key, huge)  # the broker refuses it: the limits are read again
            outbox.add(out, key, b'{"n":2}')
            await asyncio.wait_for(outbox.flush(delivered=True), 60)
            deadline = time.monotonic() + 30
            while limits.limit(out) != LIMIT and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            outbox.add(out, key, huge)  # now refused when added
            outbox.add(out, key, b'{"n":3}')
            await asyncio.wait_for(outbox.flush(delivered=True), 60)
            assert outbox.health is None
        finally:
            await producer.stop()
        return before, limits.limit(out)

    before, after = asyncio.run(main())

    assert before is not None and before > LIMIT
    assert after == LIMIT
    landed = read_topic(broker.bootstrap, out, expect=3)
    assert [r.json()["n"] for r in landed] == [1, 2, 3]
    letters = [r.json() for r in read_topic(broker.bootstrap, dlq, expect=2)]
    assert [e["reason"] for e in letters] == ["output_refused"] * 2
    assert "MessageSizeTooLargeError" in letters[0]["message"]
    assert letters[1]["limit_bytes"] == LIMIT
    assert refused("MessageSizeTooLargeError") == at_send + 1
    assert refused("SizeLimit") == at_add + 1


# -- a worker ------------------------------------------------------------------------------


def limit_gauge(worker: WorkerProcess, topic: str) -> float | None:
    _, body = worker.get("/metrics")
    pattern = rf'^touchstream_output_size_limit_bytes{{topic="{re.escape(topic)}"}} (\S+)$'
    found = re.search(pattern, body.decode(), re.MULTILINE)
    return float(found.group(1)) if found else None


def test_a_worker_dead_letters_an_oversized_profile_update_and_stays_ready(
    stack: Stack,
) -> None:
    prefix = stack.settings["topic_prefix"]
    source, updates = prefix + "touchpoints", prefix + "profiles.updates"
    worker = stack.start_worker(output_limits_refresh_s="1")
    worker.wait_ready()
    card = {"loyalty_id": "LC-7070"}
    produce_inputs(
        stack.broker.bootstrap, source, [(b"k", event("page_view", card, PAGE, event_id="e-1"))]
    )
    (first,) = read_topic(stack.broker.bootstrap, updates, expect=1)
    # a limit the same profile fits with a short event id and not with a 128-character one
    limit = batch_size(first.key, first.value + b"x" * 40)
    asyncio.run(set_limit(stack.broker.bootstrap, updates, limit))
    deadline = time.monotonic() + 30
    while limit_gauge(worker, "profiles.updates") != limit and time.monotonic() < deadline:
        time.sleep(0.2)
    long_id = "L" * 128
    produce_inputs(
        stack.broker.bootstrap,
        source,
        [
            (b"k", event("page_view", card, PAGE, event_id=long_id)),
            (b"k", event("page_view", card, PAGE, event_id="e-3")),
        ],
    )

    landed = read_topic(stack.broker.bootstrap, updates, expect=2)
    letters = [r.json() for r in read_topic(stack.broker.bootstrap, prefix + "touchpoints.dlq")]

    assert limit_gauge(worker, "profiles.updates") == limit
    # the profile after the oversized one, same customer and partition, is delivered
    assert [r.json()["event_id"] for r in landed] == ["e-1", "e-3"]
    assert landed[1].json()["touchpoints"] == 3
    (entry,) = letters
    assert entry["reason"] == "output_refused" and entry["output_topic"] == updates
    assert entry["limit_bytes"] == limit and entry["record_batch_bytes"] > limit
    assert orjson.loads(base64.b64decode(entry["value_b64"]))["event_id"] == long_id
    status, body = worker.get("/readyz")
    assert status == 200, body
    assert worker.metrics()["touchstream_output_blocked"] == 0


def test_a_large_access_export_arrives_in_parts_that_reassemble(stack: Stack) -> None:
    prefix = stack.settings["topic_prefix"]
    source, exports = prefix + "touchpoints", prefix + "privacy.exports"
    export_limit = 4096

    async def make_topic() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.broker.bootstrap)
        await admin.start()
        try:
            config = {"max.message.bytes": str(export_limit)}
            await admin.create_topics([NewTopic(exports, 4, 1, topic_configs=config)])
        finally:
            await admin.close()

    asyncio.run(make_topic())  # an operator's topic with a small limit, left as it is
    worker = stack.start_worker()
    worker.wait_ready()
    card = {"loyalty_id": "LC-6060"}
    orders = [purchase(card, f"ORDER-{n:04d}-" + "o" * 40, 1_000 + n) for n in range(60)]
    request = event("access_requested", card, {"request_id": "DSR-60"})
    produce_inputs(stack.broker.bootstrap, source, [(b"k", e) for e in [*orders, request]])

    (first, *_) = read_topic(stack.broker.bootstrap, exports, expect=1)
    total = first.json()["parts"]
    records = read_topic(stack.broker.bootstrap, exports, expect=total)
    letters = read_topic(stack.broker.bootstrap, prefix + "touchpoints.dlq", settle_s=2.0)

    assert total > 1
    assert all(batch_size(r.key, r.value) <= export_limit for r in records)
    parts = [r.json() for r in records]
    assert sorted(p["part"] for p in parts) == list(range(1, total + 1))
    export = reassemble(parts)
    assert export["request_id"] == "DSR-60"
    assert export["customer_id"] == home_of("loyalty_id", "LC-6060")
    assert len(export["ledger"]["orders"]) == 60
    assert [e for e in (r.json() for r in letters) if e["reason"] == "output_refused"] == []
