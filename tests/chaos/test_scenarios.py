"""Nothing lost, nothing counted twice: six ways to disturb a running system, each held to the
oracle customer by customer (``harness.py``). The hypothesis properties of the pure core (the
seventh scenario) live in tests/unit/domain/test_stage_properties.py and the decoder fuzz in
tests/unit/schemas/test_decode_fuzz.py.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import orjson
import pytest
from aiokafka.errors import MessageSizeTooLargeError

from tests.chaos.harness import (
    LONG,
    Tally,
    largest_value,
    max_message_bytes,
    metric,
    partition_clocks,
    read_inputs,
    records_for,
    rewind_group,
    send_chunks,
    set_max_message_bytes,
    settle_and_compare,
    topic,
    wait_applied,
)
from tests.conftest import start_test_kafka
from touchstream.config.rules import load_rules
from touchstream.config.settings import Settings
from touchstream.domain.bounds import MAX_LINE_MINOR, MAX_MONEY_MINOR, MAX_QUANTITY
from touchstream.runtime.embedded import start_redis
from touchstream.runtime.kafka_io import covered_events, produce, read_topic
from touchstream.runtime.stack import Stack, WorkerProcess
from touchstream.simulator.factory import event as factory_event
from touchstream.simulator.traffic import MALFORMED_KINDS, Record, Traffic
from touchstream.streams.isolation import STAGES as ALL_STAGES

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
# make test runs the short form of the scenarios marked chaos_short; make chaos runs them all
SHORT = pytest.mark.chaos_short
EVENTS = 12_000 if LONG else 2_400
CUSTOMERS = 600 if LONG else 150
STEP_MS = 100
RULES = load_rules(None)
# the stages an inbound event can raise in (internal: identity messages, never parked; timer:
# named by customer, not event)
STAGES = [s for s in ALL_STAGES if s not in ("internal", "timer")]


def _started(stack: Stack, *names: str) -> list[WorkerProcess]:
    workers = [stack.start_worker(name=name) for name in names]
    for worker in workers:
        worker.wait_ready()
    return workers


def test_kill_9_at_random_moments(stack: Stack) -> None:
    started = time.monotonic()
    rng = random.Random(91)
    workers = _started(stack, "w1", "w2")
    records = records_for(Traffic(customers=CUSTOMERS, seed=7), EVENTS, STEP_MS)
    kills = 3 if LONG else 1
    chunks = kills + 2

    def between(i: int) -> None:
        if i >= kills:
            return
        alive = [w for w in workers if w.child.alive()]
        applied = metric(alive, "touchstream_events_applied_total")
        wait_applied(alive, applied + rng.randint(50, 400))  # somewhere mid-chunk
        victim = rng.choice(alive)
        victim.child.kill()  # state, offsets and output in flight
        workers.append(stack.start_worker(name=f"w{len(workers) + 1}"))

    send_chunks(stack, records, chunks, between)
    survivors = [w for w in workers if w.child.alive()]
    tally = Tally("kill -9 a worker mid-stream" + (f" x{kills}" if kills > 1 else ""))
    expected, _ = settle_and_compare(stack, RULES, tally, survivors, len(records), started)
    # identities really linked across the kills, or the comparison would prove little
    assert len(expected.table) > len(expected.live()), "the traffic linked no identifiers"
    assert len(survivors) == 2 and all(w.child.alive() for w in survivors), "crash loop"


def test_workers_joining_and_leaving(stack: Stack) -> None:
    started = time.monotonic()
    workers = _started(stack, "w1", "w2")
    records = records_for(Traffic(customers=CUSTOMERS, seed=8), EVENTS, STEP_MS)
    changes = 6 if LONG else 3

    def between(i: int) -> None:
        if i >= changes:
            return
        alive = [w for w in workers if w.child.alive()]
        if len(alive) < 3:
            workers.append(stack.start_worker(name=f"w{len(workers) + 1}"))
        else:
            alive[0].stop()  # leaves the group gracefully: a rebalance, not a crash
        time.sleep(2.0)
        if stack.broker.kind != "embedded":
            return  # on Apache Kafka a member may leave mid-rebalance, as in production
        # Tansu only: the next change waits for this rebalance to end; its group coordinator,
        # left by a member in the middle of a rebalance, was seen to loop its survivors
        # through join and sync without ever assigning (Apache Kafka does not)
        for worker in workers:
            if worker.child.alive():
                worker.wait_ready()

    send_chunks(stack, records, changes + 1, between)
    survivors = [w for w in workers if w.child.alive()]
    tally = Tally(f"workers joining/leaving x{changes}")
    settle_and_compare(stack, RULES, tally, survivors, len(records), started)


@SHORT
def test_producer_duplicates_and_a_rewound_consumer_group(stack: Stack) -> None:
    started = time.monotonic()
    rng = random.Random(93)
    workers = _started(stack, "w1", "w2")
    unique = records_for(Traffic(customers=CUSTOMERS, seed=9), EVENTS, STEP_MS)
    records: list[Record] = []
    for record in unique:
        records.append(record)
        if rng.random() < 0.05:  # the producer retried: the same record again, a new offset
            records.append(record)
    send_chunks(stack, records, 2, lambda i: None)
    wait_applied(workers, len(unique), timeout_s=120)
    for worker in workers:
        worker.stop(timeout_s=60)  # graceful: offsets committed, the group empties
    back = 10_000 if LONG else 1_500
    rewound = rewind_group(stack, "touchpoints", back)
    assert rewound >= min(back, len(records)) * 0.9, f"rewound {rewound} records"
    workers = _started(stack, "w3", "w4")
    tally = Tally(f"5% producer duplicates + group rewound {rewound:,}")
    settle_and_compare(stack, RULES, tally, workers, len(records), started)
    # every re-read event was recognised: the rewound records were skipped, not applied
    assert tally.duplicates_skipped >= rewound * 0.9


@SHORT
def test_events_out_of_order_within_ten_minutes(stack: Stack) -> None:
    started = time.monotonic()
    rng = random.Random(94)
    workers = _started(stack, "w1", "w2")
    records = records_for(Traffic(customers=CUSTOMERS, seed=10), EVENTS, STEP_MS)
    window = 10 * 60_000 // STEP_MS  # records spanning 10 minutes of event time
    shuffled: list[Record] = []
    for i in range(0, len(records), window):
        block = records[i : i + window]
        rng.shuffle(block)
        shuffled.extend(block)
    send_chunks(stack, shuffled, 3, lambda i: None)
    tally = Tally("events out of order within 10 min")
    settle_and_compare(stack, RULES, tally, workers, len(records), started)


def test_redis_stopped_and_restarted_empty(stack: Stack) -> None:
    started = time.monotonic()
    own = start_redis(log_path=stack.workdir / "own-redis.log")
    stack.redis = own  # workers of this test use a Redis server the test may stop
    stack.redis_db = 0
    try:
        workers = _started(stack, "w1", "w2")
        records = records_for(Traffic(customers=CUSTOMERS, seed=11), EVENTS, STEP_MS)
        outage_s = 30.0 if LONG else 8.0

        def between(i: int) -> None:
            if i == 0:
                wait_applied(workers, 200)
                own.child.stop(timeout_s=5)  # gone, with everything it held
            elif i == 1:
                time.sleep(outage_s)
                stack.redis = start_redis(port=own.port, log_path=stack.workdir / "redis2.log")

        send_chunks(stack, records, 3, between)
        tally = Tally(f"Redis stopped {outage_s:.0f}s, restarted empty")
        settle_and_compare(stack, RULES, tally, workers, len(records), started)
        assert all(w.child.alive() for w in workers), "a worker died with Redis"
    finally:
        stack.redis.stop()
        if stack.redis is not own:
            own.workdir.cleanup()


@SHORT
def test_poison_pills_go_to_the_dlq_with_their_reason(stack: Stack) -> None:
    started = time.monotonic()
    workers = _started(stack, "w1", "w2")
    traffic = Traffic(customers=CUSTOMERS, seed=12, malformed=0.05)
    records = records_for(traffic, EVENTS, STEP_MS)
    # the largest record the broker accepts on touchpoints (1 MiB by default): its DLQ
    # record must fit under the same limit (schemas/dlq.py keeps a prefix, size and digest)
    limit = max_message_bytes(stack, "touchpoints")
    size = largest_value(limit, b"huge")
    head = b'{"event_id": "'
    huge = Record(b"huge", head + b"x" * (size - len(head) - 2) + b'"}', "too_large")
    assert len(huge.value) == size
    records.insert(len(records) // 2, huge)
    kinds = {r.malformed for r in records if r.malformed}
    assert kinds == set(MALFORMED_KINDS), f"kinds not produced: {set(MALFORMED_KINDS) - kinds}"
    send_chunks(stack, records, 2, lambda i: None)
    if stack.broker.kind == "kafka":  # one byte more is refused: it was the largest
        with pytest.raises(MessageSizeTooLargeError):
            produce(
                stack.broker.bootstrap, topic(stack, "touchpoints"), [(b"huge", huge.value + b" ")]
            )
    tally = Tally(f"poison pills (every kind, {len(huge.value):,} B)")
    _, refused = settle_and_compare(stack, RULES, tally, workers, len(records), started)
    pills = [r for r in records if r.malformed]
    assert len(refused) == len(pills)
    dlq = read_topic(
        stack.broker.bootstrap, topic(stack, "touchpoints.dlq"), expect=len(pills), timeout_s=60
    )
    tally.dead_lettered = len(dlq)
    by_place = {(d.json()["partition"], d.json()["offset"]): d.json()["reason"] for d in dlq}
    (biggest,) = [d.json() for d in dlq if d.key == b"huge"]
    assert biggest["value_truncated"] is True and biggest["value_size"] == len(huge.value)
    assert max(len(d.value or b"") for d in dlq) < limit
    # each refused record once, with the reason its kind must get
    assert len(by_place) == len(dlq) == len(pills)
    inbound = read_inputs(stack, records)
    kind_of = {r.value: r.malformed for r in records if r.malformed}
    for out in inbound:
        kind = kind_of.get(out.value or b"")
        if kind is None:
            continue
        assert by_place.get((out.partition, out.offset)) == MALFORMED_KINDS[kind], kind
    assert all(w.child.alive() for w in workers)


@SHORT
def test_the_broker_killed_and_restarted_on_its_log_directory(stack: Stack) -> None:
    """kill -9 of Apache Kafka mid-stream, back on the same log directory after longer than
    the workers' session timeout: the same worker processes carry on, nothing lost."""
    started = time.monotonic()
    own = start_test_kafka(stack.workdir / "own-kafka")
    stack.broker = own  # workers of this test use a broker the test may kill
    try:
        workers = _started(stack, "w1", "w2")
        pids = [w.child.pid for w in workers]
        records = records_for(Traffic(customers=CUSTOMERS, seed=13), EVENTS, STEP_MS)
        outage_s = 45.0 if LONG else 22.0
        down: list[float] = []

        def between(i: int) -> None:
            if i != 0:
                return
            applied = metric(workers, "touchstream_events_applied_total")
            wait_applied(workers, applied + 100)  # mid-stream: output and commits in flight
            own.kill()
            went = time.monotonic()
            time.sleep(outage_s)
            own.restart()
            down.append(time.monotonic() - went)

        send_chunks(stack, records, 3, between)
        tally = Tally(f"broker kill -9, back after {outage_s:.0f}s")
        settle_and_compare(stack, RULES, tally, workers, len(records), started)
        assert down and down[0] >= 20.0
        assert [w.child.pid for w in workers] == pids
        assert all(w.child.alive() for w in workers), "a worker died with the broker"
    finally:
        own.stop()


