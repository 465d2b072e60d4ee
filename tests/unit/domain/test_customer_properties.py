"""Properties of the per-customer core over generated event histories: at-least-once delivery
never changes the outcome, and the points balance is the formula of docs/domain.md, "Loyalty"."""

from fractions import Fraction
from math import floor
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from touchstream.config.rules import load_rules
from touchstream.domain.clock import MS_PER_DAY
from touchstream.domain.customer import apply

RULES = load_rules(None)
CID = "ts-0123456789abcdef01234567"
T0 = 1_795_179_807_512
# docs/domain.md, "Loyalty": Member >= 0 at 1.0, Silver >= 350.00 at 1.25, Gold >= 1,000.00 at 1.5
SPEC_TIERS = [(100_000, Fraction(3, 2)), (35_000, Fraction(5, 4)), (0, Fraction(1))]
SIGNUP_BONUS = 100


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Up to 30 internal events of one customer, as the customer stage receives them: per
    inbound partition in offset order, event time moving forward by up to 10 days a step
    (300 days at most, so trailing-365-day spend equals all spend)."""
    count = draw(st.integers(min_value=0, max_value=30))
    offsets = {0: -1, 1: -1, 2: -1}
    at = T0
    events: list[dict[str, Any]] = []
    for i in range(count):
        partition = draw(st.sampled_from(sorted(offsets)))
        offsets[partition] += draw(st.integers(min_value=1, max_value=3))
        at += draw(st.integers(min_value=0, max_value=10 * MS_PER_DAY))
        kind = draw(st.sampled_from(["purchase", "purchase", "signup", "page_view", "resend"]))
        if kind == "resend" and events:
            # a producer re-sending an earlier event: same id and content, new inbound offset
            original = draw(st.sampled_from(events))
            events.append(dict(original, **{"in": [partition, offsets[partition]]}))
            continue
        body: dict[str, Any] = {"id": f"e{i}", "at": at, "in": [partition, offsets[partition]]}
        if kind == "purchase":
            total = draw(st.integers(min_value=0, max_value=150_000))
            body["type"] = "purchase"
            body["props"] = {
                "order_id": f"O-{draw(st.integers(min_value=0, max_value=6))}",
                "total_minor": total,
                "discount_minor": draw(st.integers(min_value=0, max_value=total)),
                "currency": "EUR",
                "items": [],
            }
        elif kind == "signup":
            body.update(type="loyalty_signup", props={})
        else:
            body.update(type="page_view", props={"url": "https://shop.example.com/"})
        events.append(
            {"ch": "web", "src": "web-eu", "ids": {"loyalty_id": "L-7"}, "cid": CID, **body}
        )
        events[-1]["ts"] = events[-1]["at"]
    return events


def final_state(deliveries: list[dict[str, Any]]) -> dict[str, Any] | None:
    state = None
    for e in deliveries:
        state = apply(state, e, RULES).state
    return state


@settings(deadline=None, max_examples=150, database=None)
@given(histories(), st.data())
def test_every_event_delivered_twice_gives_the_same_state_as_once(events, data):
    # redelivery of event i happens some time after its first delivery: right after the
    # first delivery of event k >= i, several redeliveries at one point in random order
    after: dict[int, list[int]] = {}
    for i in range(len(events)):
        k = data.draw(st.integers(min_value=i, max_value=len(events) - 1), label=f"redeliver {i}")
        after.setdefault(k, []).append(i)
    deliveries = []
    for k, e in enumerate(events):
        deliveries.append(e)
        for i in data.draw(st.permutations(after.get(k, [])), label=f"after {k}"):
            deliveries.append(dict(events[i]))

    assert len(deliveries) == 2 * len(events)
    assert final_state(deliveries) == final_state(events)


def multiplier(spend_minor: int) -> Fraction:
    return next(m for threshold, m in SPEC_TIERS if spend_minor >= threshold)


@settings(deadline=None, max_examples=150, database=None)
@given(histories())
def test_points_are_the_sum_over_distinct_orders_plus_signup_bonus(events):
    signed_up = any(e["type"] == "loyalty_signup" for e in events)
    expected = SIGNUP_BONUS if signed_up else 0
    spend = 0
    first: dict[str, dict[str, Any]] = {}  # each order earns once, as it first arrived
    for e in events:
        if e["type"] == "purchase":
            first.setdefault(e["props"]["order_id"], e)
    orders = set(first)
    # priced in event time; orders placed at the same moment in order of their ids
    for e in sorted(first.values(), key=lambda e: (e["at"], e["props"]["order_id"])):
        net = e["props"]["total_minor"] - e["props"]["discount_minor"]
        expected += floor(Fraction(net, 100) * multiplier(spend))
        spend += net

    state = final_state(events)

    assert (state["points"] if state else 0) == expected
    assert (state["qualifying_spend_minor"] if state else 0) == spend
    assert (len(state["orders"]) if state else 0) == len(orders)
