"""CPU time of the pure core alone over the bench's data set: ``python bench/core_speed.py``.

The events are generated and normalised before the clock starts; each round replays a fresh
copy through ``touchstream.offline`` (the customer stage without Kafka, Faust or Redis), with the
garbage collector as CPython sets it and as the worker sets it (``runtime.worker``). Every
round must reach the same decisions and final table: the digest printed is of both.
"""

from __future__ import annotations

import gc
import hashlib
import sys
import time

import orjson

from touchstream.bench.replay import bench_events, replay
from touchstream.offline import OfflineStage
from touchstream.runtime.worker import GC_THRESHOLDS

NOW_MS = 1_795_400_000_000  # fixed: the digest must not depend on the day it runs


def main(events: int = 50_000, customers: int = 5_000, rounds: int = 3) -> None:
    encoded = orjson.dumps(bench_events(events, customers, NOW_MS))
    default = gc.get_threshold()
    for name, thresholds in (("CPython's default", default), ("the worker's", GC_THRESHOLDS)):
        gc.set_threshold(*thresholds)
        best, digests = float("inf"), set()
        for _ in range(rounds):
            normalised = orjson.loads(encoded)
            started = time.process_time()
            stage = replay(normalised)
            best = min(best, time.process_time() - started)
            digests.add(_digest(stage))
        if len(digests) != 1:
            raise SystemExit("the rounds disagree: the core is not deterministic")
        print(
            f"{name} collector {thresholds}: best of {rounds} {best:.2f} s CPU, "
            f"{events / best:,.0f} events/s; {len(stage.decisions):,} decisions, "
            f"digest {digests.pop()[:16]}"
        )
    gc.set_threshold(*default)


def _digest(stage: OfflineStage) -> str:
    h = hashlib.sha256()
    for decision in stage.decisions:
        h.update(orjson.dumps([decision.kind, decision.payload], option=orjson.OPT_SORT_KEYS))
    h.update(orjson.dumps(stage.table, option=orjson.OPT_SORT_KEYS))
    return h.hexdigest()


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