def test_future_dated_events_mixed_into_the_traffic(stack: Stack) -> None:
    """Events whose devices' clocks run hours ahead (within the day ingest accepts), mixed into
    normal traffic: each is applied at its claimed time, and no partition clock ever runs
    more than TOUCHSTREAM_MAX_CLOCK_SKEW_S past the broker time, so no other timer fires
    early (before the cap, the clocks jumped hours ahead and the carts of every partition
    were reminded at once)."""
    started = time.monotonic()
    rng = random.Random(95)
    workers = _started(stack, "w1", "w2")
    records = records_for(Traffic(customers=CUSTOMERS, seed=14), EVENTS, STEP_MS)
    now = int(time.time() * 1000)
    future = 0
    for i, record in enumerate(records):
        if rng.random() < 0.02:
            event = orjson.loads(record.value)
            event["occurred_at"] = now + rng.randint(1, 23 * 60) * 60_000
            records[i] = Record(record.key, orjson.dumps(event))
            future += 1

    send_chunks(stack, records, 2, lambda i: None)
    tally = Tally(f"{future} events dated 1 min..23 h ahead")
    settle_and_compare(stack, RULES, tally, workers, len(records), started)
    clocks = partition_clocks(workers)
    ahead = max(clocks.values()) - int(time.time() * 1000)
    assert ahead <= Settings().max_clock_skew_s * 1000, f"a partition clock ran {ahead} ms ahead"
    assert metric(workers, "touchstream_event_time_capped_total") >= 1
    assert all(w.child.alive() for w in workers)


