"""Per-customer state: loyalty points earned exactly once per order whatever the delivery
(redelivery, producer re-send, rewind), and the single customer view built from it."""

import copy
import itertools
from typing import Any

import pytest

from touchstream.config.rules import load_rules, parse_rules
from touchstream.domain.clock import MS_PER_DAY, iso
from touchstream.domain.customer import apply, new_state
from touchstream.domain.profile import project
from touchstream.simulator.factory import internal

RULES = load_rules(None)
CID = "ts-0123456789abcdef01234567"
T0 = 1_795_179_807_512  # 2026-11-20T13:03:27.512Z


def event(
    type_: str,
    event_id: str,
    offset: int,
    partition: int = 0,
    at: int = T0,
    **props: Any,
) -> dict[str, Any]:
    return internal(CID, {"loyalty_id": "L-7"}, type_, event_id, offset, partition, at, **props)


def purchase(
    event_id: str,
    offset: int,
    order_id: str | None = None,
    total: int = 10_000,
    discount: int = 0,
    **kw: Any,
) -> dict[str, Any]:
    return event(
        "purchase",
        event_id,
        offset,
        order_id=order_id or f"order-{event_id}",
        total_minor=total,
        discount_minor=discount,
        currency="EUR",
        items=[],
        **kw,
    )


def run(events: list[dict[str, Any]], state: dict[str, Any] | None = None, rules=RULES):
    for e in events:
        state = apply(state, e, rules).state
    return state


@pytest.mark.parametrize(
    ("total", "discount", "points"),
    [
        (11_597, 1_000, 105),  # 105.97 EUR earns 105: rounded down per order
        (10_000, 0, 100),
        (99, 0, 0),
        (100, 0, 1),
        (5_000, 5_000, 0),
    ],
)
def test_member_earns_one_point_per_euro_of_net_spend_rounded_down(total, discount, points):
    out = apply(None, purchase("e1", 1, total=total, discount=discount), RULES)

    assert out.state["points"] == points
    assert out.state["qualifying_spend_minor"] == total - discount
    assert not out.duplicate


def test_discount_larger_than_total_earns_nothing_and_never_takes_points():
    state = run([event("loyalty_signup", "s", 1)])

    state = apply(state, purchase("e1", 2, total=1_000, discount=5_000), RULES).state

    assert state["points"] == 100
    assert state["qualifying_spend_minor"] == 0


def test_multiplier_is_the_tier_held_before_the_purchase():
    # 349.99 EUR keeps the member tier; the next order still earns at 1.0
    state = run([purchase("e1", 1, total=34_999)])
    assert state["points"] == 349

    state = run([purchase("e2", 2, total=10_001)], state)  # now silver (450.00 EUR)
    assert state["points"] == 349 + 100

    state = run([purchase("e3", 3, total=10_099)], state)  # earns at 1.25: 100.99 * 1.25 = 126.2
    assert state["points"] == 349 + 100 + 126


def test_gold_earns_one_and_a_half():
    state = run([purchase("e1", 1, total=100_000)])
    assert state["points"] == 1_000

    state = run([purchase("e2", 2, total=1_099)], state)  # 10.99 * 1.5 = 16.485

    assert state["points"] == 1_000 + 16


def test_points_per_unit_and_tiers_come_from_the_rules_file():
    rules = parse_rules(
        "[loyalty]\npoints_per_unit = 2\n\n[[loyalty.tiers]]\n"
        'name = "base"\nmin_spend_minor = 0\nmultiplier = 1.5\n'
    )

    state = run([purchase("e1", 1, total=1_050)], rules=rules)  # 10.50 * 2 * 1.5 = 31.5

    assert state["points"] == 31


def test_purchase_reports_the_points_it_earned():
    out = apply(None, purchase("e1", 1, order_id="O-1", total=11_597, discount=1_000), RULES)

    (decision,) = out.decisions
    assert decision.kind == "loyalty"
    assert {k: v for k, v in decision.payload.items() if k != "outcome_id"} == {
        "outcome": "points_earned",
        "customer_id": CID,
        "at": decision.payload["at"],
        "order_id": "O-1",
        "points": 105,
        "multiplier": 1.0,
        "net_minor": 10_597,
        "spend_minor": 10_597,
        "balance": 105,
    }


