"""Abandoned carts end to end: event-time timers, the idle fallback, crashes and replays.

The rules file shortens the reminder delays to seconds; the worker's idle fallback moves a
partition's clock on after 1 s of silence, so the timers fire with no further traffic.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from touchstream.runtime.kafka_io import Out, produce_inputs, read_topic
from touchstream.runtime.stack import Stack
from touchstream.simulator.factory import event, purchase

from .conftest import feed_in_order

pytestmark = pytest.mark.integration

SHORT = """
[carts]
reminder_delays_minutes = [{delays}]

[triggers.cooldown_hours]
abandoned_cart = 0
"""


def rules_file(tmp_path: Path, delays: str = "0.1, 0.3") -> str:
    path = tmp_path / "rules.toml"
    path.write_text(SHORT.format(delays=delays))
    return str(path)


def opted_in(identity: dict[str, str]) -> dict:
    return event("consent_updated", identity, {"purposes": {"email_marketing": True}})


def add(identity: dict[str, str], sku: str, qty: int, price: int, cart: str = "C-1") -> dict:
    props = {"cart_id": cart, "sku": sku, "quantity": qty, "unit_price_minor": price}
    return event("add_to_cart", identity, dict(props, currency="EUR"))


def reminders(stack: Stack, expect: int | None = None, timeout_s: float = 30) -> list[dict]:
    topic = stack.settings["topic_prefix"] + "triggers.abandoned_cart"
    found: list[Out] = read_topic(stack.broker.bootstrap, topic, expect=expect, timeout_s=timeout_s)
    return [r.json() for r in found]


def distinct(found: list[dict]) -> list[dict]:
    """At-least-once may repeat a trigger, only ever under the same trigger_id."""
    by_id = {r["trigger_id"]: r for r in found}
    return sorted(by_id.values(), key=lambda r: (r["occurred_at"], r["trigger_id"]))


def test_a_web_cart_gets_one_reminder_after_the_delay_and_one_more_later(
    stack: Stack, tmp_path: Path
) -> None:
    worker = stack.start_worker(rules=rules_file(tmp_path), idle_fallback_s="1")
    worker.wait_ready()
    web = {"customer_id": "CRM-51", "device_id": "web-51"}
    source = stack.settings["topic_prefix"] + "touchpoints"
    produce_inputs(
        stack.broker.bootstrap,
        source,
        [
            (b"w", e)
            for e in (opted_in(web), add(web, "SKU-1", 2, 2_500), add(web, "SKU-2", 1, 999))
        ],
    )
    # then silence on the whole topic: only the idle fallback moves the clocks on
    first = reminders(stack, expect=1)
    assert len(first) == 1
    trigger = first[0]
    assert trigger["customer_id"] == "CRM-51"
    assert trigger["evidence"]["value_minor"] == 5_999
    assert trigger["evidence"]["items"] == [
        {"sku": "SKU-1", "quantity": 2, "unit_price_minor": 2_500},
        {"sku": "SKU-2", "quantity": 1, "unit_price_minor": 999},
    ]
    assert trigger["channels"] == ["email"]
    assert worker.metrics()["touchstream_idle_ticks_total"] >= 1

    both = distinct(reminders(stack, expect=2))
    assert [r["evidence"]["reminder"] for r in both] == [1, 2]
    time.sleep(3)  # the list of delays is used up: nothing more comes
    assert len(distinct(reminders(stack))) == 2


def test_a_purchase_in_store_before_the_delay_cancels_the_web_reminder(
    stack: Stack, tmp_path: Path
) -> None:
    worker = stack.start_worker(rules=rules_file(tmp_path, "0.15"), idle_fallback_s="1")
    worker.wait_ready()
    web = {"customer_id": "CRM-52", "device_id": "web-52"}
    card = {"loyalty_id": "LC-52"}
    control = {"customer_id": "CRM-53"}  # abandons the same cart: proves timers ran meanwhile
    source = stack.settings["topic_prefix"] + "touchpoints"
    setup = [
        opted_in(web),
        event("identify", {**card, "customer_id": "CRM-52"}),
        add(web, "SKU-1", 2, 2_500),
        opted_in(control),
        add(control, "SKU-1", 2, 2_500),
    ]
    produce_inputs(stack.broker.bootstrap, source, [(b"s", e) for e in setup])
    till = purchase(card, "POS-52", 5_000, channel="pos")
    produce_inputs(stack.broker.bootstrap, source, [(b"pos", till)])

    found = reminders(stack, expect=1)
    time.sleep(4)  # well past the delay for both carts
    found = distinct(reminders(stack))
    assert [r["customer_id"] for r in found] == ["CRM-53"]
    assert worker.metrics()["touchstream_triggers_emitted_total"] == 1


def test_a_changed_cart_re_arms_once_and_an_unchanged_one_survives_a_crash_unrepeated(
    stack: Stack, tmp_path: Path
) -> None:
    rules = rules_file(tmp_path, "0.1, 0.6")
    worker = stack.start_worker(rules=rules, idle_fallback_s="1", name="before-crash")
    worker.wait_ready()
    changing = {"customer_id": "CRM-54"}
    steady = {"customer_id": "CRM-55"}
    source = stack.settings["topic_prefix"] + "touchpoints"
    produce_inputs(
        stack.broker.bootstrap,
        source,
        [
            (b"c", e)
            for e in (
                opted_in(changing),
                add(changing, "SKU-1", 1, 2_000),
                opted_in(steady),
                add(steady, "SKU-1", 1, 2_000),
            )
        ],
    )
    assert len(distinct(reminders(stack, expect=2))) == 2  # first reminders of both
    produce_inputs(stack.broker.bootstrap, source, [(b"c", add(changing, "SKU-2", 1, 500))])
    after_change = distinct(reminders(stack, expect=3))
    assert [r["evidence"]["value_minor"] for r in after_change if r["customer_id"] == "CRM-54"][
        -1
    ] == 2_500

    worker.child.kill()  # kill -9 between the delays
    restarted = stack.start_worker(rules=rules, idle_fallback_s="1", name="after-crash")
    restarted.wait_ready()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = distinct(reminders(stack, timeout_s=3))
        steady_found = [r for r in found if r["customer_id"] == "CRM-55"]
        if len(steady_found) >= 2:
            break
    time.sleep(5)
    found = distinct(reminders(stack))
    by_customer: dict[str, list[tuple[int, int]]] = {}
    for r in found:
        key = (r["evidence"]["value_minor"], r["evidence"]["reminder"])
        by_customer.setdefault(r["customer_id"], []).append(key)
    assert sorted(by_customer["CRM-55"]) == [(2_000, 1), (2_000, 2)]
    # the changed cart: its first contents got reminder 1, its new contents start again
    assert (2_000, 1) in by_customer["CRM-54"] and (2_500, 1) in by_customer["CRM-54"]
    assert len(by_customer["CRM-54"]) == len(set(by_customer["CRM-54"]))


def test_replaying_the_recorded_events_gives_the_same_trigger_ids(
    stack: Stack, tmp_path: Path
) -> None:
    rules = rules_file(tmp_path, "0.1, 0.2")
    worker = stack.start_worker(rules=rules, idle_fallback_s="1", name="live")
    worker.wait_ready()
    prefix = stack.settings["topic_prefix"]
    shoppers = [{"customer_id": f"CRM-6{i}"} for i in range(3)]
    events = []
    for i, who in enumerate(shoppers):
        events += [opted_in(who), add(who, f"SKU-{i}", i + 1, 1_500)]
    produce_inputs(stack.broker.bootstrap, prefix + "touchpoints", [(b"r", e) for e in events])
    live = {r["trigger_id"] for r in reminders(stack, expect=6)}
    assert len(live) == 6
    worker.stop()

    # the recorded inputs, byte for byte, into a fresh deployment, in the order they were sent
    ordinary = read_topic(stack.broker.bootstrap, prefix + "touchpoints")
    privileged = read_topic(stack.broker.bootstrap, prefix + "touchpoints.privileged")
    by_id = {orjson.loads(r.value or b"")["event_id"]: r for r in [*ordinary, *privileged]}
    recorded = [by_id[e["event_id"]] for e in events]
    replay_prefix = "replay-" + prefix
    again = stack.start_worker(
        rules=rules,
        idle_fallback_s="1",
        name="replay",
        topic_prefix=replay_prefix,
        app_id=replay_prefix + "touchstream",
    )
    again.wait_ready()
    feed_in_order(
        again,
        stack.broker.bootstrap,
        replay_prefix + "touchpoints",
        [(r.key or b"", r.value) for r in recorded],
    )
    topic = replay_prefix + "triggers.abandoned_cart"
    replayed = read_topic(stack.broker.bootstrap, topic, expect=6)
    assert {r.json()["trigger_id"] for r in replayed} == live
