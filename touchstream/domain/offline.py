"""The per-customer stage replayed offline: the oracle tests compare the running system with.

The same ``linking.handle`` the agent runs, over an in-memory customers table and one FIFO
queue per partition of the customer-events topic, so messages between homes (merge, absorb,
fold, forwarded events) travel as they do through Kafka. ``order`` picks which partition's
queue moves next, to explore interleavings a multi-worker run can produce.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from touchstream.config.rules import Rules
from touchstream.domain.customer import Decision
from touchstream.domain.linking import handle, is_erased, is_redirect


def partition_of(customer_id: str, partitions: int) -> int:
    # any stable hash: the oracle only needs per-key FIFO, not Kafka's exact placement
    return int.from_bytes(hashlib.blake2b(customer_id.encode(), digest_size=4).digest()) % (
        partitions
    )


@dataclass
class OfflineStage:
    rules: Rules
    partitions: int = 4
    seed: int | None = None
    table: dict[str, dict[str, Any]] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    _queues: list[deque[tuple[str, dict[str, Any]]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queues = [deque() for _ in range(self.partitions)]
        self._random = random.Random(self.seed)

    def submit(self, events: Iterable[dict[str, Any]]) -> None:
        """Internal events as ingest emits them: keyed by their ``cid`` (the home)."""
        for ev in events:
            self._enqueue(ev["cid"], ev)

    def _enqueue(self, target: str, msg: dict[str, Any]) -> None:
        self._queues[partition_of(target, self.partitions)].append((target, msg))

    def step(self) -> bool:
        ready = [q for q in self._queues if q]
        if not ready:
            return False
        queue = self._random.choice(ready) if self.seed is not None else ready[0]
        target, msg = queue.popleft()
        result = handle(target, self.table.get(target), msg, self.rules)
        if result.store is not None:
            self.table[target] = result.store
        for dest, out in result.sends:
            self._enqueue(dest, out)
        self.decisions.extend(result.decisions)
        return True

    def drain(self, limit: int = 1_000_000) -> OfflineStage:
        for _ in range(limit):
            if not self.step():
                return self
        raise RuntimeError("the customer stage did not settle: a forwarding loop?")

    def resolve(self, customer_id: str) -> str | None:
        """The live profile an id belongs to now (following redirects), or None."""
        seen = 0
        state = self.table.get(customer_id)
        while is_redirect(state):
            assert state is not None
            customer_id = state["into"]
            state = self.table.get(customer_id)
            seen += 1
            if seen > len(self.table):
                raise RuntimeError("redirect cycle")
        return customer_id if state is not None and not is_erased(state) else None

    def live(self) -> dict[str, dict[str, Any]]:
        return {cid: s for cid, s in self.table.items() if not is_redirect(s) and not is_erased(s)}