def test_same_delivery_twice_changes_nothing_and_is_reported_duplicate():
    first = apply(None, purchase("e1", 7), RULES)

    again = apply(first.state, purchase("e1", 7), RULES)

    assert again.duplicate
    assert again.decisions == []
    assert again.state == first.state


def test_same_event_resent_at_a_new_offset_is_a_duplicate():
    first = apply(None, purchase("e1", 7), RULES)

    resent = apply(first.state, purchase("e1", 8), RULES)

    assert resent.duplicate
    assert resent.decisions == []
    assert resent.state["points"] == first.state["points"]
    assert resent.state["version"] == first.state["version"]
    assert resent.state["events"] == first.state["events"]


def test_same_event_resent_through_another_inbound_partition_is_a_duplicate():
    first = apply(None, purchase("e1", 7, partition=0), RULES)

    resent = apply(first.state, purchase("e1", 3, partition=1), RULES)

    assert resent.duplicate
    assert resent.state["points"] == first.state["points"]


def test_same_order_under_a_new_event_id_earns_once():
    state = run([purchase("e1", 1, order_id="O-1"), purchase("e2", 2, order_id="O-1")])

    assert state["points"] == 100
    assert state["qualifying_spend_minor"] == 10_000
    assert list(state["orders"]) == ["O-1"]


def test_second_delivery_of_an_order_decides_nothing():
    state = run([purchase("e1", 1, order_id="O-1")])

    out = apply(state, purchase("e2", 2, order_id="O-1"), RULES)

    assert out.decisions == []


def test_older_offset_from_the_same_partition_is_skipped():
    state = run([purchase("e1", 5), purchase("e2", 9)])

    rewound = apply(state, purchase("e-new", 8), RULES)

    assert rewound.duplicate
    assert rewound.state["points"] == state["points"]
    assert rewound.state["version"] == state["version"]


def test_lower_offset_from_another_partition_is_applied():
    state = run([purchase("e1", 9, partition=0)])

    out = apply(state, purchase("e2", 2, partition=1), RULES)

    assert not out.duplicate
    assert out.state["points"] == 200


def test_apply_never_mutates_the_state_it_is_given():
    state = run([event("loyalty_signup", "s", 1), purchase("e1", 2, order_id="O-1")])
    before = copy.deepcopy(state)

    apply(state, purchase("e2", 3, order_id="O-2"), RULES)
    apply(state, purchase("e1", 2, order_id="O-1"), RULES)  # redelivery
    apply(state, purchase("e1", 4, order_id="O-1"), RULES)  # re-sent event
    apply(state, event("loyalty_signup", "s2", 5), RULES)
    apply(state, event("page_view", "p", 6, url="https://x"), RULES)

    assert state == before


def test_apply_never_mutates_the_event():
    e = purchase("e1", 1)
    before = copy.deepcopy(e)

    apply(run([purchase("e0", 0)]), e, RULES)

    assert e == before


def test_signup_bonus_is_granted_once():
    state = run([event("loyalty_signup", "s1", 1)])
    assert state["points"] == 100
    assert state["signup_bonus_at"] == T0

    out = apply(state, event("loyalty_signup", "s2", 2, at=T0 + MS_PER_DAY), RULES)

    assert out.state["points"] == 100
    assert out.state["signup_bonus_at"] == T0
    assert out.decisions == []


def test_signup_bonus_reports_the_points():
    out = apply(None, event("loyalty_signup", "s1", 1), RULES)

    assert [(d.payload["outcome"], d.payload["points"]) for d in out.decisions] == [
        ("signup_bonus", 100)
    ]


def test_signup_bonus_does_not_raise_qualifying_spend():
    state = run([event("loyalty_signup", "s1", 1)])

    assert state["qualifying_spend_minor"] == 0
    assert project(state, RULES)["tier"] == "member"


