"""A worker that takes over a partition with no traffic still runs its timers (streams.topology).

The timer index of a partition is rebuilt from the table by its first batch after an
assignment; a partition without traffic got none, so its clock and timers (cart reminders,
expiries) waited for its next event. A wake tick is that batch.
"""

from __future__ import annotations

import time

import pytest

from touchstream.runtime.kafka_io import produce_inputs, read_topic
from touchstream.runtime.stack import Stack
from touchstream.simulator.factory import event

pytestmark = pytest.mark.integration

MIN = 60_000


def test_a_cart_reminder_due_after_a_restart_fires_without_further_traffic(stack: Stack) -> None:
    # the default rules: the first cart reminder 60 minutes after the add
    first = stack.start_worker(name="w1", partitions="1", idle_fallback_s="1")
    first.wait_ready()
    shopper = {"customer_id": "CRM-81"}
    props = {"cart_id": "C-1", "sku": "SKU-1", "quantity": 1, "unit_price_minor": 2_500}
    added_at = int(time.time() * 1000) - 60 * MIN + 20_000  # reminded about 20 s from now
    records = [
        event("consent_updated", shopper, {"purposes": {"email_marketing": True}}),
        event("add_to_cart", shopper, dict(props, currency="EUR"), occurred_at=added_at),
        # another shopper's visit now: the ordinary events set the partition's clock (the
        # consent grant, a privileged command, moves none: docs/domain.md, "Event time and
        # timers"), so the idle fallback goes on from now, not from the cart an hour ago
        event("page_view", {"customer_id": "CRM-82"}, {"url": "/"}),
    ]
    source = stack.settings["topic_prefix"] + "touchpoints"
    produce_inputs(stack.broker.bootstrap, source, [(b"CRM-81", e) for e in records])
    deadline = time.monotonic() + 60
    while first.metrics().get("touchstream_events_applied_total", 0) < 3:
        assert time.monotonic() < deadline, "the first worker did not apply the events"
        time.sleep(0.2)
    first.stop()  # before the reminder is due; no event follows

    second = stack.start_worker(name="w2", partitions="1", idle_fallback_s="1")
    second.wait_ready()
    topic = stack.settings["topic_prefix"] + "triggers.abandoned_cart"
    reminded = read_topic(stack.broker.bootstrap, topic, expect=1, timeout_s=90)
    assert [r.json()["customer_id"] for r in reminded] == ["CRM-81"]
