"""A record whose processing raises, in any stage, is quarantined with where it came from; the
rest of its batch is applied once, nothing of it survives, the worker does not restart, and
``dlq replay --from quarantine`` sends it back once the fault is gone."""

from __future__ import annotations

import asyncio
import base64
import time

import orjson
import pytest
import redis

from touchstream.runtime.dlq_replay import QUARANTINE_SOURCES, replay
from touchstream.runtime.kafka_io import covered_events, produce, read_topic, read_updates
from touchstream.runtime.stack import Stack
from touchstream.simulator.factory import purchase

pytestmark = pytest.mark.integration

SHOPPER = "crm-q"
# one faulty event per stage, between good ones (each order earns its amount / 100 points)
FAULTS = {
    "e-core": "core",
    "e-codec": "codec",
    "e-projection": "projection",
    "e-output": "output",
    "e-ingest": "ingest",
}
ORDER = ["e0", "e-core", "e1", "e-codec", "e-projection", "e2", "e-output", "e-ingest", "e3"]


def events() -> list[tuple[bytes, dict[str, object]]]:
    return [
        (SHOPPER.encode(), purchase({"customer_id": SHOPPER}, f"o-{i}", 1000, event_id=event_id))
        for i, event_id in enumerate(ORDER)
    ]


def profile(stack: Stack) -> dict[str, str]:
    client = redis.Redis.from_url(stack.redis.url(stack.redis_db), decode_responses=True)
    return client.hgetall(f"ts:profile:{SHOPPER}")


def wait_profile(stack: Stack, orders: int, timeout_s: float = 30.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        seen = profile(stack)
        if seen and int(seen["orders"]) >= orders:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"profile never reached {orders} orders: {seen}")


def test_a_fault_in_each_stage_is_quarantined_and_the_rest_applied_once(stack: Stack) -> None:
    plan = ",".join(f"{stage}:{event_id}" for event_id, stage in FAULTS.items())
    worker = stack.start_worker(faults=plan)
    worker.wait_ready()
    pid = worker.child.pid
    prefix = stack.settings["topic_prefix"]
    bootstrap = stack.broker.bootstrap
    positions = produce(bootstrap, prefix + "touchpoints", events())

    quarantined = read_topic(bootstrap, prefix + "touchstream.quarantine", expect=len(FAULTS))
    held = wait_profile(stack, orders=4)
    time.sleep(1.0)  # anything applied twice, or a faulty record's write, would land now
    held = profile(stack)
    assert held["orders"] == "4"
    assert held["points"] == "40"

    updates = read_updates(bootstrap, prefix + "profiles.updates", ["e0", "e1", "e2", "e3"])
    assert sorted(covered_events(updates)) == ["e0", "e1", "e2", "e3"]

    customer_events = {
        (r.partition, r.offset): orjson.loads(r.value)
        for r in read_topic(bootstrap, prefix + "touchstream.customer-events", expect=8)
    }
    found = {}
    for record in quarantined:
        entry = record.json()
        assert entry["reason"] == "processing_failed"
        assert entry["exception_type"] == "InjectedFault"
        if entry["topic"] == prefix + "touchpoints":
            event_id = orjson.loads(base64.b64decode(entry["value_b64"]))["event_id"]
            assert (entry["partition"], entry["offset"]) == positions[ORDER.index(event_id)]
        else:
            assert entry["topic"] == prefix + "touchstream.customer-events"
            event_id = customer_events[(entry["partition"], entry["offset"])]["id"]
        found[event_id] = entry["stage"]
    assert found == FAULTS

    assert worker.child.pid == pid and worker.child.alive()
    worker.wait_ready(timeout_s=5)
    metrics = worker.metrics()
    assert metrics["touchstream_quarantined_total"] == len(FAULTS)
    assert metrics.get("touchstream_dlq_total", 0) == 0


def test_quarantined_records_replayed_where_they_came_from_once_fixed(stack: Stack) -> None:
    prefix = stack.settings["topic_prefix"]
    bootstrap = stack.broker.bootstrap
    faulty = stack.start_worker(faults="core:e-core,ingest:e-ingest", name="faulty")
    faulty.wait_ready()
    produce(bootstrap, prefix + "touchpoints", events())
    read_topic(bootstrap, prefix + "touchstream.quarantine", expect=2)
    wait_profile(stack, orders=7)
    faulty.stop()

    fixed = stack.start_worker(name="fixed")
    fixed.wait_ready()
    allowed = {prefix + name for name in QUARANTINE_SOURCES}
    args = (bootstrap, prefix + "touchstream.quarantine", None, prefix + "q", set(), None)
    assert asyncio.run(replay(*args, topics_allowed=allowed)) == (2, 0)
    held = wait_profile(stack, orders=9)
    assert asyncio.run(replay(*args, topics_allowed=allowed)) == (0, 0)  # the group remembers
    time.sleep(1.0)
    assert profile(stack)["orders"] == held["orders"] == "9"
    assert held["points"] == "90"


def test_an_internal_record_that_raises_halts_its_partition_and_is_not_lost(
    stack: Stack,
) -> None:
    prefix = stack.settings["topic_prefix"]
    bootstrap = stack.broker.bootstrap
    halting = stack.start_worker(faults="internal:e-link", name="halting")
    halting.wait_ready()
    pid = halting.child.pid
    identity = {"customer_id": "crm-h", "email": "h@example.com"}
    # applied at the customer id's home, which then asks the email's home to merge: that
    # merge message raises
    link = purchase(identity, "o-h", 2_000, event_id="e-link")
    produce(bootstrap, prefix + "touchpoints", [(b"crm-h", link)])

    deadline = time.monotonic() + 30
    status, body = halting.get("/readyz")
    while status == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
        status, body = halting.get("/readyz")
    ready = orjson.loads(body)
    assert status == 503 and ready["checks"]["no_partition_halted"] is False
    assert list(ready["halted"]) and all("customer-events" in tp for tp in ready["halted"])
    assert halting.metrics()["touchstream_partition_halted"] == 1
    email = "/customers/lookup?kind=email&value=h%40example.com"
    assert halting.get(email)[0] == 404  # the link waits, parked nowhere
    home = halting.poll("/customers/lookup?kind=customer_id&value=crm-h", lambda v: True)
    assert home["orders"] == 1  # the event before it was applied
    time.sleep(2.0)
    assert halting.child.pid == pid and halting.child.alive()  # no crash loop
    assert read_topic(bootstrap, prefix + "touchstream.quarantine", timeout_s=2) == []
    halting.stop()

    fixed = stack.start_worker(name="fixed")
    fixed.wait_ready()
    linked = fixed.poll(email, lambda v: v["orders"] == 1)
    assert linked["customer_id"] == home["customer_id"]
