"""A future-dated event on real Kafka and Redis: the partition clock waits, no timer fires early.

One customer-stage partition, so every shopper's timers run on the clock the future-dated
event would move. The worker allows a clock 60 s past the broker time of a record
(TOUCHSTREAM_MAX_CLOCK_SKEW_S); the idle fallback then moves it by the wall time elapsed.
"""

from __future__ import annotations

import time

import pytest

from touchstream.runtime.kafka_io import produce_inputs, read_topic
from touchstream.runtime.stack import Stack
from touchstream.simulator.factory import event

pytestmark = pytest.mark.integration

MIN = 60_000
HOUR = 60 * MIN


def opted_in(identity: dict[str, str]) -> dict:
    return event("consent_updated", identity, {"purposes": {"email_marketing": True}})


def add(identity: dict[str, str], at: int) -> dict:
    props = {"cart_id": "C-1", "sku": "SKU-1", "quantity": 1, "unit_price_minor": 2_500}
    return event("add_to_cart", identity, dict(props, currency="EUR"), occurred_at=at)


def test_an_event_dated_a_day_ahead_fires_no_other_shoppers_cart_reminder_early(
    stack: Stack,
) -> None:
    # the default rules: the first cart reminder 60 minutes after the add
    worker = stack.start_worker(partitions="1", idle_fallback_s="1", max_clock_skew_s="60")
    worker.wait_ready()
    now = int(time.time() * 1000)
    waiting = {"customer_id": "CRM-71"}  # added 50 minutes ago: reminded in 10 minutes
    overdue = {"customer_id": "CRM-72"}  # added 70 minutes ago: due now, proves timers ran
    future = {"customer_id": "CRM-73"}  # a till whose clock is 23 hours ahead
    source = stack.settings["topic_prefix"] + "touchpoints"
    records = [
        opted_in(waiting),
        opted_in(overdue),
        add(waiting, now - 50 * MIN),
        add(overdue, now - 70 * MIN),
        event("page_view", future, {"url": "/"}, occurred_at=now + 23 * HOUR),
    ]
    produce_inputs(stack.broker.bootstrap, source, [(b"k", e) for e in records])

    topic = stack.settings["topic_prefix"] + "triggers.abandoned_cart"
    first = read_topic(stack.broker.bootstrap, topic, expect=1, timeout_s=60)
    assert [r.json()["customer_id"] for r in first] == ["CRM-72"]
    time.sleep(4)  # idle ticks meanwhile: the clock moves by the wall time, not to the claim
    reminded = {r.json()["customer_id"] for r in read_topic(stack.broker.bootstrap, topic)}
    assert reminded == {"CRM-72"}, "a cart reminder went out 10 minutes early"

    sums = worker.metrics()
    assert sums["touchstream_event_time_capped_total"] == 1
    assert sums["touchstream_idle_ticks_total"] >= 1
    assert sums["touchstream_event_time_skew_seconds"] > 22 * 3600