def test_outputs_driven_past_the_size_limit_of_their_topic(stack: Stack) -> None:
    """``profiles.updates`` limited mid-stream to the median size of the updates so far: the
    larger profiles no longer fit. Each refused update is dead-lettered as ``output_refused``
    (the first at send time, the rest when added, once the worker read the new limit), nothing
    else waits for it, Redis and the triggers still match the oracle, and the same worker
    processes stay ready."""
    started = time.monotonic()
    workers = _started(stack, "w1", "w2")
    pids = [w.child.pid for w in workers]
    records = records_for(Traffic(customers=CUSTOMERS, seed=16), EVENTS, STEP_MS)
    updates_topic = topic(stack, "profiles.updates")
    limits: list[int] = []

    def between(i: int) -> None:
        if i != 0:
            return
        wait_applied(workers, EVENTS // 4)
        sizes = sorted(
            len(r.value or b"") for r in read_topic(stack.broker.bootstrap, updates_topic)
        )
        limits.append(sizes[len(sizes) // 2] + 64)  # about half of the profiles now too large
        asyncio.run(set_max_message_bytes(stack, "profiles.updates", limits[0]))

    send_chunks(stack, records, 2, between)
    tally = Tally(f"profiles.updates limited to {limits[0]:,} B mid-stream")
    settle_and_compare(stack, RULES, tally, workers, len(records), started)
    refused = [
        d.json()
        for d in read_topic(stack.broker.bootstrap, topic(stack, "touchpoints.dlq"))
        if d.json()["reason"] == "output_refused"
    ]
    tally.dead_lettered = len(refused)
    assert refused, "no profile update was over the lowered limit"
    assert {r["output_topic"] for r in refused} == {updates_topic}
    # checked when added: the record's size as a batch and the limit it was held to
    when_added = [r for r in refused if "limit_bytes" in r]
    assert when_added, "the worker never read the lowered limit"
    assert all(r["limit_bytes"] == limits[0] < r["record_batch_bytes"] for r in when_added)
    assert all(r["value_size"] > limits[0] - 200 for r in refused)
    # the later updates of the partitions still arrive: each customer's last delivered update
    # that fits is the newest fitting version, and updates keep coming after the refusals
    delivered = read_topic(stack.broker.bootstrap, updates_topic)
    assert len(covered_events(delivered)) > EVENTS // 2
    assert metric(workers, "touchstream_output_blocked") == 0
    assert [w.child.pid for w in workers] == pids
    for worker in workers:
        worker.wait_ready(30)


def test_a_fault_in_each_stage_is_quarantined_and_nothing_else_changes(stack: Stack) -> None:
    """Events chosen in advance raise in each stage (TOUCHSTREAM_FAULTS): exactly they are on
    the quarantine, where they were read, and everything else matches the oracle without them;
    the workers never restarted."""
    started = time.monotonic()
    records = records_for(Traffic(customers=CUSTOMERS, seed=27), EVENTS, STEP_MS)
    events = [orjson.loads(r.value) for r in records]
    counts = Counter(e["event_id"] for e in events)
    # events sent once that change a profile, so every stage is reached
    rng = random.Random(27)
    candidates = [
        e["event_id"]
        for e in events
        if counts[e["event_id"]] == 1 and e["type"] in ("purchase", "page_view", "add_to_cart")
    ]
    chosen = rng.sample(candidates, 2 * len(STAGES))
    stage_of = {event_id: STAGES[i // 2] for i, event_id in enumerate(chosen)}
    plan = ",".join(f"{stage}:{event_id}" for event_id, stage in stage_of.items())
    # hostile but valid records mixed in: every number, length and count at its bound
    # (domain/bounds.py); they must be applied like any other, never quarantined
    hostile = hostile_records(rng, [e["identity"] for e in events], records_for_time(records))
    for record in hostile:
        records.insert(rng.randrange(len(records) + 1), record)
    workers = [stack.start_worker(name=name, faults=plan) for name in ("w1", "w2")]
    for worker in workers:
        worker.wait_ready()
    pids = [w.child.pid for w in workers]
    send_chunks(stack, records, 2, lambda i: None)
    tally = Tally(f"faults in each stage ({len(chosen)}), {len(hostile)} at the bounds")
    settle_and_compare(stack, RULES, tally, workers, len(records), started, frozenset(chosen))

    bootstrap = stack.broker.bootstrap
    parked = read_topic(bootstrap, topic(stack, "touchstream.quarantine"), expect=len(chosen))
    inputs = {
        (r.topic, r.partition, r.offset): orjson.loads(r.value)["event_id"]
        for r in read_inputs(stack, records)
    }
    customer_events = {
        (r.partition, r.offset): orjson.loads(r.value)
        for r in read_topic(bootstrap, topic(stack, "touchstream.customer-events"))
    }
    found = {}
    for record in parked:
        entry = record.json()
        place = (entry["partition"], entry["offset"])
        if entry["topic"] in (topic(stack, "touchpoints"), topic(stack, "touchpoints.privileged")):
            event_id = inputs[(entry["topic"], *place)]
        else:
            assert entry["topic"] == topic(stack, "touchstream.customer-events")
            assert customer_events[place].get("k", "ev") == "ev"
            event_id = customer_events[place]["id"]
        assert entry["reason"] == "processing_failed"
        assert event_id not in found, f"{event_id} quarantined twice"
        found[event_id] = entry["stage"]
    assert found == stage_of
    assert metric(workers, "touchstream_quarantined_total") == len(chosen)
    assert [w.child.pid for w in workers] == pids and all(w.child.alive() for w in workers)


def records_for_time(records: list[Record]) -> int:
    """The event time (ms) of the middle of the traffic."""
    return int(orjson.loads(records[len(records) // 2].value)["occurred_at"])


def hostile_records(rng: random.Random, identities: list[dict[str, str]], at: int) -> list[Record]:
    """Valid events at every bound the contract sets: 128-character ids, 2,048-character URLs,
    the most lines an order may have at the largest quantity and line value, for new shoppers
    with identifiers of the longest length and for shoppers of the traffic."""
    long_id = "H" * 120
    line_price = MAX_LINE_MINOR // MAX_QUANTITY
    out = []
    for i in range(12):
        if i % 2:
            ident = rng.choice(identities)
        else:
            ident = {
                "customer_id": f"{long_id}{i:08d}",
                "email": f"{'e' * 60}{i:04d}@{'d' * 200}.example",
            }
        sku = f"{i:04d}" + "S" * 124
        lines = [
            {
                "sku": f"{n:04d}" + "S" * 124,
                "quantity": MAX_QUANTITY,
                "unit_price_minor": line_price,
            }
            for n in range(120)
        ]
        kinds = [
            (
                "purchase",
                {
                    "order_id": "O" * 118 + f"{i:010d}",
                    "total_minor": MAX_MONEY_MINOR,
                    "currency": "EUR",
                    "items": lines,
                },
            ),
            (
                "add_to_cart",
                {
                    "cart_id": "C" * 118 + f"{i:010d}",
                    "sku": sku,
                    "quantity": MAX_QUANTITY,
                    "unit_price_minor": line_price,
                    "currency": "EUR",
                },
            ),
            ("page_view", {"url": "https://shop.example/" + "p" * 2020 + f"{i:07d}"}),
        ]
        event_type, props = kinds[i % 3]
        ev = factory_event(
            event_type, ident, props, event_id="E" * 118 + f"{i:010d}", occurred_at=at + i
        )
        out.append(Record(orjson.dumps(ident), orjson.dumps(ev)))
    return out
