"""The guard chain at emit time, end to end: consent, the frequency cap, erasure of a pending
timer (docs/domain.md, "Guard chain" and "Privacy")."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from touchstream.runtime.kafka_io import produce_inputs, read_topic
from touchstream.runtime.stack import Stack
from touchstream.simulator.factory import event, purchase

pytestmark = pytest.mark.integration

RULES = """
[carts]
reminder_delays_minutes = [{delay}]

[triggers.cooldown_hours]
abandoned_cart = 0
"""


def start(stack: Stack, tmp_path: Path, delay: float = 0.1):
    path = tmp_path / "rules.toml"
    path.write_text(RULES.format(delay=delay))
    worker = stack.start_worker(rules=str(path), idle_fallback_s="1")
    worker.wait_ready()
    return worker


def add(identity: dict[str, str], cart: str, price: int = 2_000) -> dict:
    props = {"cart_id": cart, "sku": "SKU-1", "quantity": 1, "unit_price_minor": price}
    return event("add_to_cart", identity, dict(props, currency="EUR"))


def consent(identity: dict[str, str], email: bool) -> dict:
    return event("consent_updated", identity, {"purposes": {"email_marketing": email}})


def topic(stack: Stack, name: str, expect: int | None = None, timeout_s: float = 30) -> list:
    prefix = stack.settings["topic_prefix"]
    found = read_topic(stack.broker.bootstrap, prefix + name, expect=expect, timeout_s=timeout_s)
    return list({r.json()["trigger_id"]: r.json() for r in found}.values())


def send(stack: Stack, *events: dict) -> None:
    source = stack.settings["topic_prefix"] + "touchpoints"
    produce_inputs(stack.broker.bootstrap, source, [(b"k", e) for e in events])


def test_no_consent_is_audited_and_an_opt_in_lets_the_next_cart_through(
    stack: Stack, tmp_path: Path
) -> None:
    start(stack, tmp_path)
    shopper = {"customer_id": "CRM-71"}
    send(stack, add(shopper, "C-1"))

    (audited,) = topic(stack, "triggers.audit", expect=1)
    assert (audited["type"], audited["suppressed_reason"]) == ("abandoned_cart", "no_consent")
    assert audited["evidence"]["cart_id"] == "C-1"
    assert topic(stack, "triggers.abandoned_cart", timeout_s=2) == []

    send(stack, consent(shopper, email=True), add(shopper, "C-2"))
    (delivered,) = topic(stack, "triggers.abandoned_cart", expect=1)
    assert delivered["evidence"]["cart_id"] == "C-2"
    assert delivered["channels"] == ["email"]


def test_the_fourth_trigger_within_24_hours_is_held_by_the_frequency_cap(
    stack: Stack, tmp_path: Path
) -> None:
    worker = start(stack, tmp_path)
    shopper = {"customer_id": "CRM-72"}
    send(stack, consent(shopper, email=True), *(add(shopper, f"C-{i}") for i in range(4)))

    delivered = topic(stack, "triggers.abandoned_cart", expect=3)
    (capped,) = topic(stack, "triggers.audit", expect=1)
    assert len(delivered) == 3
    assert capped["suppressed_reason"] == "frequency_cap"
    carts = {d["evidence"]["cart_id"] for d in delivered} | {capped["evidence"]["cart_id"]}
    assert carts == {"C-0", "C-1", "C-2", "C-3"}
    assert worker.metrics()["touchstream_triggers_suppressed_total"] == 1


def test_an_erased_shopper_s_pending_reminder_never_fires(stack: Stack, tmp_path: Path) -> None:
    # long enough that the erasure lands before the reminder even on a loaded machine
    worker = start(stack, tmp_path, delay=0.5)
    shopper = {"customer_id": "CRM-73", "email": "ann@example.com"}
    control = {"customer_id": "CRM-74"}
    send(
        stack,
        consent(shopper, email=True),
        # bought a minute earlier: a cart event of the same millisecond would count as bought
        purchase(shopper, "O-73", 12_000, occurred_at=int(time.time() * 1000) - 60_000),
        add(shopper, "C-73"),
        consent(control, email=True),
        add(control, "C-74"),
    )
    # the email's link must be settled first (published on profiles.merges): an erasure by an
    # identifier whose link handshake is still in flight erases only that identifier's
    # transient profile (a known gap, see the closing note)
    merges = stack.settings["topic_prefix"] + "profiles.merges"
    (merge,) = [r.json() for r in read_topic(stack.broker.bootstrap, merges, expect=1)]
    assert merge["survivor"] == "CRM-73"
    send(stack, event("erasure_requested", {"email": "ann@example.com"}, {"request_id": "E-1"}))

    (receipt,) = [
        r.json()
        for r in read_topic(
            stack.broker.bootstrap, stack.settings["topic_prefix"] + "privacy.receipts", expect=1
        )
    ]
    assert receipt["customer_id"] == "CRM-73"
    assert receipt["removed"]["timers"] >= 1  # the cart reminder (and the open session)
    assert receipt["removed"]["orders"] == 1 and receipt["removed"]["carts"] == 1

    (sent,) = topic(stack, "triggers.abandoned_cart", expect=1, timeout_s=60)
    assert sent["customer_id"] == "CRM-74"  # the control's reminder fell due meanwhile
    time.sleep(3)
    assert [t["customer_id"] for t in topic(stack, "triggers.abandoned_cart")] == ["CRM-74"]
    assert [a for a in topic(stack, "triggers.audit") if a["customer_id"] == "CRM-73"] == []
    assert worker.get("/customers/CRM-73")[0] == 404
