"""``touchstream dlq replay``: re-submit dead-lettered records to touchpoints.

After a producer fix or a contract change, the original bytes go back to the inbound topic.
The consumer group remembers what was replayed, so running it twice does not submit a record
twice; a record that is still bad simply lands in the DLQ again, with its reason.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from touchstream.config.settings import bootstrap_servers, load_settings
from touchstream.schemas.dlq import original_bytes
from touchstream.streams import topics

QUIET_S = 2.0


def run_replay(args: argparse.Namespace) -> int:
    settings = load_settings(env="development") if args.broker else load_settings()
    bootstrap = bootstrap_servers(args.broker) if args.broker else settings.bootstrap_servers()
    reasons = set(args.reason or ())
    replayed, skipped = asyncio.run(
        replay(
            bootstrap,
            settings.topic(topics.DLQ),
            settings.topic(topics.TOUCHPOINTS),
            f"{settings.app_id}-dlq-replay-{'-'.join(sorted(reasons)) or 'all'}",
            reasons,
            args.max,
        )
    )
    print(
        f"replayed {replayed} DLQ records to {settings.topic(topics.TOUCHPOINTS)}"
        f" ({skipped} left: other reasons)"
    )
    return 0


async def replay(
    bootstrap: str,
    dlq_topic: str,
    target: str,
    group: str,
    reasons: set[str],
    limit: int | None,
) -> tuple[int, int]:
    consumer = AIOKafkaConsumer(
        dlq_topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=4 * 1024 * 1024
    )
    await consumer.start()
    await producer.start()
    replayed = skipped = 0
    try:
        # replay what the DLQ holds now: records that fail again land behind this mark
        assigned = consumer.assignment()
        end = await consumer.end_offsets(list(assigned)) if assigned else {}
        pending = {tp for tp in assigned if await consumer.position(tp) < end[tp]}
        quiet_since = time.monotonic()
        while pending and time.monotonic() - quiet_since < QUIET_S:
            if limit is not None and replayed >= limit:
                break
            batches = await consumer.getmany(*pending, timeout_ms=300, max_records=1000)
            if not batches:
                continue
            quiet_since = time.monotonic()
            handled: dict[TopicPartition, int] = {}
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= end[tp] or (limit is not None and replayed >= limit):
                        break
                    handled[tp] = record.offset + 1
                    entry = orjson.loads(record.value or b"{}")
                    if reasons and entry.get("reason") not in reasons:
                        skipped += 1
                        continue
                    key, value = original_bytes(entry)
                    await producer.send(target, value, key=key)
                    replayed += 1
            await producer.flush()
            if handled:  # only after the records are safely in the target topic
                await consumer.commit(handled)
            pending = {
                tp for tp in pending if handled.get(tp, await consumer.position(tp)) < end[tp]
            }
    finally:
        await producer.stop()
        await consumer.stop()
    return replayed, skipped
