"""Small synchronous Kafka helpers for tools and tests: produce records, read a topic."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from touchstream.config.settings import Settings
from touchstream.domain.privileged import requires_privilege
from touchstream.streams.kafka_client import security_kwargs
from touchstream.streams.topics import privileged_input


@dataclass(frozen=True)
class Out:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None

    def json(self) -> Any:
        return orjson.loads(self.value or b"null")


async def ensure_topics(
    bootstrap: str, names: Iterable[str], partitions: int, timeout_s: float = 30.0
) -> None:
    """Create the topics that do not exist yet, and return once the broker's metadata lists
    every one of them. Raises ``TimeoutError`` after ``timeout_s``.

    Why wait for the metadata: Apache Kafka creates a topic asynchronously. A worker whose
    consumer group is assigned before a topic Faust has just created shows in the metadata gets
    none of its partitions, and stays so until the next metadata refresh (Faust's
    ``consumer_metadata_max_age_ms``, 5 minutes). Tansu creates topics synchronously."""
    names = list(names)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="touchstream-setup")
    async with asyncio.timeout(timeout_s):
        await admin.start()
        try:
            for name in names:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics([NewTopic(name, partitions, 1)])
            while True:
                listed = await admin.describe_topics(names)
                if all(t["error_code"] == 0 and t["partitions"] for t in listed):
                    return
                await asyncio.sleep(0.1)
        finally:
            await admin.close()


def _encode(value: Any) -> bytes:
    return value if isinstance(value, bytes) else orjson.dumps(value)


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, Any]],
    partition: int | None = None,
    settings: Settings | None = None,
) -> list[tuple[int, int]]:
    """Send (key, value) pairs in order; values that are not bytes are JSON-encoded.

    Returns the (partition, offset) of each record. ``settings``: log in with their
    TOUCHSTREAM_KAFKA_* security settings (None: plaintext).
    """

    async def run() -> list[tuple[int, int]]:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            max_request_size=4 * 1024 * 1024,
            enable_idempotence=False,
            **security_kwargs(settings),
        )
        await producer.start()
        try:
            futures = [
                await producer.send(topic, _encode(value), key=key, partition=partition)
                for key, value in records
            ]
            metas = [await f for f in futures]
            return [(m.partition, m.offset) for m in metas]
        finally:
            await producer.stop()

    return asyncio.run(run())


def produce_inputs(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, Any]],
    settings: Settings | None = None,
) -> list[tuple[int, int]]:
    """``produce`` to a worker's inputs: each record to ``topic`` (its ``touchpoints``) or, if
    it is a privileged command (domain.privileged), to its privileged input
    (``topics.privileged_input``: ``touchpoints.privileged``, prefix kept), in order, as
    a deployment's producers and its data-request and loyalty services do."""
    out: list[tuple[int, int]] = []
    run: list[tuple[bytes | None, Any]] = []
    run_topic = topic

    def flush() -> None:
        if run:
            out.extend(produce(bootstrap, run_topic, list(run), settings=settings))
            run.clear()

    for key, value in records:
        decoded = orjson.loads(value) if isinstance(value, bytes | bytearray) else value
        privileged = isinstance(decoded, dict) and requires_privilege(decoded)
        target = privileged_input(topic) if privileged else topic
        if target != run_topic:
            flush()
            run_topic = target
        run.append((key, value))
    flush()
    return out


def read_topic(
    bootstrap: str,
    topic: str,
    expect: int | None = None,
    timeout_s: float = 30.0,
    settle_s: float = 1.0,
    settings: Settings | None = None,
    until: Callable[[list[Out]], bool] | None = None,
) -> list[Out]:
    """All records of ``topic`` from the beginning.

    Stops once ``expect`` records arrived, or ``until`` holds of the records read (then waits
    ``settle_s`` more to catch extras), or, without either, when no record arrived for
    ``settle_s``; never after ``timeout_s``.
    """

    async def run() -> list[Out]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
            **security_kwargs(settings),
        )
        await consumer.start()
        out: list[Out] = []
        try:
            deadline = time.monotonic() + timeout_s
            partitions: set[int] | None = None
            while partitions is None and time.monotonic() < deadline:
                partitions = consumer.partitions_for_topic(topic)
                if not partitions:
                    partitions = None
                    await consumer._client.force_metadata_update()
                    await asyncio.sleep(0.2)
            if not partitions:
                return out
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            quiet_since = time.monotonic()
            reached_at: float | None = None
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
                got = 0
                for records in batches.values():
                    for r in records:
                        out.append(Out(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value))
                        got += 1
                now = time.monotonic()
                if got:
                    quiet_since = now
                if expect is not None or until is not None:
                    done = len(out) >= expect if expect is not None else bool(until and until(out))
                    if done and reached_at is None:
                        reached_at = now
                    if reached_at is not None and now - reached_at >= settle_s:
                        break
                elif now - quiet_since >= settle_s:
                    break
            return out
        finally:
            await consumer.stop()

    return asyncio.run(run())


def events_named(update: dict[str, Any]) -> list[str]:
    """The event ids one ``profiles.updates`` record says it is the profile after, oldest
    first: an update covers every event of its customer in a fetch (README, "Topics")."""
    named = update.get("event_ids")
    if named is None:  # an erasure notice names none; an update before coalescing, one
        return [update["event_id"]] if update.get("event_id") else []
    return list(named)


def covered_events(updates: Iterable[Out]) -> list[str]:
    """The event ids ``profiles.updates`` records say they are the profile after, in order."""
    return [eid for update in updates for eid in events_named(update.json())]


def read_updates(
    bootstrap: str,
    topic: str,
    covering: Iterable[str],
    timeout_s: float = 30.0,
    settings: Settings | None = None,
) -> list[Out]:
    """``profiles.updates`` from the beginning, once they cover every event id of ``covering``."""
    wanted = set(covering)
    return read_topic(
        bootstrap,
        topic,
        timeout_s=timeout_s,
        settings=settings,
        until=lambda out: wanted <= set(covered_events(out)),
    )