def test_version_counts_applied_events_only():
    state = run([purchase("e1", 1), event("page_view", "p1", 2, url="https://x")])
    assert state["version"] == 2

    state = run([purchase("e1", 2)], state)  # redelivered at its old offset: skipped
    state = run([purchase("e1", 3)], state)  # re-sent event id: duplicate
    state = run([purchase("e0", 1)], state)  # rewind
    assert state["version"] == 2

    state = run([event("search", "q1", 4, query="shoes")], state)
    assert state["version"] == 3


def test_new_state_for_an_unknown_customer():
    out = apply(None, event("page_view", "p1", 1, url="https://x"), RULES)

    assert out.state["customer_id"] == CID
    assert out.state["points"] == 0
    assert out.state["version"] == 1
    assert new_state(CID)["version"] == 0


def test_event_time_bounds_follow_event_time_not_arrival_order():
    late = T0 - 3 * MS_PER_DAY
    state = run(
        [
            purchase("e1", 1, at=T0),
            purchase("e2", 2, at=late),  # a late POS upload
        ]
    )

    assert state["last_purchase_at"] == T0
    assert state["first_purchase_at"] == late
    assert state["first_seen_at"] == late
    assert state["last_event_at"] == T0


def test_late_purchase_still_earns():
    state = run([purchase("e1", 1, at=T0), purchase("e2", 2, at=T0 - 30 * MS_PER_DAY)])

    assert state["points"] == 200


def test_a_profile_holds_the_identifier_that_created_it_and_gains_others_only_by_linking():
    # a second identifier on an event is linked through its home record (domain.linking),
    # which may refuse it; the profile must not claim it before that answer
    e1 = event("page_view", "p1", 1, url="u")
    e2 = event("page_view", "p2", 2, url="u")
    e2["ids"] = {"loyalty_id": "L-7", "device_id": "d-1"}

    state = run([e1, e2])

    assert state["identifiers"] == {"loyalty_id": ["L-7"]}


def test_spend_older_than_the_tier_window_does_not_set_the_earning_tier():
    # docs/domain.md, "Loyalty": tiers come from qualifying spend over the trailing 365 days;
    # a gold shopper who has not bought for two years earns at the member rate again
    state = run([purchase("e1", 1, total=100_000, at=T0)])

    later = apply(state, purchase("e2", 2, total=10_000, at=T0 + 730 * MS_PER_DAY), RULES)

    (earned,) = [d for d in later.decisions if d.payload.get("outcome") == "points_earned"]
    assert earned.payload["multiplier"] == 1.0
    assert later.state["points"] == 1_000 + 100


def test_project_is_the_single_customer_view():
    state = run(
        [
            event("loyalty_signup", "s1", 1, at=T0),
            purchase("e1", 2, order_id="O-1", total=40_000, at=T0 + 1_000),
            event("page_view", "p1", 3, at=T0 + 2_000, url="u"),
        ]
    )

    assert project(state, RULES) == {
        "customer_id": CID,
        "points": 100 + 400,
        "touchpoints": 3,
        "tier": "silver",
        "qualifying_spend_minor": 40_000,
        "tier_downgrade_at": "",
        "points_expire_at": iso(T0 + 1_000 + 365 * MS_PER_DAY),
        "orders": 1,
        "last_purchase_at": iso(T0 + 1_000),
        "open_cart_value_minor": 0,
        # one order of 400.00 just now: R 5, F 1, M 2 (>= 200.00), a new customer
        "r_score": 5,
        "f_score": 1,
        "m_score": 2,
        "segment": "New",
        "orders_365": 1,
        "spend_365_minor": 40_000,
        "avg_order_value_minor": 40_000,
        "avg_days_between_purchases": None,
        "consent_email_marketing": "",
        "consent_sms_marketing": "",
        "consent_push_marketing": "",
        "consent_profiling": "",
        "updated_at": iso(T0 + 2_000),
        "version": 3,
    }


def test_project_of_a_customer_who_never_bought():
    state = run([event("page_view", "p1", 1, url="u")])

    view = project(state, RULES)

    assert view["tier"] == "member"
    assert view["last_purchase_at"] == ""
    assert view["orders"] == 0
    assert view["updated_at"] == iso(T0)


