"""The largest record batch each output topic takes, and the size of a record in one.

Three limits apply to every record the worker produces, and the smallest one wins:
- the producer's request limit (``max_request_size``, Faust's ``producer_max_request_size``,
  1,000,000 bytes by default);
- the broker's ``message.max.bytes`` (Kafka's default: 1,048,588);
- the destination topic's ``max.message.bytes`` (the broker's value unless set on the topic).

The broker compares the size of a whole record batch (KIP-98, magic v2, uncompressed here)
with its limits, not the value's: a record alone in a batch costs the 61-byte batch header,
its own length, attributes, offset and timestamp deltas, key and value with their lengths and
a header count. ``batch_size`` computes it exactly as aiokafka's builder writes it (checked
against the builder in tests/unit/streams/test_size_limits.py and against Apache Kafka in
tests/integration/test_output_limits.py).

``SizeLimits`` caches what the broker said (``streams.topic_admin.read_size_limits`` at
start-up, again every ``TOUCHSTREAM_OUTPUT_LIMITS_REFRESH_S`` and at once after a send the
broker refused as too large). A limit not known (a principal without DescribeConfigs) is not
applied: the broker's refusal at send time still dead-letters such a record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from touchstream import metrics

log = logging.getLogger(__name__)

RECORD_BATCH_OVERHEAD = 61  # the v2 record batch header
MAX_RECORD_OVERHEAD = 21  # a record's length, attributes, deltas and header count at most
KAFKA_DEFAULT_MESSAGE_MAX_BYTES = 1_048_588
REFRESH_TIMEOUT_S = 30.0  # a refresh while the broker is away gives up; the next one asks


def varint_size(n: int) -> int:
    zigzag = (n << 1) ^ (n >> 63)
    size = 1
    while zigzag >= 0x80:
        zigzag >>= 7
        size += 1
    return size


def _field(data: bytes | None) -> int:
    return 1 if data is None else varint_size(len(data)) + len(data)


def batch_size(key: bytes | None, value: bytes | None) -> int:
    """Bytes of a record batch holding only this record (no headers, uncompressed)."""
    # attributes, offset delta 0, timestamp delta 0, key, value, header count 0
    body = 1 + 1 + 1 + _field(key) + _field(value) + 1
    return RECORD_BATCH_OVERHEAD + varint_size(body) + body


def largest_value(limit: int, key: bytes | None) -> int:
    """Length of the largest value that, with ``key``, makes a one-record batch of at most
    ``limit`` bytes (0 when even an empty value would not fit)."""
    value = limit - RECORD_BATCH_OVERHEAD - len(key or b"")
    while value > 0 and _size_of(key, value) > limit:  # a few steps: varints are short
        value -= 1
    return max(value, 0)


def _size_of(key: bytes | None, value_len: int) -> int:
    body = 3 + _field(key) + varint_size(value_len) + value_len + 1
    return RECORD_BATCH_OVERHEAD + varint_size(body) + body


@dataclass
class Limits:
    """What the broker reported: its ``message.max.bytes`` and each topic's
    ``max.message.bytes`` (None or absent where it would not say)."""

    broker: int | None = None
    topics: dict[str, int] = field(default_factory=dict)


Reader = Callable[[list[str]], Awaitable[Limits]]


class SizeLimits:
    def __init__(
        self,
        producer: int | None = None,
        reader: Reader | None = None,
        topics: Sequence[str] = (),
        prefix: str = "",
    ) -> None:
        self.producer = producer
        self.broker: int | None = None
        self.topics: dict[str, int] = {}
        self.reader = reader  # how to ask the broker again
        self.watched = list(topics)  # the topics to ask about
        self.prefix = prefix  # left out of the gauge's topic label
        self._refreshing: asyncio.Task[None] | None = None
        # per topic: the limit less the most a one-record batch adds to its key and value, so
        # the hot path is one dict look-up and a comparison (cleared by ``update``)
        self.rooms: dict[str, int | None] = {}  # read by Outbox.add before it calls ``over``

    def update(self, limits: Limits) -> None:
        if limits.broker is not None:
            self.broker = limits.broker
        self.topics.update(limits.topics)
        self.rooms.clear()
        for topic in self.watched:
            limit = self.limit(topic)
            if limit is not None:
                metrics.OUTPUT_SIZE_LIMIT.labels(topic.removeprefix(self.prefix)).set(limit)

    def limit(self, topic: str) -> int | None:
        """The largest record batch ``topic`` takes, or None if no limit is known."""
        known = [v for v in (self.producer, self.broker, self.topics.get(topic)) if v]
        return min(known) if known else None

    def describe(self, topic: str) -> str:
        return (
            f"producer max_request_size {self.producer}, broker message.max.bytes"
            f" {self.broker}, topic max.message.bytes {self.topics.get(topic)}"
        )

    def over(self, topic: str, key: bytes | None, value: bytes | None) -> tuple[int, int] | None:
        """(record batch size, limit) when the record alone is over ``topic``'s limit."""
        try:
            room = self.rooms[topic]
        except KeyError:
            limit = self.limit(topic)
            room = self.rooms[topic] = (
                None if limit is None else limit - RECORD_BATCH_OVERHEAD - MAX_RECORD_OVERHEAD
            )
        if room is None:
            return None
        if (len(key) if key else 0) + (len(value) if value else 0) <= room:
            return None  # the hot path: far below
        limit = room + RECORD_BATCH_OVERHEAD + MAX_RECORD_OVERHEAD
        size = batch_size(key, value)
        return (size, limit) if size > limit else None

    def value_budget(self, topic: str, key: bytes | None, default: int) -> int:
        """The largest value a record of ``key`` on ``topic`` may have (``default`` bounds it
        when no limit is known)."""
        limit = self.limit(topic)
        if limit is None:
            return default
        return min(default, largest_value(limit, key))

    async def refresh(self) -> None:
        """Ask the broker again (the periodic timer and a too-large refusal call this)."""
        if self.reader is None:
            return
        try:
            self.update(await asyncio.wait_for(self.reader(self.watched), REFRESH_TIMEOUT_S))
        except Exception as exc:  # the broker away: the cached limits stay, asked again later
            log.warning("output size limits not refreshed: %r", exc)

    def refresh_soon(self) -> None:
        """A refresh in the background, one at a time (from a lane's done-callback)."""
        if self.reader is None or (self._refreshing is not None and not self._refreshing.done()):
            return
        self._refreshing = asyncio.ensure_future(self.refresh())
