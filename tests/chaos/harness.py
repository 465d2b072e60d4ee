"""The reliability harness: the running system compared, customer by customer, with the oracle.

The oracle is the pure per-customer core replayed offline (``touchstream.offline.OfflineStage``)
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
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client.parser import text_string_to_metric_families

from touchstream.config.rules import Rules
from touchstream.config.settings import DEV_HMAC_SECRET, Settings
from touchstream.domain.identity import IdentityNormaliser
from touchstream.domain.ingest import Ingest
from touchstream.domain.privileged import requires_privilege
from touchstream.domain.profile import project
from touchstream.domain.records import Redirect
from touchstream.errors import PoisonEvent, PrivilegedOnPublicInput
from touchstream.offline import OfflineStage
from touchstream.runtime.kafka_io import Out, produce, read_topic
from touchstream.runtime.stack import Stack, WorkerProcess
from touchstream.schemas.decode import decode, load_validators
from touchstream.serving.keys import ALIAS_PREFIX, PROFILE_PREFIX, alias_key
from touchstream.simulator.traffic import Record, topic_for
from touchstream.streams import topics
from touchstream.streams.size_limits import KAFKA_DEFAULT_MESSAGE_MAX_BYTES, largest_value  # noqa: F401
from touchstream.streams.topic_identity import identity_of
from touchstream.tables.customers import CUSTOMERS_TABLE, decode_state

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
TRIGGER_DEADLINE_S = 60.0


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
    triggers: int = 0  # trigger ids the oracle proposed (delivered or audited)
    triggers_missing: int = 0  # proposed by the oracle, by the system under no such id
    triggers_other_id: int = 0  # proposed by the system under an id the oracle never gave
    # the same trigger, delivered by one and audited by the other: consent, caps and recency
    # are checked when the trigger is sent (docs/domain.md, "Guard chain"), against what the profile
    # holds at that moment, and a consent given on another partition may arrive before or after
    verdict_differs: int = 0
    linked_late: int = 0  # triggers that differ for shoppers linked late (``linked_late``)
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


def oracle(
    inbound: list[Out],
    rules: Rules,
    topic_id: str | dict[str, str] | None = None,
    excluded: frozenset[str] = frozenset(),
) -> tuple[OfflineStage, list[Out], int]:
    """The customer stage replayed offline over the inbound records in partition/offset order,
    without the events whose ids are ``excluded`` (quarantined by the system).

    ``topic_id``: the inbound topic's identity, as the ingest agent puts it on each internal
    event (``streams.topic_identity``), so the oracle keys its duplicate memory as live does;
    a dict gives each input topic's (``touchpoints`` and ``touchpoints.privileged``, whose
    records the oracle reads alike: a privileged command on the ordinary input is refused as
    ingest refuses it, ``domain.privileged``).

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
        identity = topic_id.get(r.topic) if isinstance(topic_id, dict) else topic_id
        try:
            decoded = decode(r.value or b"", defaults.max_event_bytes)
            if not r.topic.endswith(".privileged") and requires_privilege(decoded):
                raise PrivilegedOnPublicInput(r.topic)
            ev = ingest.normalise(decoded, now_ms, r.partition, r.offset, identity)
        except PoisonEvent:
            refused.append(r)
            continue
        ev["rt"] = min(r.timestamp, now_ms)  # as ingest: a CreateTime ahead is not believed
        if ev["id"] in excluded:
            continue
        internal.append(ev)
    stage = OfflineStage(
        rules, partitions=PARTITIONS, max_clock_skew_ms=defaults.max_clock_skew_s * 1000
    )
    stage.submit(internal)
    # (a merge leaves the merged ledger due at once: the live stage fires it with its next tick)
    stage = stage.drain().tick(0, now_ms)
    return stage, refused, len({ev["id"] for ev in internal})


def partition_clocks(workers: Sequence[WorkerProcess]) -> dict[int, int]:
    """Each customer-stage partition's event-time clock, as its owner reports it (ms)."""
    clocks: dict[int, int] = {}
    for worker in workers:
        if not worker.child.alive():
            continue
        try:
            _, body = worker.get("/metrics")
        except OSError:
            continue
        for family in text_string_to_metric_families(body.decode()):
            if family.name != "touchstream_partition_clock_seconds":
                continue
            for sample in family.samples:
                partition, ms = int(sample.labels["partition"]), int(sample.value * 1000)
                clocks[partition] = max(clocks.get(partition, ms), ms)  # clocks only advance
    return clocks


def catch_up(expected: OfflineStage, workers: Sequence[WorkerProcess]) -> None:
    """Move the oracle's partition clocks to the live ones, firing the same timers.

    Once the traffic stops, the workers' idle fallback moves each partition's clock on by the
    wall time elapsed since its last event, not counting the time a worker was down (a
    restarted worker resumes from the event time its profiles saw): so the oracle follows the
    clocks the workers report rather than the wall clock.
    """
    expected.tick(partition_clocks(workers), int(time.time() * 1000))


