"""The loyalty ledger end to end: earn once, returns, redemptions, and a year replayed.

(The seed scenario, a lapsed big spender who gets no VIP invitation until she buys again, is
``test_triggers.py``.)
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from touchstream.domain.clock import MS_PER_DAY, iso
from touchstream.domain.identity import home_of
from touchstream.runtime.kafka_io import produce_inputs, read_topic
from touchstream.runtime.stack import Stack, WorkerProcess
from touchstream.simulator.factory import event, purchase

from .conftest import feed_in_order

pytestmark = pytest.mark.integration

CARD = {"loyalty_id": "LC-4000"}


def outcomes(stack: Stack, prefix: str, expect: int) -> dict[str, dict[str, Any]]:
    """loyalty.outcomes by outcome_id: a redelivery may repeat one, only under the same id."""
    found = read_topic(stack.broker.bootstrap, prefix + "loyalty.outcomes", expect=expect)
    return {r.json()["outcome_id"]: r.json() for r in found}


def test_an_order_delivered_three_times_earns_once_returns_and_redemptions_are_reported(
    stack: Stack,
) -> None:
    worker = stack.start_worker()
    worker.wait_ready()
    prefix = stack.settings["topic_prefix"]
    now = int(time.time() * 1000)
    order = purchase(CARD, "ORD-1", 50_000, occurred_at=now - 3_000)
    again = dict(order, event_id="pos-retry-2")  # the till retried under a new event id
    events = [
        (b"till", order),
        (b"till", order),  # the same message delivered twice
        (b"till", again),
        (
            b"till",
            event("return", CARD, _return("RET-1", "ORD-1", 20_000), occurred_at=now - 2_000),
        ),
        (b"till", event("redemption", CARD, {"redemption_id": "RD-1", "points": 1_000})),
    ]
    produce_inputs(stack.broker.bootstrap, prefix + "touchpoints", events)

    customer = home_of("loyalty_id", "LC-4000")
    view = worker.poll(f"/customers/{customer}", lambda v: v["version"] >= 4)
    # 500 points earned once; 40 % refunded takes 200 back; the redemption of 1,000 is refused
    assert view["points"] == 300
    assert view["orders"] == 1
    assert view["qualifying_spend_minor"] == 30_000
    # the refund took spend below silver: kept through the 30-day grace period
    assert view["tier"] == "silver"
    assert view["tier_downgrade_at"] == iso(now - 2_000 + 30 * MS_PER_DAY)
    # the windowed ledger tables: net of the return, counted once
    assert (view["points_today"], view["spend_today_minor"]) == (300, 30_000)
    assert (view["points_this_month"], view["spend_this_month_minor"]) == (300, 30_000)

    found = outcomes(stack, prefix, expect=4)
    by_kind = {o["outcome"]: o for o in found.values()}
    assert sorted(by_kind) == [
        "points_earned",
        "points_reversed",
        "redemption_rejected",
        "tier_changed",
    ]
    assert len(found) == 4  # points_earned once, whatever the deliveries
    assert by_kind["points_earned"]["points"] == 500
    assert by_kind["points_reversed"]["points"] == -200
    rejected = by_kind["redemption_rejected"]
    assert rejected["reason"] == "insufficient_points"
    assert rejected["points_requested"] == 1_000 and rejected["balance"] == 300
    assert all(o["customer_id"] == customer for o in found.values())
    metrics = worker.metrics()
    assert metrics["touchstream_loyalty_outcomes_total"] == 4


def _return(return_id: str, order_id: str, refund: int) -> dict[str, Any]:
    return {"return_id": return_id, "order_id": order_id, "refund_minor": refund, "currency": "EUR"}


def a_year(now: int) -> list[dict[str, Any]]:
    """Four members over the last year: orders, a return, redemptions, an expiry, a VIP."""
    day = MS_PER_DAY
    members = [{"loyalty_id": f"LC-50{i}"} for i in range(4)]
    consent = {"purposes": {"email_marketing": True}}
    out: list[dict[str, Any]] = []
    for who in members:
        start = now - 360 * day
        out.append(event("consent_updated", who, consent, occurred_at=start))
        out.append(event("loyalty_signup", who, occurred_at=start + 1))
    a, b, c, d = members
    out += [
        purchase(a, f"A-{m}", 5_000 + m * 100, occurred_at=now - (330 - 30 * m) * day)
        for m in range(11)
    ]
    out.append(event("return", a, _return("A-R1", "A-3", 4_000), occurred_at=now - 230 * day))
    spend = {"redemption_id": "A-RD", "points": 300}
    out.append(event("redemption", a, spend, occurred_at=now - 100 * day))
    out.append(purchase(b, "B-1", 120_000, occurred_at=now - 390 * day))  # gold, then it lapses
    out.append(purchase(c, "C-1", 20_000, occurred_at=now - 430 * day))  # no purchase since
    out.append(purchase(d, "D-1", 60_000, occurred_at=now - 2 * day))
    out.append(purchase(d, "D-2", 45_000, occurred_at=now - 3_600_000))  # gold today: VIP
    # today, every member touches the shop: their time (and their partitions' clocks) is now
    out += [event("page_view", who, {"url": "/"}, occurred_at=now) for who in members]
    return out


def _profiles(worker: WorkerProcess, ids: list[str]) -> dict[str, tuple[Any, ...]]:
    fields = ("points", "tier", "qualifying_spend_minor", "orders", "points_expire_at")
    views = {cid: worker.poll(f"/customers/{cid}", lambda v: v["updated_at"] != "") for cid in ids}
    return {cid: tuple(v[f] for f in fields) for cid, v in views.items()}


def _triggers(stack: Stack, prefix: str, audits: int | None = None) -> dict[str, tuple[str, str]]:
    """Every trigger by id: (type, "sent" or why it was suppressed)."""
    topics = ["triggers.audit", "triggers.vip_status", "triggers.reward_unlocked"]
    found: dict[str, tuple[str, str]] = {}
    for topic in topics:
        wanted = audits if topic == "triggers.audit" else None
        for r in read_topic(stack.broker.bootstrap, prefix + topic, expect=wanted, settle_s=2):
            t = r.json()
            found[t["trigger_id"]] = (t["type"], t.get("suppressed_reason", "sent"))
    return found


def test_a_year_replayed_from_the_topic_gives_the_same_ledgers_tiers_and_trigger_ids(
    stack: Stack,
) -> None:
    now = int(time.time() * 1000)
    worker = stack.start_worker(name="first")
    worker.wait_ready()
    prefix = stack.settings["topic_prefix"]
    events = a_year(now)
    # the consent grants and the redemption are on the privileged input: each applied in turn
    feed_in_order(
        worker, stack.broker.bootstrap, prefix + "touchpoints", [(b"year", e) for e in events]
    )
    ids = [home_of("loyalty_id", f"LC-50{i}") for i in range(4)]
    # wait for the last event of each member: today's page view
    for cid in ids:
        worker.poll(f"/customers/{cid}", lambda v: v["updated_at"] == iso(now))
    first = _profiles(worker, ids)
    a, b, c, d = (first[cid] for cid in ids)
    # B's gold order left the window 25 days ago: still gold for 5 more grace days, but its
    # points expired with it
    assert b[:3] == (0, "gold", 0)
    assert c[0] == 0 and c[4] == ""  # C's points expired 65 days ago
    assert d[1] == "gold" and d[2] == 105_000
    assert a[3] == 11 and a[1] == "silver" and a[2] == 56_500
    live = _triggers(stack, prefix)
    assert ("vip_status", "sent") in live.values()  # D, today
    assert ("tier_downgrade_risk", "stale") in live.values()  # B, 25 days ago
    assert ("points_expiring", "stale") in live.values()  # C, 95 days ago
    worker.stop()

    # the recorded inputs, byte for byte, into a fresh deployment, in the order they were fed
    ordinary = read_topic(stack.broker.bootstrap, prefix + "touchpoints")
    privileged = read_topic(stack.broker.bootstrap, prefix + "touchpoints.privileged")
    by_id = {orjson.loads(r.value)["event_id"]: r for r in [*ordinary, *privileged]}
    recorded = [by_id[e["event_id"]] for e in events]
    replay = "replay-" + prefix
    again = stack.start_worker(name="replay", topic_prefix=replay, app_id=replay + "touchstream")
    again.wait_ready()
    feed_in_order(
        again, stack.broker.bootstrap, replay + "touchpoints", [(r.key, r.value) for r in recorded]
    )
    for cid in ids:
        again.poll(f"/customers/{cid}", lambda v: v["updated_at"] == iso(now))
    assert _profiles(again, ids) == first
    audited = len([v for v in live.values() if v[1] != "sent"])
    assert _triggers(stack, replay, audits=audited) == live
