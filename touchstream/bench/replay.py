"""The bench's data set replayed through the pure core (``touchstream.offline``), no Kafka: what the
customers table holds once a worker has processed it (``bench/state_size.py``,
``bench/restart.py``), and how fast the core alone gets there (``bench/core_speed.py``)."""

from __future__ import annotations

import time
from typing import Any

from touchstream.bench.runner import DATA_SEED, STEP_MS
from touchstream.config.rules import load_rules
from touchstream.config.settings import load_settings
from touchstream.offline import OfflineStage
from touchstream.runtime.dlq_replay import ingest_for
from touchstream.schemas.decode import decode
from touchstream.simulator.traffic import generate


def bench_events(events: int, customers: int, now: int) -> list[dict[str, Any]]:
    """The bench's data set as ingest hands it to the customer stage."""
    records = generate(events, customers, DATA_SEED, now - events * STEP_MS, STEP_MS)
    ingest = ingest_for(load_settings({"TOUCHSTREAM_ENV": "development"}))
    return [ingest.normalise(decode(r.value, 1 << 20), now, 0, i) for i, r in enumerate(records)]


def replay(normalised: list[dict[str, Any]]) -> OfflineStage:
    stage = OfflineStage(load_rules(None), partitions=8)
    stage.submit(normalised)
    stage.drain()
    return stage


def replayed(events: int, customers: int) -> OfflineStage:
    return replay(bench_events(events, customers, int(time.time() * 1000)))
