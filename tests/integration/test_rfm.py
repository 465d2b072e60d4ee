"""RFM scores, purchase figures and win_back end to end, in event time (docs/domain.md, "Recency, frequency, monetary").

Scores move with the customer-stage partition's clock: the highest event time the partition
has seen (any customer's event) or the idle fallback. Tests that must not see the clock move
on by itself set the idle fallback to an hour.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from touchstream.domain.clock import MS_PER_DAY, MS_PER_HOUR, iso
from touchstream.runtime.kafka_io import produce_inputs, read_topic
from touchstream.runtime.stack import Stack, WorkerProcess
from touchstream.simulator.factory import event, purchase
from touchstream.streams.timer_index import partition_for

pytestmark = pytest.mark.integration

DAY = MS_PER_DAY
PARTITIONS = 4
NO_IDLE = "3600"  # no idle tick within a test: only events move the clocks
EMAIL = {"purposes": {"email_marketing": True}}
FIELDS = ("r_score", "f_score", "m_score", "segment")


def who(customer: str) -> dict[str, str]:
    return {"customer_id": customer}


def refund(customer: str, return_id: str, order_id: str, minor: int, at: int) -> dict[str, Any]:
    props = {"return_id": return_id, "order_id": order_id, "refund_minor": minor, "currency": "EUR"}
    return event("return", who(customer), props, occurred_at=at)


def page_view(customer: str, at: int) -> dict[str, Any]:
    return event("page_view", who(customer), {"url": "/"}, occurred_at=at)


def send(stack: Stack, events: list[dict[str, Any]]) -> None:
    """All through one inbound partition, in event-time order, as a live stream carries them."""
    ordered = sorted(events, key=lambda e: e["occurred_at"])
    topic = stack.settings["topic_prefix"] + "touchpoints"
    produce_inputs(stack.broker.bootstrap, topic, [(b"shop", e) for e in ordered])


def view(worker: WorkerProcess, customer: str) -> dict[str, Any] | None:
    status, body = worker.get(f"/customers/{customer}")
    return json.loads(body) if status == 200 else None


def row(v: dict[str, Any] | None) -> tuple[Any, ...] | None:
    return tuple(v[f] for f in FIELDS) if v is not None else None


def same_partition(customer: str, prefix: str, other: bool = False) -> str:
    """A customer id (prefix + n) on the same customer-stage partition as ``customer`` (or on a
    different one with ``other``)."""
    home = partition_for(customer.encode(), PARTITIONS)
    for n in range(1, 1000):
        candidate = f"{prefix}{n}"
        on_it = partition_for(candidate.encode(), PARTITIONS) == home
        if candidate != customer and on_it != other:
            return candidate
    raise AssertionError("no candidate id found")


def by_trigger_id(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """At-least-once may repeat a trigger, only ever under the same trigger_id."""
    return {t["trigger_id"]: t for t in found}


def triggers(
    stack: Stack, topic: str, customer: str, settle_s: float = 1.0, timeout_s: float = 30
) -> list[dict]:
    """Win-backs of ``customer`` on ``topic`` (a topic nothing was sent to yet may not exist:
    then none, after ``timeout_s``)."""
    name = stack.settings["topic_prefix"] + topic
    found = read_topic(stack.broker.bootstrap, name, settle_s=settle_s, timeout_s=timeout_s)
    return [
        t
        for t in (r.json() for r in found)
        if t["customer_id"] == customer and t["type"] == "win_back"
    ]


def wait_for_triggers(
    stack: Stack, topic: str, customer: str, count: int, timeout_s: float = 30
) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    found: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        found = by_trigger_id(triggers(stack, topic, customer, settle_s=0.5, timeout_s=3))
        if len(found) >= count:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{topic}: {len(found)} win_back for {customer} after {timeout_s}s")


# ---------------------------------------------------------------------------------------------
# 1. a year of eight shoppers, scored by hand


def a_year(now: int) -> list[dict[str, Any]]:
    def buy(customer: str, order: str, minor: int, days: float) -> dict[str, Any]:
        return purchase(who(customer), order, minor, occurred_at=now - int(days * DAY))

    out: list[dict[str, Any]] = []
    # CRM-701: 12 orders of 200.00, every 30 days from 5 to 335 days ago
    out += [buy("CRM-701", f"701-{k}", 20_000, 5 + 30 * k) for k in range(12)]
    # CRM-702: 7 orders of 100.00, every 30 days from 100 to 280 days ago
    out += [buy("CRM-702", f"702-{k}", 10_000, 100 + 30 * k) for k in range(7)]
    # CRM-703: one order of 150.00, exactly 30 days ago
    out.append(buy("CRM-703", "703-1", 15_000, 30))
    # CRM-704: 400.00 (45 d), 350.00 (100 d, 100.00 of it returned 90 d ago), 300.00 (150 d)
    out += [
        buy("CRM-704", "704-1", 40_000, 45),
        buy("CRM-704", "704-2", 35_000, 100),
        buy("CRM-704", "704-3", 30_000, 150),
        refund("CRM-704", "704-R", "704-2", 10_000, now - 90 * DAY),
    ]
    # CRM-705: 4 orders of 300.00, 120, 200, 280 and 340 days ago
    out += [buy("CRM-705", f"705-{d}", 30_000, d) for d in (120, 200, 280, 340)]
    # CRM-706: 300.00 (75 d), 250.00 (150 d), 400.00 (250 d, returned in full 240 d ago)
    out += [
        buy("CRM-706", "706-1", 30_000, 75),
        buy("CRM-706", "706-2", 25_000, 150),
        buy("CRM-706", "706-3", 40_000, 250),
        refund("CRM-706", "706-R", "706-3", 40_000, now - 240 * DAY),
    ]
    # CRM-707: 150.00 (200 d), 100.00 (300 d)
    out += [buy("CRM-707", "707-1", 15_000, 200), buy("CRM-707", "707-2", 10_000, 300)]
    # CRM-708: 500.00 (400 d), 300.00 (500 d): nothing in the last 365 days
    out += [buy("CRM-708", "708-1", 50_000, 400), buy("CRM-708", "708-2", 30_000, 500)]
    # CRM-709: never bought, browsed 10 days ago
    out.append(page_view("CRM-709", now - 10 * DAY))
    # CRM-710: one order of 200.00 50 days ago, returned in full 40 days ago
    out += [
        buy("CRM-710", "710-1", 20_000, 50),
        refund("CRM-710", "710-R", "710-1", 20_000, now - 40 * DAY),
    ]
    # today every shopper visits: every partition's clock is now
    out += [page_view(f"CRM-7{n:02}", now) for n in range(1, 11)]
    return out


# (r, f, m, segment) today, by hand from the default rules:
# R 5/4/3/2/1 for <= 30/60/90/180/more days; F 5..1 for >= 10/6/3/2/1 orders in 365 days;
# M 5..1 for >= 200000/100000/50000/20000/1 minor of spend in 365 days.
EXPECTED = {
    # last 5 d -> R5; 12 orders -> F5; 240000 -> M5; R>=4, F>=4 -> Champions
    "CRM-701": (5, 5, 5, "Champions"),
    # last 100 d -> R2; 7 orders -> F4; 70000 -> M3; not R>=4, but F>=4 -> Loyal
    "CRM-702": (2, 4, 3, "Loyal"),
    # exactly 30 d -> R5 (the band is inclusive); 1 order -> F1; 15000 -> M1; New
    "CRM-703": (5, 1, 1, "New"),
    # last 45 d -> R4; 3 orders (the partly returned one counts) -> F3;
    # 40000 + 25000 + 30000 = 95000 -> M3 (M4 without the refund); R>=4, F=3 -> Potential loyalist
    "CRM-704": (4, 3, 3, "Potential loyalist"),
    # last 120 d -> R2; 4 orders -> F3; 120000 -> M4; R<=2, F>=3 -> At risk
    "CRM-705": (2, 3, 4, "At risk"),
    # last 75 d -> R3; 2 counted orders (the fully returned one does not count) -> F2;
    # 30000 + 25000 = 55000 -> M3; no rule before "else" matches -> Hibernating
    "CRM-706": (3, 2, 3, "Hibernating"),
    # last 200 d -> R1; 2 orders -> F2; 25000 -> M2; F<3, R=1 -> Lost
    "CRM-707": (1, 2, 2, "Lost"),
    # last 400 d -> R1; no order in 365 days -> F0, M0 -> Lost
    "CRM-708": (1, 0, 0, "Lost"),
    # never bought: no scores
    "CRM-709": ("", "", "", ""),
    # bought once and returned everything: no counted order, no scores
    "CRM-710": ("", "", "", ""),
}


def settled(
    worker: WorkerProcess, expected: dict[str, tuple[Any, ...]], at: int, timeout_s: float = 60
) -> dict[str, dict[str, Any]]:
    """Every profile once it has seen the event at ``at`` and its row is as expected; on timeout,
    fails with the whole table as it stands."""
    deadline = time.monotonic() + timeout_s
    views: dict[str, Any] = {}
    while time.monotonic() < deadline:
        views = {cid: view(worker, cid) for cid in expected}
        if all(
            v is not None and v["updated_at"] == iso(at) and row(v) == expected[cid]
            for cid, v in views.items()
        ):
            return views
        time.sleep(0.3)
    actual = {cid: (row(v), v["updated_at"] if v else None) for cid, v in views.items()}
    wanted = {cid: (r, iso(at)) for cid, r in expected.items()}
    assert actual == wanted
    raise AssertionError("unreachable")


def test_a_year_of_purchases_gives_the_hand_computed_scores_segments_and_figures(
    stack: Stack,
) -> None:
    worker = stack.start_worker(idle_fallback_s=NO_IDLE)
    worker.wait_ready()
    now = int(time.time() * 1000)
    send(stack, a_year(now))
    views = settled(worker, EXPECTED, now)

    champion = views["CRM-701"]
    assert (champion["orders_365"], champion["spend_365_minor"]) == (12, 240_000)
    assert champion["avg_order_value_minor"] == 20_000
    assert champion["avg_days_between_purchases"] == 30.0  # (335 - 5) / 11
    refunded = views["CRM-704"]
    assert (refunded["orders_365"], refunded["spend_365_minor"]) == (3, 95_000)
    assert refunded["avg_order_value_minor"] == 31_666  # 95000 // 3
    hibernating = views["CRM-706"]
    assert (hibernating["orders_365"], hibernating["spend_365_minor"]) == (2, 55_000)
    gone = views["CRM-708"]
    assert (gone["orders_365"], gone["spend_365_minor"], gone["avg_order_value_minor"]) == (0, 0, 0)
    assert gone["last_purchase_at"] == iso(now - 400 * DAY)
    returned = views["CRM-710"]
    assert (returned["orders_365"], returned["spend_365_minor"]) == (0, 0)
    assert views["CRM-709"].get("orders_365", 0) == 0


# ---------------------------------------------------------------------------------------------
# 2. scores slide with the partition's clock, not with the customer's own events

X = "CRM-801"
# 10 orders of 250.00; the last 200 days ago, the six oldest 380..480 days ago
X_ORDERS_DAYS = (200, 230, 260, 300, 380, 400, 420, 440, 460, 480)


def test_scores_slide_when_another_customer_moves_the_partitions_clock(stack: Stack) -> None:
    worker = stack.start_worker(idle_fallback_s=NO_IDLE)
    worker.wait_ready()
    now = int(time.time() * 1000)
    last = now - 200 * DAY
    history = [event("consent_updated", who(X), EMAIL, occurred_at=now - 600 * DAY)]
    history += [
        purchase(who(X), f"X-{d}", 25_000, occurred_at=now - d * DAY) for d in X_ORDERS_DAYS
    ]
    send(stack, history)

    # as of its last purchase: 10 orders in the 365 days before it, 250000 -> Champions
    before = worker.poll(
        f"/customers/{X}", lambda v: v["updated_at"] == iso(last) and v["orders"] == 10
    )
    assert row(before) == (5, 5, 5, "Champions")
    assert (before["orders_365"], before["spend_365_minor"]) == (10, 250_000)

    # a customer on another partition is seen today: X's partition clock stays put
    elsewhere = same_partition(X, "CRM-85", other=True)
    send(stack, [page_view(elsewhere, now)])
    worker.poll(f"/customers/{elsewhere}", lambda v: v["updated_at"] == iso(now))
    time.sleep(1.5)
    still = view(worker, X)
    assert still is not None
    assert row(still) == (5, 5, 5, "Champions")
    assert still["version"] == before["version"]

    # a customer on X's partition is seen today: X's timers fire up to now
    neighbour = same_partition(X, "CRM-86")
    assert partition_for(neighbour.encode(), PARTITIONS) == partition_for(X.encode(), PARTITIONS)
    send(stack, [page_view(neighbour, now)])
    after = worker.poll(f"/customers/{X}", lambda v: v["segment"] != "Champions", 30)
    # today: last purchase 200 d ago -> R1; the six orders 380..480 d ago left the window, four
    # remain (200..300 d) -> F3; 100000 -> M4; R<=2, F>=3 -> At risk
    assert row(after) == (1, 3, 4, "At risk")
    assert (after["orders_365"], after["spend_365_minor"]) == (4, 100_000)
    assert after["avg_order_value_minor"] == 25_000
    assert after["updated_at"] == iso(last)  # no event of X's own
    assert after["last_purchase_at"] == iso(last)
    time.sleep(1)
    assert row(view(worker, X)) == (1, 3, 4, "At risk")


# ---------------------------------------------------------------------------------------------
# 3. win_back: once per lapse, stale lapses audited


def test_win_back_is_delivered_once_per_lapse_and_a_stale_lapse_is_only_audited(
    stack: Stack,
) -> None:
    worker = stack.start_worker(idle_fallback_s="1")
    worker.wait_ready()
    now = int(time.time() * 1000)
    w = "CRM-301"
    first_last = now - 200 * DAY
    last = now - 90 * DAY - MS_PER_HOUR
    history = [
        event("consent_updated", who(w), EMAIL, occurred_at=now - 300 * DAY),
        purchase(who(w), "W-1", 30_000, occurred_at=now - 260 * DAY),
        purchase(who(w), "W-2", 30_000, occurred_at=first_last),
        # the first lapse came due 110 days ago (its timer fires as this moves the clock);
        # this purchase re-arms win_back, due an hour ago
        purchase(who(w), "W-3", 30_000, occurred_at=last),
    ]
    send(stack, history)
    worker.poll(f"/customers/{w}", lambda v: v["updated_at"] == iso(last) and v["orders"] == 3)

    audited = wait_for_triggers(stack, "triggers.audit", w, 1)
    assert len(audited) == 1
    stale = next(iter(audited.values()))
    assert stale["suppressed_reason"] == "stale"
    assert stale["occurred_at"] == iso(first_last + 90 * DAY)
    assert stale["evidence"]["last_purchase_at"] == iso(first_last)
    assert stale["evidence"]["orders"] == 2
    # the stale lapse was not delivered, and the new one is not due on W's partition yet
    # (idle ticks move its clock by seconds only)
    assert triggers(stack, "triggers.win_back", w, settle_s=2, timeout_s=5) == []

    # another customer on W's partition is seen today: the clock passes last + 90 days
    neighbour = same_partition(w, "CRM-31")
    send(stack, [page_view(neighbour, now)])
    delivered = wait_for_triggers(stack, "triggers.win_back", w, 1)
    assert len(delivered) == 1
    sent = next(iter(delivered.values()))
    assert sent["occurred_at"] == iso(last + 90 * DAY)
    assert sent["evidence"]["orders"] == 3
    assert sent["evidence"]["last_purchase_at"] == iso(last)
    assert sent["evidence"]["days_since_last_purchase"] == 90
    assert sent["evidence"]["spend_365_minor"] == 90_000
    assert sent["channels"] == ["email"]
    assert "suppressed_reason" not in sent
    assert sent["trigger_id"] != stale["trigger_id"]

    # more traffic today on the same partition, W's own visit, then idle ticks: nothing new
    more = [page_view(neighbour, now - n) for n in (3, 2, 1)] + [page_view(w, now)]
    send(stack, more)
    worker.poll(f"/customers/{w}", lambda v: v["updated_at"] == iso(now))
    time.sleep(4)  # idle_fallback_s=1: several ticks move the clock on by wall time
    assert worker.metrics()["touchstream_idle_ticks_total"] >= 1
    assert set(by_trigger_id(triggers(stack, "triggers.win_back", w))) == {sent["trigger_id"]}
    assert set(by_trigger_id(triggers(stack, "triggers.audit", w))) == {stale["trigger_id"]}
    # today: 90 d + 1 h since the last purchase -> R2; 3 orders -> F3 -> At risk
    assert row(view(worker, w)) == (2, 3, 3, "At risk")


# ---------------------------------------------------------------------------------------------
# 4. profiling consent


def test_refusing_profiling_clears_the_scores_and_granting_it_brings_them_back(
    stack: Stack,
) -> None:
    worker = stack.start_worker(idle_fallback_s=NO_IDLE)
    worker.wait_ready()
    now = int(time.time() * 1000)
    p = "CRM-401"
    send(
        stack,
        [
            purchase(who(p), "P-1", 30_000, occurred_at=now - 40 * DAY),
            purchase(who(p), "P-2", 30_000, occurred_at=now - 20 * DAY),
            page_view(p, now - 2_000),
        ],
    )
    path = f"/customers/{p}"
    # last 20 d -> R5; 2 orders -> F2; 60000 -> M3; R>=4, F=2 -> Potential loyalist
    scored = (5, 2, 3, "Potential loyalist")
    before = worker.poll(path, lambda v: v["updated_at"] == iso(now - 2_000))
    assert row(before) == scored
    assert before["consent_profiling"] == ""

    refuse = {"purposes": {"profiling": False}}
    send(stack, [event("consent_updated", who(p), refuse, occurred_at=now - 1_000)])
    refused = worker.poll(path, lambda v: v["updated_at"] == iso(now - 1_000))
    assert row(refused) == ("", "", "", "")
    assert refused["consent_profiling"] == "refused"
    assert refused["orders"] == 2  # the ledger itself is kept

    grant = {"purposes": {"profiling": True}}
    send(stack, [event("consent_updated", who(p), grant, occurred_at=now)])
    granted = worker.poll(path, lambda v: v["updated_at"] == iso(now))
    assert row(granted) == scored
    assert granted["consent_profiling"] == "granted"
