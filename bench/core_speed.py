"""CPU time of the pure core alone over the bench's data set: ``python bench/core_speed.py``.

The timed region, fixed so that trees can be compared (issue 29's acceptance): **normalised
events in, encoded states out**. The events are generated and normalised (as ingest hands them
to the customer stage) before the clock starts. Each round replays a fresh copy through
``touchstream.offline`` (the customer stage without Kafka, Faust or Redis) and encodes the
states it stores as the worker's customers table does (``tables/state_codec.encode``): each
changed customer once per 500 records handled, as the worker writes each changed customer once
per fetch (``tables/customers.py``, ``StateCache.flush``), and all of them at the end.

It runs with the garbage collector as CPython sets it and as the worker sets it
(``runtime.worker``). Every round must reach the same decisions and final table: the digest
printed is of both (the stored bytes are not in it: a new state format changes them, not what
the core decides). ``python bench/core_speed.py EVENTS CUSTOMERS ROUNDS``; defaults 50,000,
5,000, 3.
"""

from __future__ import annotations

import gc
import hashlib
import sys
import time
from typing import Any

import orjson

from touchstream.bench.replay import bench_events
from touchstream.config.rules import load_rules
from touchstream.runtime.worker import GC_THRESHOLDS
from touchstream.tables import state_codec

try:  # a state holding typed records (domain/records.py) is hashed as the dicts they replace
    from touchstream.domain.records import json_default
except ImportError:  # trees before the typed state hold only dicts
    json_default = None  # type: ignore[assignment]
try:
    from touchstream.offline import OfflineStage
except ImportError:  # trees before the oracle left domain/ (to compare with them)
    from touchstream.domain.offline import OfflineStage  # type: ignore[no-redef]

NOW_MS = 1_795_400_000_000  # fixed: the digest must not depend on the day it runs
FETCH = 500  # records per flush of changed states, as a worker's fetch of one partition


class EncodingStage(OfflineStage):  # type: ignore[misc,valid-type]
    """The offline stage that also encodes what it stores, as the worker's table does."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.changed: dict[str, Any] = {}
        self.handled = 0
        self.stored_bytes = 0

    def _apply(self, partition: int, target: str, result: Any) -> None:
        super()._apply(partition, target, result)
        if result.delete or result.store is not None:
            self.changed[target] = None if result.delete else result.store

    def step(self) -> bool:
        moved = bool(super().step())
        self.handled += 1
        if not moved or self.handled % FETCH == 0:
            self.flush()
        return moved

    def flush(self) -> None:
        for state in self.changed.values():
            if state is not None:
                self.stored_bytes += len(state_codec.encode(state))
        self.changed.clear()


def run(normalised: list[dict[str, Any]]) -> EncodingStage:
    stage = EncodingStage(load_rules(None), partitions=8)
    stage.submit(normalised)
    stage.drain()
    return stage


def main(events: int = 50_000, customers: int = 5_000, rounds: int = 3) -> None:
    encoded = orjson.dumps(bench_events(events, customers, NOW_MS))
    default = gc.get_threshold()
    for name, thresholds in (("CPython's default", default), ("the worker's", GC_THRESHOLDS)):
        gc.set_threshold(*thresholds)
        best, digests = float("inf"), set()
        for _ in range(rounds):
            normalised = orjson.loads(encoded)
            started = time.process_time()
            stage = run(normalised)
            best = min(best, time.process_time() - started)
            digests.add(_digest(stage))
        if len(digests) != 1:
            raise SystemExit("the rounds disagree: the core is not deterministic")
        print(
            f"{name} collector {thresholds}: best of {rounds} {best:.2f} s CPU, "
            f"{events / best:,.0f} events/s; {len(stage.decisions):,} decisions, "
            f"{stage.stored_bytes:,} bytes stored, digest {digests.pop()[:16]}"
        )
    gc.set_threshold(*default)


def _digest(stage: Any) -> str:
    h = hashlib.sha256()
    for decision in stage.decisions:
        h.update(orjson.dumps([decision.kind, decision.payload], option=orjson.OPT_SORT_KEYS))
    h.update(orjson.dumps(stage.table, option=orjson.OPT_SORT_KEYS, default=json_default))
    return h.hexdigest()


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