# -- what the running system serves --------------------------------------------------------


def redis_profiles(client: redis.Redis) -> dict[str, dict[str, str]]:
    keys = list(client.scan_iter(PROFILE_PREFIX + "*", count=1_000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    return {
        key[len(PROFILE_PREFIX) :]: value
        for key, value in zip(keys, pipe.execute(), strict=True)
        if value and "erased" not in value  # a tombstone of an erased profile: none
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


def changelog_differences(stack: Stack, expected: OfflineStage, rules: Rules) -> list[str]:
    """Every way the customers changelog, read as compaction keeps it (the last record of
    each key), differs from the oracle's table, one line each (empty: equal).

    This is what the next recovery builds on. Redis alone cannot show a state that went
    back: its versioned writes keep the newer profile it was given, while a late write of an
    older state, the last record of its key, is what every later owner of the partition
    restores (docs/design/late-writes.md)."""
    name = f"{stack.settings['topic_prefix']}touchstream-{CUSTOMERS_TABLE}-changelog"
    records = sorted(
        read_topic(stack.broker.bootstrap, name), key=lambda r: (r.partition, r.offset)
    )
    table = {r.key.decode(): r.value for r in records if r.key is not None}
    problems: list[str] = []
    for cid in sorted(set(expected.table) | set(table)):
        want, raw = expected.table.get(cid), table.get(cid)
        got = decode_state(raw) if raw is not None else None
        # a redirect must lead where the oracle's does; an erasure marker's numbers may differ
        if type(want) is not type(got) or (
            isinstance(want, Redirect) and isinstance(got, Redirect) and want.into != got.into
        ):
            problems.append(f"{cid}: the oracle holds {want!r:.120}, the changelog {got!r:.120}")
            continue
        if isinstance(want, dict) and isinstance(got, dict):
            served, held = project(want, rules), project(got, rules)
            wrong = {f: (served[f], held[f]) for f in FIELDS if served[f] != held[f]}
            if wrong:
                problems.append(f"{cid}: changelog field (expected, last record): {wrong}")
    return problems


def _text(value: Any) -> str:
    """A profile field as Redis holds it (serving.keys: None is stored as an empty string)."""
    return "" if value is None else str(value)


def wait_until_equal(
    client: redis.Redis,
    expected: OfflineStage,
    rules: Rules,
    workers: Sequence[WorkerProcess],
    timeout_s: float,
) -> list[str]:
    deadline = time.monotonic() + timeout_s
    catch_up(expected, workers)
    problems = differences(client, expected, rules)
    while problems and time.monotonic() < deadline:
        time.sleep(0.5)
        catch_up(expected, workers)
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
            # the partitions from a metadata answer of their own: consumer.topics() does not
            # update the cluster view partitions_for_topic reads (on Apache Kafka it stayed
            # empty, and every trigger looked missing)
            cluster = await consumer._client.fetch_all_metadata()
            present = names & cluster.topics()
            tps = [
                TopicPartition(name, p)
                for name in sorted(present)
                for p in sorted(cluster.partitions_for_topic(name) or ())
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
        # privileged commands (consent grants) to the privileged input, as a deployment
        for name in (touchpoints, topics.privileged_input(touchpoints)):
            mine = [(r.key, r.value) for r in part if topic_for(r, touchpoints) == name]
            if mine:
                produce(stack.broker.bootstrap, name, mine)
        between(i)


def read_inputs(stack: Stack, records: Sequence[Record]) -> list[Out]:
    """Every record of both inputs (``touchpoints`` and ``touchpoints.privileged``)."""
    touchpoints = topic(stack, "touchpoints")
    out = []
    for name in (touchpoints, topics.privileged_input(touchpoints)):
        expect = sum(1 for r in records if topic_for(r, touchpoints) == name)
        if expect:
            out += read_topic(stack.broker.bootstrap, name, expect=expect, timeout_s=60)
    return out


def rewind_group(stack: Stack, name: str, back: int) -> int:
    """Move the workers' group back by ``back`` records in all on ``name``; returns how many
    records, already applied, the next workers will read again.

    The workers must be stopped. This waits until the broker reports their group empty (a
    worker that had to be killed stays a member until its session expires), then commits
    the earlier offsets for every partition without joining the group: the broker accepts
    such a commit only while the group is empty, so nothing can race it. A partition with
    nothing committed yet (a worker stopped within its first commit interval, or right after
    a rebalance) is read again from its beginning anyway, so it is left as it is.
    """
    group = stack.settings["app_id"]

    async def run() -> int:
        full = topic(stack, name)
        await _wait_empty(stack.broker.bootstrap, group)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=stack.broker.bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            cluster = await consumer._client.fetch_all_metadata()
            tps = [
                TopicPartition(full, p) for p in sorted(cluster.partitions_for_topic(full) or ())
            ]
            assert tps, f"{full} has no partitions"
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            per = -(-back // len(tps))
            resume = {tp: await consumer.committed(tp) or 0 for tp in tps}
            target = {tp: min(resume[tp], max(0, ends[tp] - per)) for tp in tps}
            await consumer.commit({tp: o for tp, o in target.items() if o < resume[tp]})
            return sum(ends[tp] - target[tp] for tp in tps)
        finally:
            await consumer.stop()

    return asyncio.run(run())


async def _wait_empty(bootstrap: str, group: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + REWIND_TIMEOUT_S
        while True:
            [response] = await admin.describe_consumer_groups([group])
            error_code, _, state, *_ = response.groups[0]
            if not error_code and state in ("Empty", "Dead"):
                return
            assert time.monotonic() < deadline, f"group {group} still {state!r}"
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


# -- the verdict ----------------------------------------------------------------------------


def settle_and_compare(
    stack: Stack,
    rules: Rules,
    tally: Tally,
    workers: Sequence[WorkerProcess],
    expect_inbound: int,
    started: float,
    excluded: frozenset[str] = frozenset(),
) -> tuple[OfflineStage, list[Out]]:
    """Wait for the lag to drain, then hold the system to the oracle; fills the tally."""
    inbound = read_topic(stack.broker.bootstrap, topic(stack, "touchpoints"), timeout_s=60)
    privileged = topic(stack, "touchpoints.privileged")
    inbound += read_topic(
        stack.broker.bootstrap, privileged, expect=expect_inbound - len(inbound), timeout_s=60
    )
    assert len(inbound) == expect_inbound, f"{len(inbound)} inbound records of {expect_inbound}"
    # both inputs, each with its own identity (the oracle reads them as the ingest stages do)
    ids = {
        name: asyncio.run(identity_of(stack.broker.bootstrap, name))
        for name in (topic(stack, "touchpoints"), privileged)
    }
    expected, refused, distinct = oracle(inbound, rules, ids, excluded)
    tally.events_in = len(inbound)
    tally.distinct_valid = distinct
    tally.customers = len(expected.live())
    client = redis.Redis.from_url(stack.redis.url(stack.redis_db), decode_responses=True)
    settled_s = time.monotonic() - started
    try:
        problems = wait_until_equal(client, expected, rules, workers, SETTLE_DEADLINE_S)
        if not problems:
            time.sleep(1.5)  # anything still redelivered or in flight would change a profile now
            catch_up(expected, workers)
            problems = differences(client, expected, rules)
        if not problems:  # what the next recovery would build on, which Redis can hide
            problems = changelog_differences(stack, expected, rules)
        tally.differing = len({p.split(":", 1)[0] for p in problems})
        tally.applied = applied_touchpoints(client)
    finally:
        client.close()
    tally.duplicates_skipped = int(metric(workers, "touchstream_duplicates_skipped_total"))
    read_at = time.monotonic()
    # a trigger a timer proposes changes no compared field: it may come with the last idle
    # tick (idle_fallback_s after the traffic), after the profiles already matched; the
    # clocks are read before the topics, so the oracle is never ahead of what was read
    while True:
        catch_up(expected, workers)
        proposed = {
            d.payload["trigger_id"]: d.payload
            for d in expected.decisions
            if d.kind.startswith("trigger_")
        }
        got = {t["trigger_id"]: t for t in read_triggers(stack)}
        missing, other = trigger_gaps(expected, proposed, got)
        # a partition's owner reports its clock from its first batch or idle tick there on
        reported = set(partition_clocks(workers)) == set(range(PARTITIONS))
        if (reported and not (missing or other)) or time.monotonic() - read_at > TRIGGER_DEADLINE_S:
            break
        time.sleep(1.0)
    read_s = time.monotonic() - read_at
    # the clocks the oracle followed were really reported, for every partition
    assert set(partition_clocks(workers)) == set(range(PARTITIONS)), "partition clocks missing"
    tally.triggers = len(proposed)
    tally.triggers_missing = len(missing)
    tally.triggers_other_id = len(other)
    tally.linked_late = len(set(proposed) ^ set(got)) - len(missing) - len(other)
    tally.verdict_differs = sum(
        1
        for tid in set(proposed) & set(got)
        if ("suppressed_reason" in proposed[tid]) != ("suppressed_reason" in got[tid])
    )
    tally.wall_s = time.monotonic() - started
    TALLIES.append(tally)
    print(f"{tally.scenario}: compared after {settled_s:.1f}s, triggers read in {read_s:.1f}s")
    assert not problems, report(problems, expected)
    if tally.applied != distinct:
        kept = stack.workdir / "inbound.pickle"  # to replay the oracle offline
        kept.write_bytes(pickle.dumps((inbound, ids, excluded)))
        counted_twice = {
            cid: (sum(s["events"].values()), len(s["seen"]))
            for cid, s in expected.live().items()
            if sum(s["events"].values()) != len(s["seen"])
        }
        raise AssertionError(
            f"{tally.applied} touchpoints applied of {distinct}; the oracle's profiles whose "
            f"touchpoints are not their remembered event ids (touchpoints, ids): "
            f"{counted_twice}; inbound kept in {kept}"
        )
    # every trigger the oracle proposed, under the same trigger_id, and no other (but for the
    # shoppers whose profiles each decided something before they were linked)
    assert not missing and not other, (
        f"triggers the oracle proposed and the system did not: {_named(proposed, missing)}; "
        f"the other way round: {_named(got, other)}"
    )
    return expected, refused


def trigger_gaps(
    expected: OfflineStage, proposed: dict[str, Any], got: dict[str, Any]
) -> tuple[set[str], set[str]]:
    """Trigger ids the oracle proposed and the system did not, and the other way round, but
    for shoppers linked late."""
    linked = linked_late(expected, [*proposed.values(), *got.values()])
    missing = {t for t in set(proposed) - set(got) if _person(expected, proposed[t]) not in linked}
    other = {t for t in set(got) - set(proposed) if _person(expected, got[t]) not in linked}
    return missing, other


def _person(expected: OfflineStage, trigger: dict[str, Any]) -> str:
    return expected.resolve(trigger["customer_id"]) or trigger["customer_id"]


def linked_late(expected: OfflineStage, triggers: list[dict[str, Any]]) -> set[str]:
    """Shoppers whose profiles each earned points or were proposed a trigger before their
    identifiers were linked (seen in the oracle or the live system).

    Such a shopper's balance crossed a reward threshold, or reached a tier, once per profile
    or once in the merged one, depending on whether the link was read before or after each
    crossing, and a return or order read on the other side of the link moves the balance
    through other values on the way to the same end. Triggers are decided when the event is
    read, so the live system and the oracle may send different ones for them; their profiles
    still end equal, and every other shopper's triggers must match exactly.
    """
    ids: dict[str, set[str]] = {}
    for d in expected.decisions:
        if d.kind == "loyalty" and d.payload["outcome"] in ("points_earned", "signup_bonus"):
            ids.setdefault(_person(expected, d.payload), set()).add(d.payload["customer_id"])
    for trigger in triggers:
        ids.setdefault(_person(expected, trigger), set()).add(trigger["customer_id"])
    return {person for person, profiles in ids.items() if len(profiles) > 1}


def _named(triggers: dict[str, dict[str, Any]], ids: set[str]) -> list[tuple[str, str, str]]:
    return sorted(
        (t["customer_id"], t["type"], t["occurred_at"]) for t in map(triggers.get, ids) if t
    )[:5]


def records_for(traffic: Any, count: int, step_ms: int) -> list[Record]:
    start = int(time.time() * 1000) - count * step_ms - 60_000
    return [traffic.next(start + i * step_ms) for i in range(count)]


# -- the broker's limits ------------------------------------------------------------------

# what the outbox checks every record against (touchstream/streams/size_limits.py)
KAFKA_DEFAULT_MAX_MESSAGE_BYTES = KAFKA_DEFAULT_MESSAGE_MAX_BYTES


def max_message_bytes(stack: Stack, name: str) -> int:
    """The topic's ``max.message.bytes`` as the broker reports it (its default without one)."""

    async def run() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.broker.bootstrap)
        await admin.start()
        try:
            resource = ConfigResource(ConfigResourceType.TOPIC, topic(stack, name))
            (response,) = await admin.describe_configs([resource])
            for _, _, _, _, entries in response.resources:
                for entry in entries:
                    if entry[0] == "max.message.bytes" and entry[1] is not None:
                        return int(entry[1])
            return KAFKA_DEFAULT_MAX_MESSAGE_BYTES
        finally:
            await admin.close()

    return asyncio.run(run())


async def set_max_message_bytes(stack: Stack, name: str, limit: int) -> None:
    """Lower (or raise) a topic's ``max.message.bytes`` while workers run."""
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.broker.bootstrap)
    await admin.start()
    try:
        resource = ConfigResource(
            ConfigResourceType.TOPIC, topic(stack, name), {"max.message.bytes": str(limit)}
        )
        await admin.alter_configs([resource])
    finally:
        await admin.close()
