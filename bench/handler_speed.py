"""CPU time of the worker's own code over the bench's data set: ``python bench/handler_speed.py``.

The ingest and customer handlers of a real ``Topology`` (Faust tables in memory, their
changelogs collected by the outbox) run as a worker runs them, a fetch of 2,000 records at a
time, but Kafka is lists: the customer-events records the handlers produce are fed back as
input, partition by partition, and every other output is dropped unsent. So the number is the
worker minus the broker, the consumer, the producer and Redis. ``touchstream bench`` measures
all of it, with ±10-15% between runs of one commit; this one moves a few percent between runs,
enough to see a change of the per-record path (issue 10). Take the best of several rounds.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections import Counter, deque
from typing import NamedTuple

from touchstream.bench.runner import DATA_SEED, STEP_MS
from touchstream.config.rules import load_rules
from touchstream.config.settings import load_settings
from touchstream.runtime.worker import GC_THRESHOLDS
from touchstream.simulator.traffic import generate
from touchstream.streams.delivery import partition_event
from touchstream.streams.timer_index import partition_for
from touchstream.streams.topology import Topology

FETCH = 2_000  # the worker's broker_max_poll_records


class Record(NamedTuple):  # what the handlers and Faust's tables read of a Kafka message
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    timestamp: float


class Partition(NamedTuple):
    topic: str
    partition: int


async def one_round(events: int, customers: int) -> tuple[float, int, dict[str, int], Counter[str]]:
    """CPU seconds of the handlers over ``events`` events, the customer-stage records, the
    bytes (key and value) each table's changelog holds at the end once compacted, and the
    records each output topic got."""
    settings = load_settings(
        {"TOUCHSTREAM_ENV": "development", "TOUCHSTREAM_BROKER": "kafka://127.0.0.1:9"}
    )
    t = Topology(settings, load_rules(None))
    # no broker here: the input topic's identity (streams.topic_identity) as if already asked
    t.topic_identities.known(t.touchpoints.get_topic_name(), "AAAAAAAAAAAAAAAAAAAAAA")
    t.timers.stale = False  # nothing to rebuild: the tables start empty
    partitions = settings.partitions
    source = t.touchpoints.get_topic_name()
    internal = t.customer_events.get_topic_name()
    ingest, customer = t.routes.handlers[source], t.routes.handlers[internal]
    now = time.time()
    start_ms = int(now * 1000) - events * STEP_MS
    inputs = [
        Record(source, i % partitions, i, r.key, r.value, now)
        for i, r in enumerate(generate(events, customers, DATA_SEED, start_ms, STEP_MS))
    ]
    queues: list[deque[Record]] = [deque() for _ in range(partitions)]
    offsets = [0] * partitions
    compacted: dict[str, dict[bytes, bytes | None]] = {}
    sent: Counter[str] = Counter()

    def route_outbox() -> None:
        records = t.outbox._records  # collected, never sent: there is no broker
        for (topic, _), batch in records.items():
            if topic.endswith("-changelog"):
                compacted.setdefault(topic, {}).update(batch)
            if topic != internal:
                if not topic.endswith("-changelog"):
                    sent[topic] += len(batch)
                continue
            for key, value in batch:
                p = partition_for(key, partitions)
                queues[p].append(Record(internal, p, offsets[p], key, value, time.time()))
                offsets[p] += 1
        records.clear()

    gc.collect()
    cpu, applied = 0.0, 0
    while inputs or any(queues):
        started = time.process_time()
        fetch, inputs = inputs[:FETCH], inputs[FETCH:]
        if fetch:
            with partition_event(fetch[-1]):
                await ingest(Partition(source, 0), fetch)
        route_outbox()
        for p, queue in enumerate(queues):
            batch = [queue.popleft() for _ in range(min(len(queue), FETCH // partitions))]
            if not batch:
                continue
            with partition_event(batch[-1]):
                write_states = await customer(Partition(internal, p), batch)
                assert write_states is not None
                write_states(True)
            applied += len(batch)
        route_outbox()
        cpu += time.process_time() - started
    table_bytes = {
        topic: sum(len(k) + len(v) for k, v in kept.items() if v is not None)
        for topic, kept in compacted.items()
    }
    return cpu, applied, table_bytes, sent


def main(events: int = 50_000, customers: int = 5_000, rounds: int = 3) -> None:
    gc.set_threshold(*GC_THRESHOLDS)
    best = float("inf")
    for _ in range(rounds):
        cpu, applied, table_bytes, sent = asyncio.run(one_round(events, customers))
        best = min(best, cpu)
        print(f"  {cpu:.2f} s CPU, {applied:,} customer-stage records", flush=True)
    print("output records of the last round:")
    for topic, count in sorted(sent.items()):
        print(f"  {topic}: {count:,}")
    # state per shopper as docs/domain.md, "Targets" counts it: every table, not only the customers one
    print(f"table state at the end, per shopper of the data set ({customers:,}):")
    for topic, size in sorted(table_bytes.items()):
        print(f"  {topic}: {size / customers:,.0f} bytes")
    print(f"  all tables: {sum(table_bytes.values()) / customers:,.0f} bytes")
    print(
        f"handlers: best of {rounds} {best:.2f} s CPU, {events / best:,.0f} events/s, "
        f"{best / events * 1e6:.0f} us per event"
    )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
