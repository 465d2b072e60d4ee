"""The records a batch of input produces, sent as one Kafka record batch per partition.

Faust's ``topic.send`` costs an awaited producer call per record (buffer, future, partitioner,
accumulator); at several output records per event that alone caps a worker at a few thousand
events per second. The outbox collects a batch's records and hands aiokafka one
``BatchBuilder`` per topic partition (``AIOKafkaProducer.send_batch``). Keys are placed by
Kafka's murmur2 partitioner, as every other producer of these topics places them.

At-least-once is kept by Faust's commit: it waits until the outbox holds nothing the broker
has not acknowledged (``settled``) before it commits offsets, and the consumer acknowledges a
batch's input only after the outbox took its records.

Every record is checked when it is added against the smallest of the producer's request
limit, the broker's ``message.max.bytes`` and its topic's ``max.message.bytes``
(``streams.size_limits``, the size of the record alone in a record batch): one over it is
never sent, it becomes an ``output_refused`` dead-letter record at once, counted in
``touchstream_output_refused_total`` with error ``SizeLimit``, and nothing else waits for it.
Batches are cut to the topic's limit too, so records that each fit never make a batch the
broker refuses.

A refusal is never remembered for good. Each topic partition is a ``Lane`` of batches in send
order; when one fails, the lane stops sending, waits for what is in flight, and sends again
from the failed batch on, the batches after it included, so the partition's log ends in the
original order (a table changelog compacted to an older value would restore a stale state):
- a record the broker refuses as such (over its size limit, corrupt, bad timestamp) is split
  out of its batch and, alone, is replaced by a bounded dead-letter record on the DLQ
  (``output_refused``, with the destination topic, its size, digest and prefix), counted in
  ``touchstream_output_refused_total``: the partition moves on, nothing else is lost; a
  refusal as too large (a limit lowered while the worker runs) also has the limits read
  again from the broker at once;
- anything else (a broker away, a leader moving, a request timing out, a revoked ACL) is
  retried with backoff for as long as it takes; meanwhile ``health`` says why, the worker is
  not ready and ``touchstream_output_retries_total`` counts the attempts.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from touchstream import metrics
from touchstream.schemas.dlq import dlq_record
from touchstream.streams.isolation import Undo
from touchstream.streams.size_limits import (
    MAX_RECORD_OVERHEAD,
    RECORD_BATCH_OVERHEAD,
    SizeLimits,
)
from touchstream.streams.timer_index import partition_for

log = logging.getLogger(__name__)
Record = tuple[bytes | None, bytes | None]
# errors about the records of a batch, not about the broker or the client: retrying the same
# bytes can never succeed
RECORD_ERRORS = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    CorruptRecordException,
    InvalidTimestampError,
)
TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)
SIZE_LIMIT = "SizeLimit"  # the error label of a record refused when it was added
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0


class Batch:
    """Records of one partition sent together; ``acked`` resolves once the broker has them."""

    __slots__ = ("acked", "builder", "error", "ok", "records", "sent")

    def __init__(self, records: list[Record]) -> None:
        self.records = records
        # the producer's batch ``_chunks`` filled with these records, for the first send only
        # (a batch is built once; a send again builds another)
        self.builder: Any = None
        self.sent: asyncio.Future[Any] | None = None
        self.ok = False  # acknowledged since it was last sent
        self.error: BaseException | None = None
        self.acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class Lane:
    """One topic partition's batches the broker has not acknowledged yet, in send order."""

    def __init__(self, outbox: Outbox, topic: str, partition: int) -> None:
        self.outbox = outbox
        self.topic = topic
        self.partition = partition
        self.queue: deque[Batch] = deque()
        self.repair: asyncio.Task[None] | None = None
        self.reason: str | None = None

    async def submit(self, producer: Any, records: list[Record]) -> list[Batch]:
        batches = []
        for chunk, builder in _chunks(producer, records, self.outbox.limits.limit(self.topic)):
            batch = Batch(chunk)
            self.queue.append(batch)
            batches.append(batch)
            if self.repair is None:  # (else queued behind the repair: built when it is sent)
                batch.builder = builder
                await self._send(producer, batch)
        return batches

    async def _send(self, producer: Any, batch: Batch) -> None:
        builder, batch.builder = batch.builder, None
        if builder is None:
            builder = producer.create_batch()
            for key, value in batch.records:
                builder.append(key=key, value=value, timestamp=None)
        batch.ok, batch.error = False, None
        future: asyncio.Future[Any]
        try:
            future = await producer.send_batch(builder, self.topic, partition=self.partition)
        except KafkaError as exc:  # no metadata for the topic yet, the producer closing...
            future = asyncio.get_running_loop().create_future()
            future.set_exception(exc)
        batch.sent = future
        future.add_done_callback(lambda done: self._done(producer, batch, done))

    def _done(self, producer: Any, batch: Batch, done: asyncio.Future[Any]) -> None:
        if batch.sent is not done:
            return  # an earlier send of a batch sent again since
        if done.cancelled():
            batch.error = asyncio.CancelledError()
        elif done.exception() is not None:
            batch.error = done.exception()
        else:
            batch.ok = True
            if not batch.acked.done():
                batch.acked.set_result(None)
            watcher = self.outbox.watchers.get(self.topic)
            if watcher is not None:  # the result's offset is the batch's first record's
                watcher(
                    done.result().topic_partition, done.result().offset + len(batch.records) - 1
                )
            self._prune()
            return
        if self.repair is None:
            self.repair = asyncio.ensure_future(self._repair(producer))
            self.outbox.watch(self.repair)

    def _prune(self) -> None:
        if self.repair is not None:
            return  # the repair decides what is done
        while self.queue and self.queue[0].ok:
            self.queue.popleft()

    async def _repair(self, producer: Any) -> None:
        backoff = BACKOFF_FIRST_S
        try:
            while True:
                flying = [b.sent for b in self.queue if b.sent is not None and not b.sent.done()]
                if flying:
                    await asyncio.wait(flying)
                first = next((i for i, b in enumerate(self.queue) if not b.ok), None)
                if first is None:
                    break
                failed = self.queue[first]
                if isinstance(failed.error, RECORD_ERRORS):
                    # split, or the record dead-lettered: what follows it landed in order
                    # unless it failed too, which the next round finds
                    await self._refused(failed, first)
                    continue
                if failed.error is not None:
                    self.reason = f"{type(failed.error).__name__} on {self.topic}"
                    self.outbox.retrying()
                    metrics.OUTPUT_RETRIES.labels(type(failed.error).__name__).inc()
                    log.warning(
                        "output to %s[%d] refused (%r): sending again in %.1f s",
                        self.topic,
                        self.partition,
                        failed.error,
                        backoff,
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                # from the first batch not acknowledged on, in order, those acknowledged
                # after it included: the partition ends as the batches were meant to land
                for batch in list(self.queue)[first:]:
                    await self._send(producer, batch)
        finally:
            self.repair = None
            self.reason = None
            self.outbox.retrying()
        self._prune()

    async def _refused(self, failed: Batch, index: int) -> None:
        if len(failed.records) > 1:
            # which record is it? each alone; the batch counts as acknowledged once all are
            singles = [Batch([record]) for record in failed.records]
            self.queue.remove(failed)
            for offset, single in enumerate(singles):
                self.queue.insert(index + offset, single)
            self.outbox.watch(_all_acked(singles, failed.acked))
            return
        key, value = failed.records[0]
        error = failed.error
        assert error is not None
        if isinstance(error, TOO_LARGE):
            self.outbox.limits.refresh_soon()  # lowered while running? the next adds know
        metrics.OUTPUT_REFUSED.labels(self.outbox.base_name(self.topic), type(error).__name__).inc()
        log.error(
            "the broker refused a record of %d bytes for %s[%d] (%r): dead-lettered",
            len(value or b"") + len(key or b""),
            self.topic,
            self.partition,
            error,
        )
        self.queue.remove(failed)
        failed.ok = True
        # acknowledged once its dead-letter record is: no commit passes it before that
        letters = await self.outbox.dead_letter(
            self.topic,
            self.partition,
            key,
            value,
            f"the broker refused this output record: {error!r}",
        )
        self.outbox.watch(_all_acked(letters, failed.acked))


async def _all_acked(parts: list[Batch], whole: asyncio.Future[None]) -> None:
    await asyncio.gather(*(p.acked for p in parts))
    if not whole.done():
        whole.set_result(None)


def _chunks(
    producer: Any, records: list[Record], limit: int | None
) -> list[tuple[list[Record], Any]]:
    """The records in runs that each fit one of the producer's batches and, counting each
    record at its largest overhead, the topic's ``limit``; each run with the producer's batch
    it fills, which its first send sends (appending every record twice, once to measure and
    once to send, was 1.3% of the worker's event loop thread in the bench)."""
    chunks: list[tuple[list[Record], Any]] = []
    builder = producer.create_batch()
    current: list[Record] = []
    size = RECORD_BATCH_OVERHEAD
    for key, value in records:
        grows = MAX_RECORD_OVERHEAD + len(key or b"") + len(value or b"")
        over = limit is not None and current and size + grows > limit
        if over or builder.append(key=key, value=value, timestamp=None) is None:
            chunks.append((current, builder))
            builder, current, size = producer.create_batch(), [], RECORD_BATCH_OVERHEAD
            builder.append(key=key, value=value, timestamp=None)
        current.append((key, value))
        size += grows
    if current:
        chunks.append((current, builder))
    return chunks


_UNKNOWN = -1  # a topic SizeLimits.over has not seen yet (or one with no room): over() decides


class Outbox:
    def __init__(
        self,
        app: Any,
        dlq_topic: str | None = None,
        prefix: str = "",
        limits: SizeLimits | None = None,
    ) -> None:
        self._app = app
        self._records: dict[tuple[str, int | None], list[Record]] = defaultdict(list)
        # records over their topic's limit when added: dead-lettered by the next flush
        self._oversized: list[tuple[str, int | None, Record, str, dict[str, int]]] = []
        self.limits = limits if limits is not None else SizeLimits()
        self._partitions: dict[str, int] = {}
        self._lanes: dict[tuple[str, int], Lane] = {}
        self._dlq_topic = dlq_topic
        self._prefix = prefix
        self.watchers: dict[str, Callable[[Any, int], None]] = {}
        self.health: str | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._unknown: dict[str, str] = {}  # topics the producer has no metadata for, why
        # while a batch of the customer stage runs, how to undo its table writes, Redis writes
        # and timer changes if one of its records raises (streams.isolation); its records
        # are taken back with ``mark``/``take_back``
        self.undo = Undo()

    def add(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None:
        room = self.limits.rooms.get(topic, _UNKNOWN)  # the hot path: a look-up, no call
        if room is None or (
            room is not _UNKNOWN and (len(key) if key else 0) + (len(value) if value else 0) <= room
        ):
            self._records[(topic, partition)].append((key, value))
            return
        over = self.limits.over(topic, key, value)
        if over is not None and topic != self._dlq_topic:
            size, limit = over
            why = (
                f"output record of {size} bytes (as a record batch) over the {limit} bytes"
                f" {topic} takes ({self.limits.describe(topic)}): not sent"
            )
            sizes = {"record_batch_bytes": size, "limit_bytes": limit}
            self._oversized.append((topic, partition, (key, value), why, sizes))
            return
        self._records[(topic, partition)].append((key, value))

    def fits(self, topic: str, key: bytes | None, value: bytes | None) -> bool:
        """Whether ``add`` would queue the record, not set it aside as over the topic's limit
        (``add`` decides with ``limits.over`` too, its first test inlined for the hot path)."""
        return topic == self._dlq_topic or self.limits.over(topic, key, value) is None

    def mark(self) -> tuple[dict[tuple[str, int | None], int], int]:
        """Where the collected records end now, to take back what is added after it."""
        return {slot: len(records) for slot, records in self._records.items()}, len(self._oversized)

    def take_back(self, mark: tuple[dict[tuple[str, int | None], int], int]) -> None:
        """Forget the records added since ``mark`` (a batch that raised: streams.isolation),
        the oversized ones set aside for the DLQ among them."""
        slots, oversized = mark
        for slot, records in self._records.items():
            del records[slots.get(slot, 0) :]
        del self._oversized[oversized:]

    def on_sent(self, topic: str, callback: Callable[[Any, int], None]) -> None:
        """Call ``callback(tp, offset)`` with the last offset of each batch the broker took."""
        self.watchers[topic] = callback

    def watch(self, coroutine: Any) -> None:
        """Run a small task of a lane's, keeping a reference until it ends."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def base_name(self, topic: str) -> str:
        """The topic's name without the deployment's prefix (a bounded metric label)."""
        return topic.removeprefix(self._prefix)

    def retrying(self) -> None:
        """Recompute ``health`` from the lanes: why output is held back, or None."""
        reasons = sorted(
            {lane.reason for lane in self._lanes.values() if lane.reason}
            | set(self._unknown.values())
        )
        self.health = f"output refused, retrying: {', '.join(reasons)}" if reasons else None
        metrics.OUTPUT_BLOCKED.set(1 if reasons else 0)

    async def flush(self, delivered: bool = False) -> None:
        """Hand every collected record to the producer; returns once they are queued, or with
        ``delivered`` once the broker acknowledged them, however many retries that takes."""
        if not (self._records or self._oversized):
            return
        producer = self._app.producer._ensure_producer()
        batches: list[Batch] = []
        oversized, self._oversized = self._oversized, []
        for topic, partition, record, why, sizes in oversized:
            batches += await self._refuse(producer, topic, partition, record, why, sizes)
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
        for (topic, partition), records in placed.items():
            batches += await self._lane(topic, partition).submit(producer, records)
        if delivered:
            await asyncio.gather(*(b.acked for b in batches))

    def _lane(self, topic: str, partition: int) -> Lane:
        lane = self._lanes.get((topic, partition))
        if lane is None:
            lane = self._lanes[(topic, partition)] = Lane(self, topic, partition)
        return lane

    async def settled(self) -> None:
        """Returns once the broker acknowledged everything handed to the producer (Faust's
        commit waits for this, so offsets never move past output still being retried)."""
        while True:
            waiting = [b.acked for lane in self._lanes.values() for b in lane.queue]
            waiting = [w for w in waiting if not w.done()]
            if not waiting:
                return
            await asyncio.gather(*waiting)

    async def _refuse(
        self,
        producer: Any,
        topic: str,
        partition: int | None,
        record: Record,
        why: str,
        sizes: dict[str, int],
    ) -> list[Batch]:
        """A record over its topic's limit when added: dead-lettered, never sent."""
        key, value = record
        if partition is None:
            count = await self._partition_count(producer, topic)
            partition = partition_for(key, count) if key is not None else 0
        metrics.OUTPUT_REFUSED.labels(self.base_name(topic), SIZE_LIMIT).inc()
        log.error("%s[%d]: %s; dead-lettered", topic, partition, why)
        return await self.dead_letter(topic, partition, key, value, why, **sizes)

    async def dead_letter(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        why: str,
        **extra: int,
    ) -> list[Batch]:
        """A bounded record on the DLQ in place of output the broker refuses for good (or
        that is over its topic's limit: ``extra`` says by how much)."""
        if self._dlq_topic is None or topic == self._dlq_topic:
            return []  # a dead-letter record is bounded by construction; nothing more to do
        record = dlq_record(
            "output_refused",
            why,
            topic,
            partition,
            -1,
            None,
            key,
            value,
            output_topic=topic,
            **extra,
        )
        producer = self._app.producer._ensure_producer()
        count = await self._partition_count(producer, self._dlq_topic)
        slot = partition_for(key, count) if key is not None else 0
        return await self._lane(self._dlq_topic, slot).submit(producer, [(key, record)])

    async def _partition_count(self, producer: Any, topic: str) -> int:
        count = self._partitions.get(topic)
        backoff = BACKOFF_FIRST_S
        while count is None:
            try:
                await producer.client._wait_on_metadata(topic)
            except KafkaError as exc:  # deleted, not yet created, or not ours to describe
                self._unknown[topic] = f"{type(exc).__name__} on {topic}"
                self.retrying()
                metrics.OUTPUT_RETRIES.labels(type(exc).__name__).inc()
                log.warning("no metadata for %s (%r): asking again in %.1f s", topic, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            count = len(producer.client.cluster.partitions_for_topic(topic))
            self._partitions[topic] = count
            if self._unknown.pop(topic, None):
                self.retrying()
        return count
