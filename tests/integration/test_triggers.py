"""Triggers end to end: the seed scenario of a lapsed big spender and today's VIP."""

from __future__ import annotations

import time

import pytest

from touchstream.domain.clock import MS_PER_DAY
from touchstream.domain.identity import home_of
from touchstream.runtime.kafka_io import produce_inputs, read_topic
from touchstream.runtime.stack import Stack
from touchstream.simulator.factory import event, purchase

pytestmark = pytest.mark.integration

SHOPPER = {"loyalty_id": "LC-3000", "email": "pat@example.com"}


def test_vip_status_goes_to_the_recent_gold_shopper_only(stack: Stack) -> None:
    worker = stack.start_worker()
    worker.wait_ready()
    prefix = stack.settings["topic_prefix"]
    now = int(time.time() * 1000)
    long_ago = now - 400 * MS_PER_DAY
    history = [
        event(
            "consent_updated",
            SHOPPER,
            {"purposes": {"email_marketing": True}},
            occurred_at=long_ago,
        ),
        purchase(SHOPPER, "OLD-1", 300_000, occurred_at=long_ago + 1),
        # today the program's VIP campaign mails its list, and she opens it
        event(
            "email_open", {"email": SHOPPER["email"]}, {"campaign_id": "vip-night"}, channel="email"
        ),
    ]
    produce_inputs(stack.broker.bootstrap, prefix + "touchpoints", [(b"pat", e) for e in history])

    audit = read_topic(stack.broker.bootstrap, prefix + "triggers.audit", expect=4)
    assert sorted((a.json()["type"], a.json()["suppressed_reason"]) for a in audit) == [
        ("points_expiring", "stale"),  # 30 days before the old points expired
        ("reward_unlocked", "stale"),
        ("tier_downgrade_risk", "stale"),  # when the old order left the 365-day window
        ("vip_status", "stale"),  # the backfilled purchase crossed gold, a year ago
    ]
    assert read_topic(stack.broker.bootstrap, prefix + "triggers.vip_status", timeout_s=3) == []

    # she buys today: 1,000.00 in the trailing 365 days makes her gold again
    produce_inputs(
        stack.broker.bootstrap,
        prefix + "touchpoints",
        [
            (b"pat", purchase(SHOPPER, "NEW-1", 100_000)),
            (b"pat", purchase(SHOPPER, "NEW-2", 2_000)),
        ],
    )
    sent = read_topic(stack.broker.bootstrap, prefix + "triggers.vip_status", expect=1)
    assert len(sent) == 1
    vip = sent[0].json()
    assert vip["customer_id"] == home_of("loyalty_id", "LC-3000")
    assert sent[0].key == vip["customer_id"].encode()
    assert vip["channels"] == ["email"]
    assert vip["evidence"]["qualifying_spend_minor"] == 100_000
    assert "pat@example.com" not in sent[0].value.decode()
    # the old points expired, so the new ones unlock the 500-point reward again
    rewards = read_topic(stack.broker.bootstrap, prefix + "triggers.reward_unlocked", expect=1)
    assert rewards[0].json()["evidence"]["points"] == 1_000
    assert worker.metrics()["touchstream_triggers_emitted_total"] == 2
