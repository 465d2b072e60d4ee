"""Which anonymous-only profiles fall due, per partition of the customer-events topic.

A cache derived from the customers table (rebuilt from it after every assignment), never
state of its own: due times are kept in a heap per partition and checked against the table
when they come up, so a stale entry (the profile was active again, or linked) costs nothing.
Expiry runs while the agent handles a record of the same partition, so the tombstone goes
to the right changelog partition.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from aiokafka.partitioner import murmur2


def partition_for(key: bytes, partitions: int) -> int:
    """The partition the producer's default partitioner gives a key (Kafka's murmur2)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class ExpiryIndex:
    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[int, str]]] = {}
        self._clocks: dict[int, int] = {}
        self.stale = True  # rebuild from the table before the next use

    def reset(self, entries: Iterable[tuple[int, int, str]]) -> None:
        """(partition, due, customer_id) of every anonymous-only profile held locally."""
        self._heaps = {}
        for partition, due, customer_id in entries:
            self._heaps.setdefault(partition, []).append((due, customer_id))
        for heap in self._heaps.values():
            heapq.heapify(heap)
        self.stale = False

    def track(self, partition: int, due: int, customer_id: str) -> None:
        heapq.heappush(self._heaps.setdefault(partition, []), (due, customer_id))

    def advance(self, partition: int, at: int) -> int:
        """The partition's event-time clock: the highest event time it has seen."""
        clock = max(self._clocks.get(partition, at), at)
        self._clocks[partition] = clock
        return clock

    def due(self, partition: int) -> list[str]:
        heap = self._heaps.get(partition)
        clock = self._clocks.get(partition)
        out: list[str] = []
        while heap and clock is not None and heap[0][0] <= clock:
            out.append(heapq.heappop(heap)[1])
        return out

    def __len__(self) -> int:
        return sum(len(h) for h in self._heaps.values())
