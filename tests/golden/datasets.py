"""The three data sets of the golden outputs, each replayed through the core at fixed times.

- ``bench``: the bench's data set (``touchstream.bench.replay.bench_events``, at the fixed
  time of ``bench/core_speed.py``), 5,000 events of 500 shoppers, then the idle fallback
  carries every clock on past each reminder, session end, grace period and expiry;
- ``chaos``: the traffic of the chaos suite's poison scenario (``Traffic(seed=12)`` with 5%
  malformed records of every kind), plus what its other scenarios mix in: 5% producer
  duplicates, 2% events dated up to 23 h ahead, and the hostile records at every bound of the
  fault-isolation scenario; read from two inputs of 4 partitions in partition/offset order,
  interleaved by timestamp, as the chaos oracle (``tests/chaos/harness.py``) reads them;
- ``adversarial``: hostile sequences of the fault-isolation, bounds and privacy work
  (``adversarial.py``), each on a stage of its own.

Each data set's document also holds a digest of its inputs, so a test can tell a changed core
from changed inputs.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from typing import Any

import orjson

from tests.chaos.test_scenarios import hostile_records, records_for_time
from tests.golden import adversarial
from tests.golden.core import Arrival, OfflineStage, ingest, new_stage, partition_of_key
from tests.golden.projection import Doc, profiles, project
from touchstream.bench.replay import bench_events
from touchstream.config.rules import Rules, load_rules
from touchstream.domain.clock import MS_PER_DAY, MS_PER_HOUR
from touchstream.simulator.traffic import Record, Traffic

NOW_MS = 1_795_400_000_000  # as bench/core_speed.py: nothing depends on the day it runs
# once the traffic stops, the idle fallback moves every clock on: past the cart reminders,
# session ends, anonymous expiry, tier grace, RFM steps and points expiry (365 days): an hour at
# a time for two days, then a day at a time, so each trigger is fresh when its timer fires
IDLE_STEPS_MS = (
    *(h * MS_PER_HOUR for h in range(1, 49)),
    *(d * MS_PER_DAY for d in range(3, 401)),
)

BENCH_EVENTS = 5_000
BENCH_CUSTOMERS = 500
BENCH_PARTITIONS = 8  # as touchstream.bench.replay

CHAOS_EVENTS = 2_400  # the short form of the chaos scenarios
CHAOS_CUSTOMERS = 150
CHAOS_STEP_MS = 100
CHAOS_PARTITIONS = 4  # inbound and customer-events, as tests/chaos/harness.py
TOPIC_IDS = ("golden-touchpoints-0001", "golden-privileged-0001")


def digest(inputs: Any) -> str:
    return hashlib.sha256(orjson.dumps(inputs, option=orjson.OPT_SORT_KEYS)).hexdigest()


def settle(stage: OfflineStage, rules: Rules, last_ms: int, refused: list[list[Any]]) -> Doc:
    """The projection once the traffic stopped, with the profiles as served then, before the
    idle fallback moves each clock on to ``last_ms`` + each step (after a year idle, points
    have expired and tiers lapsed: the profiles at both moments are compared)."""
    stage.drain().tick(0, last_ms)  # a timer already due when it was set fires now
    when_traffic_stops = profiles(stage.table, rules)
    for step in IDLE_STEPS_MS:
        stage.tick(last_ms + step, last_ms + step)
    doc = project(stage.table, stage.decisions, rules, refused)
    return {"profiles_when_traffic_stops": when_traffic_stops, **doc}


def bench() -> Doc:
    rules = load_rules(None)
    events = bench_events(BENCH_EVENTS, BENCH_CUSTOMERS, NOW_MS)
    stage = new_stage(rules, BENCH_PARTITIONS)
    stage.submit(events)
    return {"inputs_sha256": digest(events), **settle(stage, rules, NOW_MS, [])}


def chaos_records() -> list[Record]:
    traffic = Traffic(customers=CHAOS_CUSTOMERS, seed=12, malformed=0.05)
    start = NOW_MS - CHAOS_EVENTS * CHAOS_STEP_MS - 60_000
    records = [traffic.next(start + i * CHAOS_STEP_MS) for i in range(CHAOS_EVENTS)]
    rng = random.Random(29)
    out: list[Record] = []
    for record in records:
        if not record.malformed and rng.random() < 0.02:  # a device's clock hours ahead
            event = orjson.loads(record.value)
            event["occurred_at"] = NOW_MS + rng.randint(1, 23 * 60) * 60_000
            record = Record(record.key, orjson.dumps(event), privileged=record.privileged)
        out.append(record)
        if rng.random() < 0.05:  # the producer retried: the same record again, a new offset
            out.append(record)
    events = [orjson.loads(r.value) for r in records if not r.malformed]
    at = records_for_time([r for r in records if not r.malformed])
    for record in hostile_records(rng, [e["identity"] for e in events], at):
        out.insert(rng.randrange(len(out) + 1), record)
    return out


def chaos_arrivals(records: list[Record]) -> list[Arrival]:
    """Produced one a millisecond just before NOW_MS, read at NOW_MS: each input partition
    in offset order, the partitions interleaved by record timestamp."""
    offsets: dict[tuple[bool, int], int] = {}
    lanes: dict[tuple[bool, int], list[Arrival]] = {}
    for i, record in enumerate(records):
        lane = (record.privileged, partition_of_key(record.key, CHAOS_PARTITIONS))
        offset = offsets.get(lane, 0)
        offsets[lane] = offset + 1
        sent = NOW_MS - len(records) + i
        arrival = Arrival(record.value, record.privileged, lane[1], offset, sent, NOW_MS)
        lanes.setdefault(lane, []).append(arrival)
    merged = heapq.merge(*(lanes[k] for k in sorted(lanes)), key=lambda a: a.broker_ms)
    return list(merged)


def chaos() -> Doc:
    rules = load_rules(None)
    records = chaos_records()
    arrivals = chaos_arrivals(records)
    events, refused = ingest(arrivals, rules, TOPIC_IDS)
    stage = new_stage(rules, CHAOS_PARTITIONS)
    stage.submit(events)
    inputs = digest([[(r.key or b"").hex(), r.value.hex(), r.privileged] for r in records])
    return {"inputs_sha256": inputs, **settle(stage, rules, NOW_MS, refused)}


def adversarial_set() -> Doc:
    rules = adversarial.RULES
    sequences: dict[str, Doc] = {}
    inputs = {}
    for name, arrivals in adversarial.sequences().items():
        inbound = [
            Arrival(orjson.dumps(event), privileged, 0, offset, read_ms, read_ms)
            for offset, (event, read_ms, privileged) in enumerate(arrivals)
        ]
        events, refused = ingest(inbound, rules)
        stage = new_stage(rules, adversarial.PARTITIONS)
        for event in events:  # each record settles before the next arrives
            stage.submit([event])
            stage.drain().tick(0, event["ts"])  # a timer a late event set, already due
        inputs[name] = [[e, t, p] for e, t, p in arrivals]
        sequences[name] = settle(stage, rules, max(t for _, t, _ in arrivals), refused)
    return {"inputs_sha256": digest(inputs), "sequences": sequences}


DATASETS: dict[str, Callable[[], Doc]] = {
    "bench": bench,
    "chaos": chaos,
    "adversarial": adversarial_set,
}
