"""Records the batch drain drops are read again: ``streams.transport.rewind_consumer`` seeks a
partition back to them on a real broker, and leaves alone a partition not past them or not held.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from touchstream.runtime.brokers import Broker
from touchstream.runtime.kafka_io import ensure_topics, produce
from touchstream.streams.transport import rewind_consumer

pytestmark = pytest.mark.integration


async def _next_offsets(consumer: AIOKafkaConsumer, tp: TopicPartition, count: int) -> list[int]:
    offsets: list[int] = []
    async with asyncio.timeout(30):
        while len(offsets) < count:
            batches = await consumer.getmany(tp, timeout_ms=500, max_records=count - len(offsets))
            offsets += [record.offset for record in batches.get(tp, [])]
    return offsets


def test_a_partition_is_sought_back_only_to_records_it_is_past(broker: Broker) -> None:
    name = f"rewind-{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topics(broker.bootstrap, [name], 2))
    produce(broker.bootstrap, name, [(b"k", {"n": n}) for n in range(20)], partition=0)
    held, other = TopicPartition(name, 0), TopicPartition(name, 1)

    async def main() -> tuple[list[int], list[int], list[int]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign([held])
            consumer.seek(held, 0)
            first = await _next_offsets(consumer, held, 12)  # the fetch the drain dropped 5.. of
            assert rewind_consumer(consumer, {held: 5, other: 0}) == 1  # ``other`` not held
            again = await _next_offsets(consumer, held, 3)
            # a seek of Faust's moved it back to 2 already: not past 9, left there
            consumer.seek(held, 2)
            assert rewind_consumer(consumer, {held: 9}) == 0
            after_seek = await _next_offsets(consumer, held, 1)
            return first, again, after_seek
        finally:
            await consumer.stop()

    first, again, after_seek = asyncio.run(main())
    assert first == list(range(12))
    assert again == [5, 6, 7]  # read again from the first dropped record, in order
    assert after_seek == [2]
