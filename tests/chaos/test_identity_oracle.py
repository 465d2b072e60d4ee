"""Identity resolution under at-least-once delivery and a crash is exact.

Simulated shoppers (web device, loyalty card, email, phone) are sent through two workers;
one is killed (kill -9) while it works and a third joins. Once the system settled, the
profiles in Redis must equal, customer by customer, the pure core replayed offline over the
very records of the touchpoints topic (``domain.offline.OfflineStage``: the oracle).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from touchstream.config.rules import Rules, load_rules
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
from touchstream.simulator.traffic import Traffic

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

EVENTS = 3_000
CHUNKS = 3
CUSTOMERS = 150
STEP_MS = 100
FIELDS = ("points", "orders", "qualifying_spend_minor", "open_cart_value_minor", "tier")
SETTLE_DEADLINE_S = 120.0
KILL_AFTER_APPLIED = 250


def topic(stack: Stack, name: str) -> str:
    return stack.settings["topic_prefix"] + name


def metric(workers: list[WorkerProcess], name: str) -> float:
    total = 0.0
    for worker in workers:
        try:
            total += worker.metrics().get(name, 0.0)
        except OSError:
            continue  # not listening (yet): counts nothing
    return total


# -- the oracle ----------------------------------------------------------------------------


def oracle(records: list[Out], rules: Rules, order: dict[tuple[int, int], int]) -> OfflineStage:
    """The per-customer stage replayed offline over the inbound records, as ingest sends them.

    Records go in the order they were produced (which keeps each partition's offset order);
    decoding and normalising is exactly what the ingest agent does with each record.
    """
    load_validators()
    defaults = Settings()
    normaliser = IdentityNormaliser(
        DEV_HMAC_SECRET, rules.identity.blocked_values, rules.identity.default_country_code
    )
    ingest = Ingest(rules.program, normaliser, defaults.future_tolerance_s * 1000)
    now_ms = int(time.time() * 1000)
    internal = []
    undecodable = []
    for r in sorted(records, key=lambda r: order.get((r.partition, r.offset), len(order))):
        try:
            ev = ingest.normalise(
                decode(r.value, defaults.max_event_bytes), now_ms, r.partition, r.offset
            )
        except PoisonEvent as exc:
            undecodable.append((r.partition, r.offset, exc.reason))
            continue
        ev["rt"] = r.timestamp
        internal.append(ev)
    assert not undecodable, f"the simulator produced records ingest refuses: {undecodable[:5]}"
    stage = OfflineStage(rules, partitions=4)
    stage.submit(internal)
    # once the traffic stops, the live workers' idle fallback fires what each partition's clock
    # has passed (a merge leaves the merged ledger due at once): the same here
    return stage.drain().tick(0, now_ms)


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
        wrong = {f: (served[f], got.get(f)) for f in FIELDS if str(served[f]) != str(got.get(f))}
        if wrong:
            problems.append(f"{cid}: field (expected, in Redis): {wrong}")
    for cid in sorted(want):
        for kind, values in want[cid]["identifiers"].items():
            for value in values:
                at = resolve(client, profiles, kind, value)
                if at != cid:
                    problems.append(f"{cid}: {ALIAS_PREFIX}{kind}:{value[:16]}... resolves to {at}")
    return problems


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


# -- the test ------------------------------------------------------------------------------


def test_profiles_after_a_crash_equal_the_core_replayed_offline(stack: Stack) -> None:
    rules = load_rules(None)
    w1 = stack.start_worker(name="w1")
    w2 = stack.start_worker(name="w2")
    w1.wait_ready()
    w2.wait_ready()

    traffic = Traffic(customers=CUSTOMERS, seed=7, malformed=0.0)
    start = int(time.time() * 1000) - EVENTS * STEP_MS - 60_000
    records = [traffic.next(start + i * STEP_MS) for i in range(EVENTS)]
    size = -(-EVENTS // CHUNKS)
    chunks = [records[i : i + size] for i in range(0, EVENTS, size)]
    touchpoints = topic(stack, "touchpoints")
    placed: list[tuple[int, int]] = []

    def send(chunk: list[Any]) -> None:
        placed.extend(
            produce(stack.broker.bootstrap, touchpoints, [(r.key, r.value) for r in chunk])
        )

    send(chunks[0])
    # kill w1 while the first chunk is being worked on: state, offsets and sends in flight
    deadline = time.monotonic() + 30
    while metric([w1, w2], "touchstream_events_applied_total") < KILL_AFTER_APPLIED:
        assert time.monotonic() < deadline, "the first chunk is not being applied after 30 s"
        time.sleep(0.05)
    w1.child.kill()  # kill -9 mid-stream: uncommitted offsets are redelivered to the others
    w3 = stack.start_worker(name="w3")
    send(chunks[1])
    w3.wait_ready()
    for chunk in chunks[2:]:
        send(chunk)
    order = {where: n for n, where in enumerate(placed)}
    assert len(order) == EVENTS

    inbound = read_topic(stack.broker.bootstrap, touchpoints, expect=EVENTS)
    assert sorted((r.partition, r.offset) for r in inbound) == sorted(order)
    expected = oracle(inbound, rules, order)

    # the oracle itself: every event applied exactly once, and identities really linked
    live = expected.live()
    assert sum(sum(s["events"].values()) for s in live.values()) == EVENTS
    redirects = len(expected.table) - len(live)
    merges = [d for d in expected.decisions if d.kind == "merged"]
    assert redirects > 0 and merges, "the traffic linked nothing: the test would prove nothing"
    assert len(live) >= CUSTOMERS // 2

    client = redis.Redis.from_url(stack.redis.url(stack.redis_db), decode_responses=True)
    problems = wait_until_equal(client, expected, rules, SETTLE_DEADLINE_S)
    assert not problems, report(problems, expected)
    time.sleep(1.5)  # anything still redelivered or in flight would change a profile now
    problems = differences(client, expected, rules)
    assert not problems, "after settling: " + report(problems, expected)

    survivors = [w2, w3]
    assert metric(survivors, "touchstream_identity_merges_total") > 0
    assert all(w.child.alive() for w in survivors)
