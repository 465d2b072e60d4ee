"""The reliability harness: the running system compared, customer by customer, with the oracle.

The oracle is the pure per-customer core replayed offline (``domain.offline.OfflineStage``)
over the very records of the touchpoints topic, in partition/offset order, decoded and
normalised exactly as the ingest agent does. A scenario disturbs the running workers (kills,
rebalances, duplicates, a rewound consumer group, a Redis outage, poison) while the traffic
flows; once the lag drained, Redis must hold what the oracle holds and the trigger topics
every trigger the oracle emitted, under the same ``trigger_id``.

``TOUCHSTREAM_CHAOS=long`` (``make chaos``) runs every scenario at full size; ``make test``
runs the short form. Each scenario's tally is printed in the summary table (``conftest.py``).
"""

from __future__ import annotations

import asyncio
import heapq
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from touchstream.config.rules import Rules
from touchstream.config.settings import DEV_HMAC_SECRET, Settings
from touchstream.domain.identity import IdentityNormaliser
from touchstream.domain.ingest import Ingest
from touchstream.domain.offline import OfflineStage
from touchstream.domain.profile import project
from touchstream.errors import PoisonEvent
from touchstream.runtime.kafka_io import Out, produce, read_topic
from touchstream.runtime.stack import Stack, WorkerProcess
from touchstream.schemas.decode import decode, load_validators
from touchstream.serving.keys import ALIAS_PREFIX, PROFILE_PREFIX, alias_key
from touchstream.simulator.traffic import Record
from touchstream.streams import topics

LONG = os.environ.get("TOUCHSTREAM_CHAOS", "short") == "long"
PARTITIONS = 4
FIELDS = (
    "touchpoints",
    "points",
    "orders",
    "qualifying_spend_minor",
    "open_cart_value_minor",
    "tier",
    "segment",
)
SETTLE_DEADLINE_S = 240.0 if LONG else 90.0
REWIND_TIMEOUT_S = 90.0  # the workers' session timeout is 30 s
# the oracle ticks to the wall time it was built at; a restarted worker does not count its
# downtime as idle time, so its clock needs about that much longer to get there
TRIGGER_DEADLINE_S = 90.0


@dataclass
class Tally:
    scenario: str
    events_in: int = 0  # records produced, duplicates and poison included
    distinct_valid: int = 0  # what the oracle applies: each valid event once
    applied: int = 0  # touchpoints the served profiles count
    duplicates_skipped: int = 0  # by the workers alive at the end (a killed one's count is lost)
    dead_lettered: int = 0
    customers: int = 0
    differing: int = 0
    triggers: int = 0
    triggers_missing: int = 0  # delivered by the oracle, not under the same id by the system
    triggers_other_id: int = 0  # delivered by the system under an id the oracle did not deliver
    wall_s: float = 0.0


TALLIES: list[Tally] = []


def topic(stack: Stack, name: str) -> str:
    return stack.settings["topic_prefix"] + name


def metric(workers: Sequence[WorkerProcess], name: str) -> float:
    total = 0.0
    for worker in workers:
        if not worker.child.alive():
            continue
        try:
            total += worker.metrics().get(name, 0.0)
        except OSError:
            continue  # not listening (yet): counts nothing
    return total


def wait_applied(workers: Sequence[WorkerProcess], at_least: float, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while metric(workers, "touchstream_events_applied_total") < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} events applied in {timeout_s}s"
        time.sleep(0.05)


# -- the oracle ----------------------------------------------------------------------------


def arrival_order(inbound: list[Out]) -> list[Out]:
    """Each partition in offset order, the partitions interleaved by record timestamp: the order
    in which a live ingest stage meets them (the partition clocks then move as they do live)."""
    by_partition: dict[int, list[Out]] = {}
    for r in sorted(inbound, key=lambda r: (r.partition, r.offset)):
        by_partition.setdefault(r.partition, []).append(r)
    return list(heapq.merge(*by_partition.values(), key=lambda r: r.timestamp))


def oracle(inbound: list[Out], rules: Rules) -> tuple[OfflineStage, list[Out], int]:
    """The customer stage replayed offline over the inbound records in partition/offset order.

    Returns the stage, the records ingest refuses (they belong in the DLQ) and the number of
    distinct valid events.
    """
    load_validators()
    defaults = Settings()
    normaliser = IdentityNormaliser(
        DEV_HMAC_SECRET, rules.identity.blocked_values, rules.identity.default_country_code
    )
    ingest = Ingest(rules.program, normaliser, defaults.future_tolerance_s * 1000)
    now_ms = int(time.time() * 1000)
    internal = []
    refused = []
    for r in arrival_order(inbound):
        try:
            ev = ingest.normalise(
                decode(r.value or b"", defaults.max_event_bytes), now_ms, r.partition, r.offset
            )
        except PoisonEvent:
            refused.append(r)
            continue
        ev["rt"] = r.timestamp
        internal.append(ev)
    stage = OfflineStage(rules, partitions=PARTITIONS)
    stage.submit(internal)
    # once the traffic stops, the live workers' idle fallback fires what each partition's clock
    # has passed (a merge leaves the merged ledger due at once): the same here
    stage = stage.drain().tick(0, now_ms)
    return stage, refused, len({ev["id"] for ev in internal})


