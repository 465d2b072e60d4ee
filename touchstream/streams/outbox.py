"""The records a batch of input produces, sent as one Kafka record batch per partition.

Faust's ``topic.send`` costs an awaited producer call per record (buffer, future, partitioner,
accumulator); at several output records per event that alone caps a worker at a few thousand
events per second. The outbox collects a batch's records and hands aiokafka one
``BatchBuilder`` per topic partition (``AIOKafkaProducer.send_batch``). Keys are placed by
Kafka's murmur2 partitioner, as every other producer of these topics places them.

At-least-once is kept by Faust's commit: it flushes the producer before it commits offsets,
and the consumer acknowledges a batch's input only after the outbox took its records. A batch
the broker refused is remembered and stops the next commit (``raise_if_failed``), so offsets
never move past output that was lost.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from touchstream.errors import OutputLost
from touchstream.streams.timer_index import partition_for

Record = tuple[bytes | None, bytes | None]


class Outbox:
    def __init__(self, app: Any) -> None:
        self._app = app
        self._records: dict[tuple[str, int | None], list[Record]] = defaultdict(list)
        self._partitions: dict[str, int] = {}
        self._failure: BaseException | None = None
        self._watchers: dict[str, Callable[[Any, int], None]] = {}

    def add(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None:
        self._records[(topic, partition)].append((key, value))

    def on_sent(self, topic: str, callback: Callable[[Any, int], None]) -> None:
        """Call ``callback(tp, offset)`` with the last offset of each batch the broker took."""
        self._watchers[topic] = callback

    async def flush(self, delivered: bool = False) -> None:
        """Hand every collected record to the producer; returns once they are queued, or with
        ``delivered`` once the broker acknowledged them (raising ``OutputLost`` if it refused)."""
        self.raise_if_failed()
        if not self._records:
            return
        producer = self._app.producer._ensure_producer()
        placed: dict[tuple[str, int], list[Record]] = defaultdict(list)
        for (topic, partition), records in self._records.items():
            if partition is not None:
                placed[(topic, partition)].extend(records)
                continue
            count = await self._partition_count(producer, topic)
            for key, value in records:
                slot = partition_for(key, count) if key is not None else 0
                placed[(topic, slot)].append((key, value))
        self._records.clear()
        futures = []
        for (topic, partition), records in placed.items():
            batch = producer.create_batch()
            count = 0
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await self._send(producer, batch, topic, partition, count))
                    batch, count = producer.create_batch(), 0
                    batch.append(key=key, value=value, timestamp=None)
                count += 1
            futures.append(await self._send(producer, batch, topic, partition, count))
        if delivered:
            await asyncio.wait(futures)
            self.raise_if_failed()

    async def _send(
        self, producer: Any, batch: Any, topic: str, partition: int, count: int
    ) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await producer.send_batch(batch, topic, partition=partition)
        future.add_done_callback(self._delivered)
        watcher = self._watchers.get(topic)
        if watcher is not None:

            def sent(done: asyncio.Future[Any]) -> None:
                if not done.cancelled() and done.exception() is None:
                    metadata = done.result()  # its offset is the batch's first record's
                    watcher(metadata.topic_partition, metadata.offset + count - 1)

            future.add_done_callback(sent)
        return future

    def _delivered(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self._failure = self._failure or OutputLost("a batch of output records was cancelled")
        elif future.exception() is not None:
            self._failure = self._failure or future.exception()

    def raise_if_failed(self) -> None:
        if self._failure is not None:
            failure = self._failure
            raise OutputLost(f"the broker refused output records: {failure!r}") from failure

    async def _partition_count(self, producer: Any, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            await producer.client._wait_on_metadata(topic)
            count = len(producer.client.cluster.partitions_for_topic(topic))
            self._partitions[topic] = count
        return count
