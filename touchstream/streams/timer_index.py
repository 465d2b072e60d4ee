"""Which customers have a timer due, per partition of the customer-events topic, and each
partition's event-time clock.

A cache derived from the customers table (rebuilt from it after every assignment, one
partition at a time: ``plan`` sorts the keys by partition, ``load`` fills one partition from
the states of its keys, decoded one by one; the customer stage loads a partition before its
first record and one more partition per batch, so no stage decodes the whole table at once),
never state of its own: due times are kept in a heap per partition and checked against the table
when they come up, so a stale entry (the cart was bought, the profile was active again) costs
nothing. Timers run while the agent handles a record of the same partition, so their table
writes go to the right changelog partition.

The clock of a partition is the highest event time it has seen (a privileged command moves no
clock, ``advance_event``: it brings only its own customer's timers up to its time,
``command_time``), each event counting for its claimed time but never more than
``max_skew_ms`` past the time its record reached the broker (``domain.clock.clock_time``,
TOUCHSTREAM_MAX_CLOCK_SKEW_S): one event dated hours ahead must not fire every timer of its
partition early. When it has seen no event for the idle interval, the worker sends it a tick
record carrying the clock advanced by the wall time elapsed since its last event
(docs/domain.md, "Idle fallback").
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from aiokafka.partitioner import murmur2

from touchstream.domain.clock import clock_time
from touchstream.domain.customer import applied_before
from touchstream.domain.privileged import is_command
from touchstream.domain.state import Stored
from touchstream.streams.isolation import Undo

DEFAULT_MAX_SKEW_MS = 300_000  # TOUCHSTREAM_MAX_CLOCK_SKEW_S's default (config/settings.py)
SKEW_WINDOW_MS = 60_000  # the skew reported is the largest of this window and the one before


@lru_cache(maxsize=1 << 16)  # aiokafka's murmur2 is pure Python; keys repeat (hot customers)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition the producer's default partitioner gives a key (Kafka's murmur2)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def resume_clock(state: Stored | None, max_skew_ms: int, wall_ms: int) -> int | None:
    """What a profile tells of its partition's clock when the index is rebuilt: the highest
    capped event time it applied (``clock_at``), never a future-dated event's claimed time. A
    state written before ``clock_at`` existed gives its latest event time, but not more than
    ``max_skew_ms`` past the wall clock."""
    if not isinstance(state, dict):  # none, a redirect or an erasure marker (domain.records)
        return None
    if "clock_at" in state:  # None: no event but privileged commands (they move no clock)
        capped = state["clock_at"]
        return None if capped is None else int(capped)
    seen = state.get("last_event_at")
    return None if seen is None else min(int(seen), wall_ms + max_skew_ms)


class TimerIndex:
    def __init__(self, max_skew_ms: int = DEFAULT_MAX_SKEW_MS) -> None:
        self.max_skew_ms = max_skew_ms
        # per partition: (window, largest at - rt of the window, of the window before)
        self._skew: dict[int, tuple[int, int | None, int | None]] = {}
        self._heaps: dict[int, list[tuple[int, str]]] = {}
        # per partition: each customer's earliest due time in its heap. A customer gets a new
        # entry only when its due time comes before the one it holds: a shopper's every event
        # moves the session's end on, and one entry per event filled the heap with an entry
        # per event of the session gap. The entry that comes up first is re-tracked at the
        # customer's next due time once it is handled (``due``'s callers do).
        self._earliest: dict[int, dict[str, int]] = {}
        self._clocks: dict[int, int] = {}
        # per partition: (wall ms, clock) when it last saw an event, for the idle fallback
        self._seen: dict[int, tuple[int, int]] = {}
        self.stale = True  # plan a rebuild from the table before the next use
        self._todo: dict[int, list[bytes]] = {}  # partitions planned, not loaded yet: their keys
        self.undo = Undo()  # shared with the outbox by the topology (streams.isolation)

    def plan(self, keys_by_partition: dict[int, list[bytes]]) -> None:
        """The partitions to load again (this worker's, after an assignment) and their keys."""
        self._todo = dict(keys_by_partition)
        self.stale = False

    def built(self, partition: int) -> bool:
        return partition not in self._todo

    def unbuilt(self) -> list[int]:
        return sorted(self._todo)

    def keys_of(self, partition: int) -> list[bytes]:
        return self._todo.get(partition, [])

    def load(
        self, partition: int, entries: Iterable[tuple[int, str]], clock: int | None, wall_ms: int
    ) -> None:
        """One partition's (due, customer_id) timers and the clock to resume from (the latest
        event time its profiles have seen), replacing what the index held for it."""
        earliest: dict[str, int] = {}
        for due, customer_id in entries:
            held = earliest.get(customer_id)
            if held is None or due < held:
                earliest[customer_id] = due
        heap = [(due, customer_id) for customer_id, due in earliest.items()]
        heapq.heapify(heap)
        self._heaps[partition] = heap
        self._earliest[partition] = earliest
        if clock is not None:
            resumed = max(self._clocks.get(partition, clock), clock)
            self._clocks[partition] = resumed
            self._seen[partition] = (wall_ms, resumed)
        self._todo.pop(partition, None)

    def track(self, partition: int, due: int | None, customer_id: str) -> None:
        """The customer's timers are next due at ``due`` (None: it has none): an entry,
        unless it holds one at or before that time already."""
        if due is None:
            return
        earliest = self._earliest.get(partition)
        if earliest is None:
            earliest = self._earliest[partition] = {}
        held = earliest.get(customer_id)
        if held is not None and held <= due:
            return
        heap = self._heaps.setdefault(partition, [])
        heapq.heappush(heap, (due, customer_id))
        earliest[customer_id] = due
        undo = self.undo.entries
        if undo is not None:
            undo.append((_untrack, heap, earliest, (due, customer_id), held))

    def advance(self, partition: int, at: int, wall_ms: int | None = None) -> int:
        """Move the partition's clock to ``at`` if later; ``wall_ms`` marks a real event (a
        tick passes None), which restarts the idle interval."""
        clock = max(self._clocks.get(partition, at), at)
        self._clocks[partition] = clock
        if wall_ms is not None:
            self._seen[partition] = (wall_ms, clock)
        return clock

    def advance_event(self, partition: int, msg: dict[str, Any], wall_ms: int) -> int | None:
        """Move the partition's clock for an event: to its claimed time ``msg["at"]``, capped
        at ``max_skew_ms`` past its record's broker timestamp ``msg["rt"]``. The capped time
        goes into ``msg["ct"]`` (the core keeps the highest in the state, where the index is
        rebuilt from); the event itself keeps its claimed time.

        A privileged command (``domain.privileged.is_command``: an erasure, an access
        request, a redemption, a consent grant) moves nothing and returns None (no timer of
        the partition is due by it). Those come on the privileged input, read beside
        ``touchpoints`` and not in step with it: behind a backlog a worker reads their few
        records at once, and the clocks they set would fire every timer of the ordinary events
        still queued (over the benchmark's backlog, 12,000 sessions closed instead of 1,300).
        The caller fires the command's own customer's timers up to ``command_time`` instead."""
        if is_command(msg):
            msg.pop("ct", None)  # set by a worker before this rule, on a forwarded record
            return None
        at: int = msg["at"]
        rt: int | None = msg.get("rt")
        to = clock_time(at, rt, self.max_skew_ms)
        msg["ct"] = to
        if rt is not None:
            noted = self._skew.get(partition)  # per event: a new window or a new high only
            if (
                noted is None
                or noted[1] is None
                or at - rt > noted[1]
                or noted[0] != wall_ms // SKEW_WINDOW_MS
            ):
                self._note_skew(partition, at - rt, wall_ms)
        clock = self._clocks.get(partition, to)  # advance(), inlined: once per event
        if to > clock:
            clock = to
        self._clocks[partition] = clock
        self._seen[partition] = (wall_ms, clock)
        return clock

    def command_time(self, msg: dict[str, Any], state: Stored | None) -> int | None:
        """The time a privileged command brings its own customer's timers up to before it is
        applied, as any event of that customer would (its claimed time, capped like an event's):
        which of a shopper's command and another shopper's event at the same moment comes
        first then changes nothing the shopper is told. None for a command ``state`` applied
        already (``domain.customer.applied_before``): a redelivery fires nothing."""
        if applied_before(state, msg):
            return None
        return clock_time(msg["at"], msg.get("rt"), self.max_skew_ms)

    def _note_skew(self, partition: int, skew: int, wall_ms: int) -> None:
        window = wall_ms // SKEW_WINDOW_MS
        last, now, before = self._skew.get(partition, (window, None, None))
        if window != last:
            now, before = None, (now if window == last + 1 else None)
        self._skew[partition] = (window, skew if now is None else max(now, skew), before)

    def skew(self, partition: int, wall_ms: int) -> int | None:
        """The largest amount (ms) by which an event's claimed time was ahead of its record's
        broker timestamp on this partition, over the last one to two minutes of wall time;
        None if it saw no event then."""
        last, now, before = self._skew.get(partition, (0, None, None))
        window = wall_ms // SKEW_WINDOW_MS
        seen = [
            v for v, w in ((now, last), (before, last - 1)) if v is not None and w >= window - 1
        ]
        return max(seen) if seen else None

    def clock(self, partition: int) -> int | None:
        return self._clocks.get(partition)

    def idle_tick(self, partition: int, wall_ms: int, idle_ms: int) -> int | None:
        """The event time a tick should move an idle partition's clock to, or None."""
        seen = self._seen.get(partition)
        if seen is None or partition in self._todo or wall_ms - seen[0] < idle_ms:
            return None
        return seen[1] + (wall_ms - seen[0])

    def due(self, partition: int) -> list[str]:
        """The customers whose entry the partition's clock has reached, earliest first, each
        once. Their entries are gone: the caller tracks each one's next due time again after
        handling it (also when nothing was due after all: the entry was stale)."""
        heap = self._heaps.get(partition)
        clock = self._clocks.get(partition)
        out: list[str] = []
        if not heap or clock is None or heap[0][0] > clock:
            return out
        earliest = self._earliest.setdefault(partition, {})
        undo = self.undo.entries
        while heap and heap[0][0] <= clock:
            entry = heapq.heappop(heap)
            due, customer_id = entry
            if earliest.get(customer_id) == due:
                del earliest[customer_id]
                if undo is not None:
                    undo.append((_put_back, heap, earliest, entry, True))
            elif undo is not None:
                undo.append((_put_back, heap, earliest, entry, False))
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


def _untrack(
    heap: list[tuple[int, str]],
    earliest: dict[str, int],
    entry: tuple[int, str],
    held: int | None,
) -> None:
    """Undo ``track``: the entry out, the customer's earlier due time (if any) back."""
    if entry in heap:
        heap.remove(entry)
        heapq.heapify(heap)
    if held is None:
        earliest.pop(entry[1], None)
    else:
        earliest[entry[1]] = held


def _put_back(
    heap: list[tuple[int, str]], earliest: dict[str, int], entry: tuple[int, str], held: bool
) -> None:
    """Undo one pop of ``due``."""
    heapq.heappush(heap, entry)
    if held:
        earliest[entry[1]] = entry[0]