# -- what the running system serves --------------------------------------------------------


def redis_profiles(client: redis.Redis) -> dict[str, dict[str, str]]:
    keys = list(client.scan_iter(PROFILE_PREFIX + "*", count=1_000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    return {
        key[len(PROFILE_PREFIX) :]: value
        for key, value in zip(keys, pipe.execute(), strict=True)
        if value
    }


def resolve(client: redis.Redis, profiles: dict[str, dict[str, str]], kind: str, value: str):
    """The live profile an identifier names in Redis, following ``merged_into`` hops."""
    customer_id = client.get(alias_key(kind, value))
    hops = []
    while customer_id is not None and "merged_into" in profiles.get(customer_id, {}):
        hops.append(customer_id)
        if len(hops) > 32:
            return f"<redirect loop {hops}>"
        customer_id = profiles[customer_id]["merged_into"]
    return customer_id


def differences(client: redis.Redis, expected: OfflineStage, rules: Rules) -> list[str]:
    """Every way Redis differs from the oracle, one readable line each (empty: equal)."""
    profiles = redis_profiles(client)
    live = {cid: p for cid, p in profiles.items() if "merged_into" not in p}
    want = expected.live()
    problems: list[str] = []
    for cid in sorted(set(want) - set(live)):
        where = profiles.get(cid, {}).get("merged_into")
        state = want[cid]
        problems.append(
            f"{cid}: live in the oracle (ids {state['identifiers']}), "
            + (f"Redis says merged_into {where}" if where else "no profile in Redis")
        )
    for cid in sorted(set(live) - set(want)):
        fields = {f: live[cid].get(f) for f in FIELDS}
        there = f"redirect to {expected.resolve(cid)}" if cid in expected.table else "unknown id"
        problems.append(f"{cid}: live in Redis {fields}, in the oracle: {there}")
    for cid in sorted(set(live) & set(want)):
        served = project(want[cid], rules)
        got = live[cid]
        wrong = {f: (served[f], got.get(f)) for f in FIELDS if _text(served[f]) != got.get(f, "")}
        if wrong:
            problems.append(f"{cid}: field (expected, in Redis): {wrong}")
    for cid in sorted(want):
        for kind, values in want[cid]["identifiers"].items():
            for value in values:
                at = resolve(client, profiles, kind, value)
                if at != cid:
                    problems.append(f"{cid}: {ALIAS_PREFIX}{kind}:{value[:16]}... resolves to {at}")
    return problems


def _text(value: Any) -> str:
    """A profile field as Redis holds it (serving.keys: None is stored as an empty string)."""
    return "" if value is None else str(value)


def wait_until_equal(
    client: redis.Redis, expected: OfflineStage, rules: Rules, timeout_s: float
) -> list[str]:
    deadline = time.monotonic() + timeout_s
    problems = differences(client, expected, rules)
    while problems and time.monotonic() < deadline:
        time.sleep(0.5)
        problems = differences(client, expected, rules)
    return problems


def report(problems: list[str], expected: OfflineStage) -> str:
    head = "\n  ".join(problems[:15])
    return (
        f"Redis differs from the oracle in {len(problems)} ways "
        f"(oracle: {len(expected.live())} live profiles); first ones:\n  {head}"
    )


def applied_touchpoints(client: redis.Redis) -> int:
    return sum(
        int(p.get("touchpoints", 0))
        for p in redis_profiles(client).values()
        if "merged_into" not in p
    )


def read_triggers(stack: Stack) -> list[dict[str, Any]]:
    """Every trigger delivered or audited, from all trigger topics (one consumer for all)."""
    names = {topic(stack, name) for name in topics.TRIGGER_TOPICS.values()}
    names.add(topic(stack, topics.TRIGGERS_AUDIT))

    async def run() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=stack.broker.bootstrap, group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            present = names & await consumer.topics()
            tps = [
                TopicPartition(name, p)
                for name in sorted(present)
                for p in sorted(consumer.partitions_for_topic(name) or ())
            ]
            seen: list[dict[str, Any]] = []
            if not tps:
                return seen
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            quiet_since = time.monotonic()
            while time.monotonic() - quiet_since < 1.0:
                batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
                for records in batches.values():
                    quiet_since = time.monotonic()
                    seen.extend(orjson.loads(r.value) for r in records)
            return seen
        finally:
            await consumer.stop()

    return asyncio.run(run())


# -- disturbing the system ------------------------------------------------------------------


def send_chunks(
    stack: Stack, records: list[Record], chunks: int, between: Callable[[int], None]
) -> None:
    """Produce the records in ``chunks`` parts, calling ``between(i)`` after part ``i``."""
    size = -(-len(records) // chunks)
    touchpoints = topic(stack, "touchpoints")
    for i in range(chunks):
        part = records[i * size : (i + 1) * size]
        produce(stack.broker.bootstrap, touchpoints, [(r.key, r.value) for r in part])
        between(i)


class _FaustProtocol(RoundRobinPartitionAssignor):
    """Joins a Faust group: the broker refuses a member whose assignor protocol differs."""

    name = "faust"


def rewind_group(stack: Stack, name: str, back: int) -> int:
    """Move the workers' committed offsets on ``name`` back by ``back`` records in all.

    The workers must be stopped: this joins their group as its only member (the broker waits
    for the stopped members' sessions to expire), commits the earlier offsets and leaves.
    """

    async def run() -> int:
        full = topic(stack, name)
        consumer = AIOKafkaConsumer(
            full,
            bootstrap_servers=stack.broker.bootstrap,
            group_id=stack.settings["app_id"],
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(_FaustProtocol,),
        )
        await consumer.start()
        try:
            deadline = time.monotonic() + REWIND_TIMEOUT_S
            while not consumer.assignment():
                assert time.monotonic() < deadline, "could not join the workers' group"
                await consumer.getmany(timeout_ms=500)
            tps = sorted(consumer.assignment())
            committed = {tp: await consumer.committed(tp) or 0 for tp in tps}
            per = -(-back // len(tps))
            target = {tp: max(0, offset - per) for tp, offset in committed.items()}
            await consumer.commit(target)
            return sum(committed.values()) - sum(target.values())
        finally:
            await consumer.stop()

    return asyncio.run(run())


# -- the verdict ----------------------------------------------------------------------------


def settle_and_compare(
    stack: Stack,
    rules: Rules,
    tally: Tally,
    workers: Sequence[WorkerProcess],
    expect_inbound: int,
    started: float,
) -> tuple[OfflineStage, list[Out]]:
    """Wait for the lag to drain, then hold the system to the oracle; fills the tally."""
    inbound = read_topic(
        stack.broker.bootstrap, topic(stack, "touchpoints"), expect=expect_inbound, timeout_s=60
    )
    assert len(inbound) == expect_inbound, f"{len(inbound)} inbound records of {expect_inbound}"
    expected, refused, distinct = oracle(inbound, rules)
    tally.events_in = len(inbound)
    tally.distinct_valid = distinct
    tally.customers = len(expected.live())
    client = redis.Redis.from_url(stack.redis.url(stack.redis_db), decode_responses=True)
    settled_s = time.monotonic() - started
    try:
        problems = wait_until_equal(client, expected, rules, SETTLE_DEADLINE_S)
        if not problems:
            time.sleep(1.5)  # anything still redelivered or in flight would change a profile now
            problems = differences(client, expected, rules)
        tally.differing = len({p.split(":", 1)[0] for p in problems})
        tally.applied = applied_touchpoints(client)
    finally:
        client.close()
    tally.duplicates_skipped = int(metric(workers, "touchstream_duplicates_skipped_total"))
    proposals = [d.payload for d in expected.decisions if d.kind.startswith("trigger_")]
    want = {p["trigger_id"] for p in proposals if "suppressed_reason" not in p}
    read_at = time.monotonic()
    # a trigger a timer proposes changes no compared field: it may come with the last idle
    # tick (idle_fallback_s after the traffic), after the profiles already matched
    proposed = {(p["customer_id"], p["type"]) for p in proposals}
    seen = read_triggers(stack)
    while {(t["customer_id"], t["type"]) for t in seen} != proposed:
        if time.monotonic() - read_at > TRIGGER_DEADLINE_S:
            break
        time.sleep(1.0)
        seen = read_triggers(stack)
    read_s = time.monotonic() - read_at
    delivered = {t["trigger_id"] for t in seen if "suppressed_reason" not in t}
    tally.triggers = len(want)
    tally.triggers_missing = len(want - delivered)
    tally.triggers_other_id = len(delivered - want)
    # what each customer was proposed, delivered or audited, whatever the guards said
    got = {(t["customer_id"], t["type"]) for t in seen}
    tally.wall_s = time.monotonic() - started
    TALLIES.append(tally)
    print(f"{tally.scenario}: compared after {settled_s:.1f}s, triggers read in {read_s:.1f}s")
    assert not problems, report(problems, expected)
    assert tally.applied == distinct, f"{tally.applied} touchpoints applied of {distinct}"
    assert proposed == got, (
        f"triggers the oracle proposed and the system did not: {sorted(proposed - got)[:5]}; "
        f"the other way round: {sorted(got - proposed)[:5]}"
    )
    return expected, refused


def records_for(traffic: Any, count: int, step_ms: int) -> list[Record]:
    start = int(time.time() * 1000) - count * step_ms - 60_000
    return [traffic.next(start + i * step_ms) for i in range(count)]
