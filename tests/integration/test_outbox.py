"""The outbox against Apache Kafka's real limits: a refusal is handled, never remembered."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.conftest import start_test_kafka
from touchstream import metrics
from touchstream.runtime.kafka_io import read_topic
from touchstream.runtime.stack import Broker
from touchstream.streams.outbox import Outbox

LIMIT = 2048  # the topic's max.message.bytes: one record batch at most this large


class ProducerOwner:
    """What the outbox needs of Faust's producer: the aiokafka producer it wraps."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    def _ensure_producer(self) -> AIOKafkaProducer:
        return self._producer


class App:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = ProducerOwner(producer)


async def create(bootstrap: str, *topics: tuple[str, dict[str, str]]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, 1, 1, topic_configs=configs) for name, configs in topics]
        )
    finally:
        await admin.close()


def run(broker: Broker, records: list[tuple[bytes, bytes]]) -> tuple[str, str]:
    prefix = f"o{uuid.uuid4().hex[:8]}."
    out, dlq = prefix + "profiles.updates", prefix + "touchpoints.dlq"

    async def main() -> None:
        await create(broker.bootstrap, (out, {"max.message.bytes": str(LIMIT)}), (dlq, {}))
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            outbox = Outbox(App(producer), dlq, prefix)
            for key, value in records:
                outbox.add(out, key, value)
            await asyncio.wait_for(outbox.flush(delivered=True), 60)
            await asyncio.wait_for(outbox.settled(), 60)
            assert outbox.health is None
        finally:
            await producer.stop()

    asyncio.run(main())
    return out, dlq


def refused(topic: str) -> float:
    sample: Any = metrics.OUTPUT_REFUSED.labels("profiles.updates", "MessageSizeTooLargeError")
    return float(sample._value.get()) if topic else 0.0


def test_a_record_over_the_topics_limit_is_dead_lettered_and_its_batch_still_lands(
    broker: Broker,
) -> None:
    before = refused("profiles.updates")
    small = [(f"k{i}".encode(), f'{{"n":{i}}}'.encode()) for i in range(6)]
    huge = (b"k-huge", b"x" * (LIMIT * 2))
    records = [*small[:3], huge, *small[3:]]

    out, dlq = run(broker, records)

    landed = read_topic(broker.bootstrap, out, expect=len(small))
    # the other records of the refused batch landed, in their order
    assert [(r.key, r.value) for r in landed] == small
    (entry,) = [r.json() for r in read_topic(broker.bootstrap, dlq, expect=1)]
    assert entry["reason"] == "output_refused"
    assert entry["output_topic"] == out
    assert "MessageSizeTooLargeError" in entry["message"]
    assert entry["value_size"] == len(huge[1])
    assert entry["value_sha256"] == hashlib.sha256(huge[1]).hexdigest()
    assert entry["key_b64"] is not None
    assert refused("profiles.updates") == before + 1


def test_a_refused_batch_of_many_records_is_resent_without_reordering_a_key(
    broker: Broker,
) -> None:
    # many versions of one key, one of them too large: the log must end on the newest
    records = [(b"customer-1", orjson.dumps({"version": v})) for v in range(40)]
    records[20] = (b"customer-1", b"y" * (LIMIT * 2))

    out, _ = run(broker, records)

    landed = read_topic(broker.bootstrap, out, expect=39)
    versions = [r.json()["version"] for r in landed]
    assert versions[-1] == 39
    assert sorted(set(versions)) == [v for v in range(40) if v != 20]


def retries() -> float:
    return sum(
        s.value
        for family in metrics.OUTPUT_RETRIES.collect()
        for s in family.samples
        if s.name.endswith("_total")
    )


def test_output_to_a_missing_topic_waits_not_ready_until_it_exists_then_lands(
    tmp_path: Path,
) -> None:
    # a broker that creates no topic by itself (as production brokers are set up): an output
    # topic deleted or not yet created by an operator holds output back, it does not crash
    broker = start_test_kafka(tmp_path, properties={"auto.create.topics.enable": "false"})
    out = "p.profiles.updates"
    records = [(f"k{i}".encode(), orjson.dumps({"n": i})) for i in range(5)]
    before = retries()

    async def main() -> list[str | None]:
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap, acks="all", request_timeout_ms=2000
        )
        await producer.start()
        health: list[str | None] = []
        try:
            outbox = Outbox(App(producer), "p.touchpoints.dlq", "p.")
            for key, value in records:
                outbox.add(out, key, value)
            flush = asyncio.ensure_future(outbox.flush(delivered=True))
            while retries() < before + 2:
                await asyncio.sleep(0.2)
            health.append(outbox.health)
            assert not flush.done(), "delivered to a topic that does not exist"
            await create(broker.bootstrap, (out, {}))
            await asyncio.wait_for(flush, 60)
            health.append(outbox.health)
        finally:
            await producer.stop()
        return health

    try:
        during, after = asyncio.run(main())
        landed = read_topic(broker.bootstrap, out, expect=len(records))
    finally:
        broker.stop()

    assert during is not None and out in during
    assert after is None
    assert [(r.key, r.value) for r in landed] == records
