"""A rebalance commits what was handled before the partitions move (streams.transport).

faust-streaming forgets the acknowledged offsets of revoked partitions before it commits
(faust-streaming#502): without the commit at revocation, every rebalance made the next owners
read again all that was handled since the last periodic commit.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from touchstream.runtime.kafka_io import produce
from touchstream.runtime.stack import Stack
from touchstream.simulator.factory import event

pytestmark = pytest.mark.integration

EVENTS = 40


async def committed_and_ends(bootstrap: str, group: str, topic: str) -> tuple[dict, dict]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            cluster = await consumer._client.fetch_all_metadata()
            tps = [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic))]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
        await admin.close()
    return (
        {tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == topic},
        {tp.partition: offset for tp, offset in ends.items() if offset},
    )


def test_a_worker_joining_gets_partitions_whose_handled_records_are_committed(
    stack: Stack,
) -> None:
    # periodic commits ten minutes apart: only the commit at the revocation can store them
    first = stack.start_worker(name="w1", commit_interval_s="600")
    first.wait_ready()
    source = stack.settings["topic_prefix"] + "touchpoints"
    views = [
        event("page_view", {"customer_id": f"CRM-{n}"}, {"url": f"/p/{n}"}) for n in range(EVENTS)
    ]
    produce(stack.broker.bootstrap, source, [(f"CRM-{n}".encode(), e) for n, e in enumerate(views)])
    deadline = time.monotonic() + 60
    while first.metrics().get("touchstream_events_applied_total", 0) < EVENTS:
        assert time.monotonic() < deadline, "the first worker did not apply the events"
        time.sleep(0.2)

    second = stack.start_worker(name="w2", commit_interval_s="600")
    second.wait_ready()  # the group rebalanced: the first worker gave up its partitions

    committed, ends = asyncio.run(
        committed_and_ends(stack.broker.bootstrap, stack.settings["app_id"], source)
    )
    assert sum(ends.values()) == EVENTS
    # every partition the second worker may take is read from where the first one stopped
    assert {p: committed.get(p) for p in ends} == ends
