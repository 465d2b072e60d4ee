"""Which customers have a timer due, per partition of the customer-events topic, and each
partition's event-time clock.

A cache derived from the customers table (rebuilt from it after every assignment), never
state of its own: due times are kept in a heap per partition and checked against the table
when they come up, so a stale entry (the cart was bought, the profile was active again) costs
nothing. Timers run while the agent handles a record of the same partition, so their table
writes go to the right changelog partition.

The clock of a partition is the highest event time it has seen. When it has seen no event for
the idle interval, the worker sends it a tick record carrying the clock advanced by the wall
time elapsed since its last event (PRODUCT.md section 5, idle fallback).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from functools import lru_cache

from aiokafka.partitioner import murmur2

from touchstream.streams.isolation import Undo


@lru_cache(maxsize=1 << 16)  # aiokafka's murmur2 is pure Python; keys repeat (hot customers)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition the producer's default partitioner gives a key (Kafka's murmur2)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class TimerIndex:
    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[int, str]]] = {}
        self._clocks: dict[int, int] = {}
        # per partition: (wall ms, clock) when it last saw an event, for the idle fallback
        self._seen: dict[int, tuple[int, int]] = {}
        self.stale = True  # rebuild from the table before the next use
        self.undo = Undo()  # shared with the outbox by the topology (streams.isolation)

    def reset(
        self, entries: Iterable[tuple[int, int, str]], clocks: dict[int, int], wall_ms: int
    ) -> None:
        """(partition, due, customer_id) of every pending timer held locally, and a clock per
        partition to resume from (the latest event time its profiles have seen)."""
        self._heaps = {}
        for partition, due, customer_id in entries:
            self._heaps.setdefault(partition, []).append((due, customer_id))
        for heap in self._heaps.values():
            heapq.heapify(heap)
        for partition, clock in clocks.items():
            resumed = max(self._clocks.get(partition, clock), clock)
            self._clocks[partition] = resumed
            self._seen[partition] = (wall_ms, resumed)
        self.stale = False

    def track(self, partition: int, due: int, customer_id: str) -> None:
        heap = self._heaps.setdefault(partition, [])
        heapq.heappush(heap, (due, customer_id))
        undo = self.undo.entries
        if undo is not None:
            undo.append((_remove, heap, (due, customer_id)))

    def advance(self, partition: int, at: int, wall_ms: int | None = None) -> int:
        """Move the partition's clock to ``at`` if later; ``wall_ms`` marks a real event (a
        tick passes None), which restarts the idle interval."""
        clock = max(self._clocks.get(partition, at), at)
        self._clocks[partition] = clock
        if wall_ms is not None:
            self._seen[partition] = (wall_ms, clock)
        return clock

    def clock(self, partition: int) -> int | None:
        return self._clocks.get(partition)

    def idle_tick(self, partition: int, wall_ms: int, idle_ms: int) -> int | None:
        """The event time a tick should move an idle partition's clock to, or None."""
        seen = self._seen.get(partition)
        if seen is None or wall_ms - seen[0] < idle_ms:
            return None
        return seen[1] + (wall_ms - seen[0])

    def due(self, partition: int) -> list[str]:
        heap = self._heaps.get(partition)
        clock = self._clocks.get(partition)
        out: list[str] = []
        undo = self.undo.entries
        while heap and clock is not None and heap[0][0] <= clock:
            entry = heapq.heappop(heap)
            if undo is not None:
                undo.append((heapq.heappush, heap, entry))
            customer_id = entry[1]
            if customer_id not in out:
                out.append(customer_id)
        return out

    def checkpoint(self, partition: int) -> tuple[int | None, tuple[int, int] | None]:
        """The partition's clock and last sighting, to ``restore`` if its batch is undone."""
        return self._clocks.get(partition), self._seen.get(partition)

    def restore(self, partition: int, point: tuple[int | None, tuple[int, int] | None]) -> None:
        clock, seen = point
        if clock is None:
            self._clocks.pop(partition, None)
        else:
            self._clocks[partition] = clock
        if seen is None:
            self._seen.pop(partition, None)
        else:
            self._seen[partition] = seen

    def __len__(self) -> int:
        return sum(len(h) for h in self._heaps.values())


def _remove(heap: list[tuple[int, str]], entry: tuple[int, str]) -> None:
    if entry in heap:
        heap.remove(entry)
        heapq.heapify(heap)
