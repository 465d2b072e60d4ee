# ruff: noqa: RUF001 - the full-width and look-alike characters are the point of this test
"""Hostile Unicode in identifiers on Apache Kafka and Redis (issue 28): a till that adds a
zero-width space or full-width digits does not split a shopper into two profiles; a Cyrillic
look-alike in an email, an Arabic-Indic phone and a rewritten loyalty id go to the DLQ naming
the field instead of building a profile of their own."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import pytest

from touchstream.runtime.kafka_io import produce, read_topic
from touchstream.runtime.stack import Stack
from touchstream.simulator.factory import purchase

pytestmark = pytest.mark.integration

T0 = int(time.time() * 1000) - 3_600_000


def topic(stack: Stack, name: str) -> str:
    return stack.settings["topic_prefix"] + name


def lookup(kind: str, value: str) -> str:
    return "/customers/lookup?" + urlencode({"kind": kind, "value": value})


def test_invisible_and_full_width_characters_join_the_shopper_and_look_alikes_are_refused(
    stack: Stack,
) -> None:
    worker = stack.start_worker()
    worker.wait_ready()
    plain = purchase({"email": "ann@example.com"}, "W-1", 1_000, occurred_at=T0)
    odd = [
        purchase({"email": "ann\u200b@example.com"}, "W-2", 2_000, occurred_at=T0 + 60_000),
        purchase({"phone": "+４９ １７０ １２３４５６７"}, "P-1", 500, occurred_at=T0 + 90_000),
        purchase({"phone": "+49 170 1234567"}, "P-2", 700, occurred_at=T0 + 95_000),
    ]
    refused = [
        purchase({"email": "\u0430nn@example.com"}, "X-1", 9_000, occurred_at=T0 + 120_000),
        purchase({"phone": "+\u0664\u0669 170 1234567"}, "X-2", 9_000, occurred_at=T0 + 130_000),
        purchase({"loyalty_id": "LC-1\u200b"}, "X-3", 9_000, occurred_at=T0 + 140_000),
    ]
    produce(
        stack.broker.bootstrap,
        topic(stack, "touchpoints"),
        [(e["event_id"].encode(), e) for e in [plain, *odd, *refused]],
    )

    ann = worker.poll(lookup("email", "ann@example.com"), lambda v: v["orders"] == 2)
    assert ann["qualifying_spend_minor"] == 3_000
    phone = worker.poll(lookup("phone", "+491701234567"), lambda v: v["orders"] == 2)
    assert phone["qualifying_spend_minor"] == 1_200
    dlq = read_topic(stack.broker.bootstrap, topic(stack, "touchpoints.dlq"), expect=3)
    reasons = sorted((d.json()["reason"], d.json()["message"]) for d in dlq)
    assert [r for r, _ in reasons] == ["schema_violation"] * 3
    messages = " | ".join(m for _, m in reasons)
    for field in ("identity.email", "identity.phone", "identity.loyalty_id"):
        assert field in messages
    # nothing was built for them, and a look-up by a refused identifier finds nobody
    assert worker.get(lookup("loyalty_id", "LC-1"))[0] == 404
    assert worker.get(lookup("email", "\u0430nn@example.com"))[0] == 404
    assert worker.get(lookup("phone", "+\u0664\u0669 170 1234567"))[0] == 404