@pytest.mark.parametrize(
    ("spend", "tier"),
    [(0, "member"), (34_999, "member"), (35_000, "silver"), (99_999, "silver"), (100_000, "gold")],
)
def test_project_tier_thresholds(spend, tier):
    state = run([purchase("e1", 1, total=spend)])

    assert project(state, RULES)["tier"] == tier


def cart_event(type_: str, event_id: str, offset: int, sku: str, qty: int, **kw: Any):
    return event(
        type_,
        event_id,
        offset,
        cart_id=kw.pop("cart_id", "C-1"),
        sku=sku,
        quantity=qty,
        unit_price_minor=kw.pop("unit", 2_500),
        currency="EUR",
        **kw,
    )


def test_cart_value_follows_adds_and_removes_and_a_purchase_closes_it():
    state = run(
        [
            cart_event("add_to_cart", "a1", 1, "SKU-1", 2, at=T0),
            cart_event("add_to_cart", "a2", 2, "SKU-2", 1, unit=1_000, at=T0 + 1),
            cart_event("remove_from_cart", "r1", 3, "SKU-1", 1, at=T0 + 2),
        ]
    )
    assert project(state, RULES)["open_cart_value_minor"] == 2_500 + 1_000

    # a POS sale without a cart id closes the shopper's current cart
    state = run([purchase("e1", 4, total=3_500, at=T0 + 3)], state)
    assert project(state, RULES)["open_cart_value_minor"] == 0


def test_a_late_cart_event_does_not_reopen_a_bought_cart():
    state = run(
        [
            cart_event("add_to_cart", "a1", 1, "SKU-1", 1, at=T0),
            purchase("e1", 2, cart_id="C-1", at=T0 + 10),
            cart_event("add_to_cart", "a2", 3, "SKU-2", 1, at=T0 + 5),
        ]
    )
    assert project(state, RULES)["open_cart_value_minor"] == 0


def test_a_cart_first_seen_late_is_closed_by_the_earlier_purchase_without_a_cart_id():
    # a POS sale at T0 + 10 names no cart; the web add at T0 reaches the profile after it
    state = run(
        [
            purchase("e1", 1, at=T0 + 10),
            cart_event("add_to_cart", "a1", 2, "SKU-1", 1, at=T0),
        ]
    )
    assert project(state, RULES)["open_cart_value_minor"] == 0

    state = run([cart_event("add_to_cart", "a2", 3, "SKU-2", 1, cart_id="C-2", at=T0 + 20)], state)
    assert project(state, RULES)["open_cart_value_minor"] == 2_500


SHOPPING = [
    cart_event("add_to_cart", "a1", 1, "SKU-1", 1, cart_id="C-1", at=T0),
    cart_event("add_to_cart", "a2", 2, "SKU-2", 2, cart_id="C-2", at=T0 + 5),
    purchase("e1", 3, total=5_000, at=T0 + 10),  # in store, naming no cart
    cart_event("add_to_cart", "a3", 4, "SKU-3", 1, unit=700, cart_id="C-1", at=T0 + 2),
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(len(SHOPPING)))))
def test_a_purchase_naming_no_cart_buys_the_same_cart_whatever_the_arrival_order(order):
    # in event time the sale closed C-2, the most recently active cart; C-1 stays open
    state = run([dict(SHOPPING[i], **{"in": [0, n]}) for n, i in enumerate(order)])

    assert state["carts"]["C-2"].closed_at == T0 + 10
    assert state["carts"]["C-1"].closed_at is None
    assert project(state, RULES)["open_cart_value_minor"] == 2_500 + 700


EDITS = [
    cart_event("add_to_cart", "a1", 1, "SKU-1", 2, at=T0),
    cart_event("remove_from_cart", "r1", 2, "SKU-1", 1, at=T0 + 1),
    cart_event("add_to_cart", "a2", 3, "SKU-2", 1, unit=1_000, at=T0 + 2),
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(len(EDITS)))))
def test_a_removal_read_before_its_addition_nets_out_as_in_event_time(order):
    state = run([dict(EDITS[i], **{"in": [0, n]}) for n, i in enumerate(order)])

    assert project(state, RULES)["open_cart_value_minor"] == 2_500 + 1_000
