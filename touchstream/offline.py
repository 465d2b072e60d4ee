"""The per-customer stage replayed offline: the oracle tests compare the running system with.

The same ``linking.handle`` the agent runs, over an in-memory customers table and one FIFO
queue per partition of the customer-events topic, so messages between homes (merge, absorb,
fold, forwarded events) travel as they do through Kafka. ``order`` picks which partition's
queue moves next, to explore interleavings a multi-worker run can produce.

It lives beside ``agents/``, not in ``domain/``: like the live customer stage it composes the
pure core with the stream layer's timer index and Kafka's default partitioner (aiokafka's
murmur2), so that partition clocks and the timers they fire match a live run, and the core
(``domain/``) must reach none of those (``tests/unit/domain/test_purity.py``).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from touchstream.config.rules import Rules
from touchstream.domain.customer import Decision
from touchstream.domain.linking import handle
from touchstream.domain.records import Erased, Redirect
from touchstream.domain.state import Stored
from touchstream.domain.step import Step
from touchstream.domain.timers import fire, next_due, stale_due
from touchstream.streams.timer_index import DEFAULT_MAX_SKEW_MS, TimerIndex, partition_for


@lru_cache(maxsize=1 << 16)  # an id is placed once per message it is the key of: murmur2 each time
def partition_of(customer_id: str, partitions: int) -> int:
    # Kafka's placement, so partition clocks (and the timers they fire) match a live run
    return partition_for(customer_id.encode(), partitions)


@dataclass
class OfflineStage:
    rules: Rules
    partitions: int = 4
    seed: int | None = None
    # TOUCHSTREAM_MAX_CLOCK_SKEW_S in ms: how far past its broker timestamp (``rt``) an event
    # moves its partition's clock, as in the live stage
    max_clock_skew_ms: int = DEFAULT_MAX_SKEW_MS
    table: dict[str, Stored] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    _queues: list[deque[tuple[str, dict[str, Any]]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queues = [deque() for _ in range(self.partitions)]
        self._random = random.Random(self.seed)
        self._timers = TimerIndex(self.max_clock_skew_ms)
        self._timers.stale = False

    def submit(self, events: Iterable[dict[str, Any]]) -> None:
        """Internal events as ingest emits them: keyed by their ``cid`` (the home)."""
        for ev in events:
            self._enqueue(ev["cid"], ev)

    def _enqueue(self, target: str, msg: dict[str, Any]) -> None:
        self._queues[partition_of(target, self.partitions)].append((target, msg))

    def step(self) -> bool:
        ready = [i for i, q in enumerate(self._queues) if q]
        if not ready:
            return False
        # by index: deques compare by content, so looking the queue up after the pop would
        # name the first empty partition once this one ran dry
        partition = self._random.choice(ready) if self.seed is not None else ready[0]
        target, msg = self._queues[partition].popleft()
        if msg.get("k", "ev") == "ev":  # as the agent: timers due by the event's time first
            now_ms = int(msg.get("ts", 0))
            clock = self._timers.advance_event(partition, msg, now_ms)
            if clock is not None:
                self._fire(partition, clock, now_ms)
            else:  # a privileged command: its own customer's timers only
                own = self._timers.command_time(msg, self.table.get(target))
                if own is not None:
                    self._fire(partition, own, now_ms, [target])
        self._apply(partition, target, handle(target, self.table.get(target), msg, self.rules))
        return True

    def _apply(self, partition: int, target: str, result: Step) -> None:
        if result.delete:
            self.table.pop(target, None)
        elif result.store is not None:
            store = self.table[target] = result.store
            if isinstance(store, Erased) and store.unconfirmed is not None:
                # Redis confirms the erasure's deletion at once: the receipt follows
                confirm = {"k": "confirm", "version": store.version, "ts": store.erased_at}
                self._enqueue(target, confirm)
            self._timers.track(partition, next_due(result.store, self.rules), target)
        for dest, out in result.sends:
            self._enqueue(dest, out)
        self.decisions.extend(result.decisions)

    def _fire(
        self, partition: int, clock: int, now_ms: int, customers: list[str] | None = None
    ) -> None:
        """The timers due by ``clock`` of the partition's customers the index names (or of
        ``customers``)."""
        for customer_id in self._timers.due(partition) if customers is None else customers:
            state = self.table.get(customer_id)
            step = fire(customer_id, state, clock, now_ms, self.rules)
            self._timers.track(partition, stale_due(step, state, self.rules), customer_id)
            self._apply(partition, customer_id, step)

    def tick(self, at: int | dict[int, int], now_ms: int) -> OfflineStage:
        """The idle fallback: every partition's clock moves on to ``at`` (one time for all, or
        a time per partition), then the stage settles again (a tick reaches each partition of
        the live system the same way)."""
        for partition in range(self.partitions):
            to = at if isinstance(at, int) else at.get(partition)
            if to is not None:
                self._fire(partition, self._timers.advance(partition, to), now_ms)
        return self.drain()

    def drain(self, limit: int = 1_000_000) -> OfflineStage:
        for _ in range(limit):
            if not self.step():
                return self
        raise RuntimeError("the customer stage did not settle: a forwarding loop?")

    def resolve(self, customer_id: str) -> str | None:
        """The live profile an id belongs to now (following redirects), or None."""
        seen = 0
        state = self.table.get(customer_id)
        while isinstance(state, Redirect):
            customer_id = state.into
            state = self.table.get(customer_id)
            seen += 1
            if seen > len(self.table):
                raise RuntimeError("redirect cycle")
        return customer_id if state is not None and not isinstance(state, Erased) else None

    def live(self) -> dict[str, dict[str, Any]]:
        return {cid: s for cid, s in self.table.items() if isinstance(s, dict)}  # no records
