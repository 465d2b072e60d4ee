"""The foundation end to end: touchpoints -> ingest -> per-customer stage -> Redis + topics."""

from __future__ import annotations

import time

import orjson
import pytest
import redis

from touchstream.runtime.kafka_io import covered_events, produce, read_updates
from touchstream.runtime.stack import Stack
from touchstream.simulator.factory import event, purchase

pytestmark = pytest.mark.integration


def wait_for_profile(stack: Stack, customer_id: str, version: int, timeout_s: float = 20.0):
    client = redis.Redis.from_url(stack.redis.url(stack.redis_db), decode_responses=True)
    deadline = time.monotonic() + timeout_s
    profile: dict[str, str] = {}
    while time.monotonic() < deadline:
        profile = client.hgetall(f"ts:profile:{customer_id}")
        if profile and int(profile["version"]) >= version:
            return profile
        time.sleep(0.1)
    raise AssertionError(f"profile {customer_id} not at version {version}: {profile}")


def topic(stack: Stack, name: str) -> str:
    return stack.settings["topic_prefix"] + name


def test_purchases_earn_points_served_from_redis_and_http(stack: Stack) -> None:
    worker = stack.start_worker()
    worker.wait_ready()
    crm = {"customer_id": "crm-1001"}
    events = [
        purchase(crm, "o-1", 12_550),  # 125 points
        purchase(crm, "o-2", 5_000, discount_minor=1_000),  # 40 points on the net 40.00
        event("page_view", crm, {"url": "https://shop.example.com/"}),
    ]
    produce(stack.broker.bootstrap, topic(stack, "touchpoints"), [(b"crm-1001", e) for e in events])

    profile = wait_for_profile(stack, "crm-1001", version=3)
    assert profile["points"] == "165"
    assert profile["qualifying_spend_minor"] == "16550"
    assert profile["tier"] == "member"

    status, body = worker.get("/customers/crm-1001")
    assert status == 200
    view = orjson.loads(body)
    assert view["points"] == 165 and view["version"] == 3 and view["customer_id"] == "crm-1001"
    assert worker.get("/customers/nobody")[0] == 404

    ids = [e["event_id"] for e in events]
    updates = read_updates(stack.broker.bootstrap, topic(stack, "profiles.updates"), ids)
    # every event covered once, in order, by updates of the one customer: a worker that read
    # them in one fetch sends one update after all three, naming each (coalesced)
    assert covered_events(updates) == ids
    assert all(u.json()["event_id"] == u.json()["event_ids"][-1] for u in updates)
    assert sum(u.json()["events_covered"] for u in updates) == 3
    assert {u.key for u in updates} == {b"crm-1001"}


def test_the_same_purchase_delivered_three_times_earns_once(stack: Stack) -> None:
    worker = stack.start_worker()
    worker.wait_ready()
    shopper = {"loyalty_id": "L-77"}
    sale = purchase(shopper, "o-77", 20_000)
    # the producer retried twice (same event id) and a POS re-sent it under a new event id
    resent = dict(sale, event_id=sale["event_id"] + "-resend")
    marker = event("page_view", shopper, {"url": "https://shop.example.com/"})
    produce(
        stack.broker.bootstrap,
        topic(stack, "touchpoints"),
        [(b"L-77", sale), (b"L-77", sale), (b"L-77", resent), (b"L-77", marker)],
    )

    applied = [sale["event_id"], resent["event_id"], marker["event_id"]]
    updates = read_updates(stack.broker.bootstrap, topic(stack, "profiles.updates"), applied)
    assert sorted(covered_events(updates)) == sorted(applied)  # the redelivery: no update
    customer_id = updates[-1].json()["customer_id"]
    profile = wait_for_profile(stack, customer_id, version=3)
    assert profile["points"] == "200"
    assert profile["orders"] == "1"
    _, body = worker.get("/metrics")
    assert b"touchstream_duplicates_skipped_total" in body
    skipped = [
        line
        for line in body.decode().splitlines()
        if line.startswith("touchstream_duplicates_skipped_total")
    ]
    assert skipped and float(skipped[0].rsplit(" ", 1)[1]) == 1.0


def test_state_survives_a_killed_worker_and_redelivery_is_not_double_counted(
    stack: Stack,
) -> None:
    worker = stack.start_worker(name="first")
    worker.wait_ready()
    shopper = {"customer_id": "crm-9"}
    first = [purchase(shopper, f"o-{i}", 1_000) for i in range(5)]
    produce(stack.broker.bootstrap, topic(stack, "touchpoints"), [(b"crm-9", e) for e in first])
    wait_for_profile(stack, "crm-9", version=5)
    worker.child.kill()  # kill -9: offsets may not be committed, the changelog has the state

    restarted = stack.start_worker(name="second")
    restarted.wait_ready()
    second = [purchase(shopper, f"o-{i}", 1_000) for i in range(5, 8)]
    produce(stack.broker.bootstrap, topic(stack, "touchpoints"), [(b"crm-9", e) for e in second])
    profile = wait_for_profile(stack, "crm-9", version=8)
    time.sleep(1.0)  # any redelivered duplicate would land now
    profile = redis.Redis.from_url(stack.redis.url(stack.redis_db), decode_responses=True).hgetall(
        "ts:profile:crm-9"
    )
    assert profile["points"] == "80"
    assert profile["version"] == "8"
    assert profile["orders"] == "8"


def test_profiles_come_back_after_redis_loses_its_data(stack: Stack) -> None:
    worker = stack.start_worker()
    worker.wait_ready()
    produce(
        stack.broker.bootstrap,
        topic(stack, "touchpoints"),
        [(b"crm-5", purchase({"customer_id": "crm-5"}, "o-5", 4_200))],
    )
    wait_for_profile(stack, "crm-5", version=1)

    client = redis.Redis.from_url(stack.redis.url(stack.redis_db), decode_responses=True)
    client.flushdb()  # as a Redis restarted without persistence would be

    # no new event for this customer: the worker notices and rewrites what its table holds
    profile = wait_for_profile(stack, "crm-5", version=1, timeout_s=15)
    assert profile["points"] == "42"
    assert worker.metrics()["touchstream_redis_resyncs_total"] >= 1
