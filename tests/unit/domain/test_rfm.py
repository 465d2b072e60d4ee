"""RFM scores, figures and win_back (docs/domain.md, "Recency, frequency, monetary"): hand-computed expectations, in
event time, against the default rules (R <= 30/60/90/180 days, F >= 10/6/3/2/1 orders,
M >= 200000/100000/50000/20000/1 minor, window 365 days, win_back after 90 days, >= 2 orders)."""

import dataclasses
from typing import Any

import msgspec
import pytest

from touchstream.config.rules import load_rules
from touchstream.domain import rfm
from touchstream.domain.clock import MS_PER_DAY as DAY
from touchstream.domain.clock import iso
from touchstream.domain.customer import new_state
from touchstream.domain.fold import fold
from touchstream.domain.records import Figures, Grant, Order, Rfm, Scores

RULES = load_rules(None)
NOW = 1_751_328_000_000  # 2025-07-01T00:00:00.000Z


def customer(cid: str, *orders: tuple[int, int, int], at: int = NOW) -> dict[str, Any]:
    """A state whose orders are (days before ``at``, net, refunded), as the purchase path
    leaves them (first/last purchase over all orders, refunded or not)."""
    state = new_state(cid)
    state["rfm"] = rfm.default()
    for i, (days, net, ref) in enumerate(orders):
        buy(state, f"{cid}-{i}", at - days * DAY, net, ref)
    return state


def buy(state: dict[str, Any], order_id: str, at: int, net: int, ref: int = 0) -> None:
    order = Order(at=at, net=net, eff=net * 1000, pts=0, ref=ref)
    state["orders"] = {**state["orders"], order_id: order}
    times = [o.at for o in state["orders"].values()]
    state["first_purchase_at"], state["last_purchase_at"] = min(times), max(times)


def consent(state: dict[str, Any], granted: bool, at: int) -> None:
    state["consent"] = {**state["consent"], "profiling": Grant(granted=granted, at=at)}


def triple(state: dict[str, Any]) -> tuple[Any, ...] | None:
    s = state["rfm"].scores
    return None if s is None else (s.r, s.f, s.m, s.segment)


# a scripted year: (days ago, net, refunded) per order, and the hand-computed (R, F, M, segment)
YEAR = {
    # 10 orders, last 5 days ago, 300000 spent
    "champion": (
        [(d, 30_000, 0) for d in (95, 85, 75, 65, 55, 45, 35, 25, 15, 5)],
        (5, 5, 5, "Champions"),
    ),
    # 6 orders, last 70 days ago, 60000 spent
    "loyal": ([(d, 10_000, 0) for d in (70, 100, 130, 160, 190, 220)], (3, 4, 3, "Loyal")),
    "new": ([(3, 25_000, 0)], (5, 1, 2, "New")),
    # a 100 % discounted order counts as an order, with no spend
    "freebie": ([(10, 0, 0)], (5, 1, 0, "New")),
    # 40000 + (80000 - 30000 returned) = 90000: M 3, not the 4 of 120000
    "potential": ([(40, 40_000, 0), (50, 80_000, 30_000)], (4, 2, 3, "Potential loyalist")),
    # 3 orders, last 120 days ago, 180000 spent
    "at_risk": ([(d, 60_000, 0) for d in (120, 150, 200)], (2, 3, 4, "At risk")),
    # the fully refunded order does not count: F 2 (At risk with it), spend 40000
    "hibernating": (
        [(100, 20_000, 0), (150, 30_000, 30_000), (250, 20_000, 0)],
        (2, 2, 2, "Hibernating"),
    ),
    "lost_in_window": ([(200, 20_000, 0)], (1, 1, 2, "Lost")),
    # no purchase in 365 days: F and M are 0
    "gone": ([(d, 50_000, 0) for d in (400, 450, 500)], (1, 0, 0, "Lost")),
    "never": ([], None),
    "returned_everything": ([(20, 30_000, 30_000)], None),
}
# at least 2 counted orders and none for 90 days: a first evaluation proposes the win-back
LAPSED = {"at_risk", "hibernating", "gone"}


@pytest.mark.parametrize("cid", YEAR)
def test_a_scripted_year_scores_as_computed_by_hand(cid):
    orders, expected = YEAR[cid]
    state = customer(cid, *orders)

    proposed = rfm.evaluate(state, NOW, RULES)

    assert [d.payload["type"] for d in proposed] == (["win_back"] if cid in LAPSED else [])
    assert triple(state) == expected
    profile = rfm.project(state, RULES)
    fields = ("r_score", "f_score", "m_score", "segment")
    assert tuple(profile[f] for f in fields) == (expected or (None, None, None, None))


# hand-computed figures: (orders_365, spend_365_minor, avg_order_value_minor, avg days between)
FIGURES = {
    "champion": (10, 300_000, 30_000, 10.0),  # (95 - 5) / 9
    "potential": (2, 90_000, 45_000, 10.0),
    "hibernating": (2, 40_000, 20_000, 150.0),  # the refunded order is not a purchase
    "gone": (0, 0, 0, 50.0),  # (500 - 400) / 2, over all orders
    "new": (1, 25_000, 25_000, None),
    "never": (0, 0, 0, None),
}


@pytest.mark.parametrize("cid", FIGURES)
def test_figures_over_the_window_and_the_whole_history(cid):
    state = customer(cid, *YEAR[cid][0])
    rfm.evaluate(state, NOW, RULES)

    got = rfm.project(state, RULES)
    keys = ("orders_365", "spend_365_minor", "avg_order_value_minor", "avg_days_between_purchases")
    assert tuple(got[k] for k in keys) == FIGURES[cid]


def test_average_order_value_is_floored_and_days_between_rounded_to_one_decimal():
    state = new_state("c")
    buy(state, "a", NOW - 10 * DAY - 8 * 3_600_000, 101)  # 10 d 8 h to the last, 2 gaps
    buy(state, "b", NOW - 5 * DAY, 100)
    buy(state, "c", NOW, 101)

    got = rfm.figures(state, NOW, RULES)

    assert got.avg_order_value_minor == 100  # 302 // 3
    assert got.avg_days_between_purchases == 5.2  # 5.1666...


def test_project_before_any_evaluation_has_no_scores_and_zero_figures():
    state = customer("c", (1, 1_000, 0))

    assert rfm.default() == Rfm(at=None, scores=None, due=None, lapse=None, figures=None)
    assert rfm.project(state, RULES) == {
        "r_score": None,
        "f_score": None,
        "m_score": None,
        "segment": None,
        "orders_365": 0,
        "spend_365_minor": 0,
        "avg_order_value_minor": 0,
        "avg_days_between_purchases": None,
    }
    assert rfm.due(state) is None


@pytest.mark.parametrize(
    ("days", "extra_ms", "r"),
    [
        (30, 0, 5),
        (30, 1, 4),
        (60, 0, 4),
        (60, 1, 3),
        (90, 0, 3),
        (90, 1, 2),
        (180, 0, 2),
        (180, 1, 1),
    ],
)
def test_recency_boundaries_are_inclusive_to_the_millisecond(days, extra_ms, r):
    state = new_state("c")
    buy(state, "o", NOW - days * DAY - extra_ms, 10_000)

    got = rfm.scores(state, NOW, RULES)

    assert got is not None and got.r == r


@pytest.mark.parametrize(("extra_ms", "f"), [(0, 0), (1, 1)])
def test_an_order_leaves_the_window_exactly_365_days_later(extra_ms, f):
    state = new_state("c")
    buy(state, "o", NOW - 365 * DAY + extra_ms, 10_000)

    got = rfm.scores(state, NOW, RULES)

    assert got is not None
    assert (got.f, got.m) == (f, f)  # 10000 minor: M 1 (>= 1, < 20000)
    assert got.segment == "Lost"


def test_segment_list_first_match_wins():
    assert rfm.segment(5, 4, 1) == "Champions"
    assert rfm.segment(1, 5, 5) == "Loyal"
    assert rfm.segment(4, 1, 5) == "New"
    assert rfm.segment(4, 3, 5) == "Potential loyalist"
    assert rfm.segment(1, 3, 5) == "At risk"
    assert rfm.segment(1, 2, 5) == "Lost"
    assert rfm.segment(3, 3, 5) == "Hibernating"
    assert rfm.segment(2, 2, 5) == "Hibernating"
    assert rfm.segment(5, 0, 0) == "Lost"  # nothing in the window


def test_a_champion_slides_to_at_risk_then_lost_with_no_new_order():
    # 3 orders ~10 months ago that leave the window one by one, and 3 recent ones; 50000 each
    state = customer("c", *[(d, 50_000, 0) for d in (300, 290, 280, 20, 10, 0)])
    walk = []
    at: int | None = NOW
    while at is not None:
        proposed = rfm.evaluate(state, at, RULES)
        scored = triple(state)
        assert scored is not None
        walk.append(((at - NOW) / DAY, *scored, [d.payload["type"] for d in proposed]))
        assert rfm.due(state) == rfm.next_change(state, at, RULES)
        at = rfm.due(state)

    ms = 1 / DAY
    assert walk == [
        (0, 5, 4, 5, "Champions", []),  # 6 orders, 300000
        (30 + ms, 4, 4, 5, "Champions", []),
        (60 + ms, 3, 4, 5, "Loyal", []),
        (65, 3, 3, 5, "Hibernating", []),  # day -300 leaves: 5 orders, 250000
        (75, 3, 3, 5, "Hibernating", []),  # 4, 200000
        (85, 3, 3, 4, "Hibernating", []),  # 3, 150000
        (90, 3, 3, 4, "Hibernating", ["win_back"]),
        (90 + ms, 2, 3, 4, "At risk", []),
        (180 + ms, 1, 3, 4, "At risk", []),
        (345, 1, 2, 4, "Lost", []),  # day -20 leaves: 2 orders, 100000
        (355, 1, 1, 3, "Lost", []),  # 1, 50000
        (365, 1, 0, 0, "Lost", []),  # nothing in the window
    ]


def test_evaluate_replaces_the_rfm_record_and_leaves_the_old_one_alone():
    state = customer("c", (1, 10_000, 0))
    rfm.evaluate(state, NOW, RULES)
    before = state["rfm"]
    snapshot = msgspec.structs.replace(before)

    rfm.evaluate(state, NOW + 200 * DAY, RULES)

    assert before == snapshot and state["rfm"] is not before
    assert state["rfm"].at == NOW + 200 * DAY


def test_win_back_fires_once_at_90_days_for_two_orders():
    last = NOW - 10 * DAY
    state = customer("c", (40, 70_000, 0), (10, 50_000, 0))

    assert rfm.evaluate(state, NOW, RULES) == []
    assert rfm.due(state) == last + 30 * DAY + 1  # R boundary before the win-back moment
    assert rfm.evaluate(state, last + 90 * DAY - 1, RULES) == []
    assert rfm.due(state) == last + 90 * DAY

    (decision,) = rfm.evaluate(state, last + 90 * DAY, RULES)

    p = decision.payload
    assert (decision.kind, p["type"], p["rule"]) == ("trigger", "win_back", "win_back")
    assert (p["cause"], p["at"]) == (f"lapse:{last}", last + 90 * DAY)
    assert p["evidence"] == {
        "last_purchase_at": iso(last),
        "orders": 2,
        "days_since_last_purchase": 90,
        "spend_365_minor": 120_000,
        "segment": "Hibernating",  # R 3, F 2
    }
    assert state["rfm"].lapse == last
    assert rfm.due(state) == last + 90 * DAY + 1  # the next R boundary, not the win-back
    assert rfm.evaluate(state, last + 90 * DAY, RULES) == []
    assert rfm.evaluate(state, last + 200 * DAY, RULES) == []


def test_a_late_evaluation_proposes_the_same_win_back():
    last = NOW - 10 * DAY
    on_time = customer("c", (40, 70_000, 0), (10, 50_000, 0))
    late = customer("c", (40, 70_000, 0), (10, 50_000, 0))

    (a,) = rfm.evaluate(on_time, last + 90 * DAY, RULES)
    (b,) = rfm.evaluate(late, last + 300 * DAY, RULES)

    assert a == b


def test_no_win_back_for_a_single_order_or_a_fully_refunded_second_one():
    one = customer("c", (10, 50_000, 0))
    refunded = customer("d", (40, 70_000, 70_000), (10, 50_000, 0))

    for state in (one, refunded):
        assert rfm.evaluate(state, NOW + 100 * DAY, RULES) == []
        assert state["rfm"].lapse is None
        # the R 3 -> 2 boundary, not the win-back moment 1 ms before it
        assert rfm.next_change(state, NOW + 79 * DAY, RULES) == NOW + 80 * DAY + 1


def test_a_new_purchase_rearms_win_back_for_the_next_lapse():
    state = customer("c", (40, 70_000, 0), (10, 50_000, 0))
    first = NOW - 10 * DAY
    (old,) = rfm.evaluate(state, first + 90 * DAY, RULES)

    again = first + 100 * DAY
    buy(state, "back", again, 20_000)
    assert rfm.evaluate(state, again, RULES) == []
    assert rfm.evaluate(state, again + 90 * DAY - 1, RULES) == []
    (new,) = rfm.evaluate(state, again + 90 * DAY, RULES)

    assert old.payload["cause"] == f"lapse:{first}"
    assert (new.payload["cause"], new.payload["at"]) == (f"lapse:{again}", again + 90 * DAY)
    assert new.payload["evidence"]["orders"] == 3
    assert rfm.evaluate(state, again + 91 * DAY, RULES) == []


def test_win_back_thresholds_come_from_the_rules():
    rules = dataclasses.replace(
        RULES, rfm=dataclasses.replace(RULES.rfm, win_back_days=30, win_back_min_orders=3)
    )
    two = customer("c", (40, 70_000, 0), (10, 50_000, 0))
    three = customer("d", (50, 1_000, 0), (40, 70_000, 0), (10, 50_000, 0))

    assert rfm.evaluate(two, NOW + 20 * DAY, rules) == []
    (d,) = rfm.evaluate(three, NOW + 20 * DAY, rules)
    assert d.payload["at"] == NOW + 20 * DAY


def test_refused_profiling_clears_scores_and_granting_again_restores_them():
    state = customer("c", (40, 70_000, 0), (10, 50_000, 0))
    rfm.evaluate(state, NOW, RULES)
    assert triple(state) == (5, 2, 4, "Potential loyalist")

    consent(state, False, NOW + DAY)
    rfm.evaluate(state, NOW + DAY, RULES)
    assert state["rfm"].scores is None
    assert rfm.project(state, RULES)["segment"] is None
    # no score can change any more: the next moment is the win-back, not an R boundary
    assert rfm.due(state) == NOW + 80 * DAY

    consent(state, True, NOW + 2 * DAY)
    rfm.evaluate(state, NOW + 2 * DAY, RULES)
    assert triple(state) == (5, 2, 4, "Potential loyalist")
    assert rfm.due(state) == NOW + 20 * DAY + 1


def test_win_back_does_not_depend_on_profiling_consent():
    state = customer("c", (40, 70_000, 0), (10, 50_000, 0))
    consent(state, False, NOW)

    (d,) = rfm.evaluate(state, NOW + 80 * DAY, RULES)

    assert d.payload["evidence"]["segment"] is None
    assert state["rfm"].scores is None


def _pair() -> tuple[dict[str, Any], dict[str, Any]]:
    a = customer("a", (200, 30_000, 0), (100, 40_000, 0))
    a["orders"]["shared"] = Order(at=NOW - 100 * DAY, net=40_000, eff=40_000_000, pts=0, ref=0)
    del a["orders"]["a-1"]
    b = customer("b", (50, 25_000, 0))
    b["orders"]["shared"] = a["orders"]["shared"]
    rfm.evaluate(a, NOW - 10 * DAY, RULES)  # 90 days after a's last purchase: win_back
    rfm.evaluate(b, NOW, RULES)
    return a, b


def test_fold_is_order_insensitive_and_keeps_the_later_lapse():
    a, b = _pair()
    assert a["rfm"].lapse == NOW - 100 * DAY and b["rfm"].lapse is None

    ab = rfm.fold_rfm(a, b, fold(a, b, RULES), RULES)
    ba = rfm.fold_rfm(b, a, fold(b, a, RULES), RULES)

    assert ab == ba
    # 3 orders (-200, -100, -50), 95000, last 50 days ago; scored at the later evaluation
    assert ab == Rfm(
        at=NOW,
        scores=Scores(r=4, f=3, m=3, segment="Potential loyalist"),
        due=NOW + 10 * DAY + 1,  # R 4 -> 3
        lapse=NOW - 100 * DAY,  # the merged last purchase (-50) is still armed
        figures=Figures(
            orders_365=3,
            spend_365_minor=95_000,
            avg_order_value_minor=31_666,
            avg_days_between_purchases=75.0,  # (200 - 50) / 2
        ),
    )


def test_a_fold_that_makes_a_win_back_owed_leaves_it_due_now():
    a = customer("a", (200, 30_000, 0))
    b = customer("b", (120, 25_000, 0))
    for state in (a, b):
        assert rfm.evaluate(state, NOW, RULES) == []  # one order each

    ab = rfm.fold_rfm(a, b, fold(a, b, RULES), RULES)
    ba = rfm.fold_rfm(b, a, fold(b, a, RULES), RULES)
    merged = {**fold(a, b, RULES), "rfm": ab}

    assert ab == ba and ab.due == NOW and ab.lapse is None
    (d,) = rfm.evaluate(merged, NOW, RULES)
    assert (d.payload["cause"], d.payload["at"]) == (f"lapse:{NOW - 120 * DAY}", NOW - 30 * DAY)


def test_a_fold_of_two_lapses_keeps_the_later_and_proposes_it_no_more():
    a = customer("a", (300, 30_000, 0), (200, 30_000, 0))
    b = customer("b", (150, 25_000, 0), (120, 25_000, 0))
    for state in (a, b):
        assert len(rfm.evaluate(state, NOW, RULES)) == 1  # each proposes its win-back
    assert (a["rfm"].lapse, b["rfm"].lapse) == (NOW - 200 * DAY, NOW - 120 * DAY)

    ab = rfm.fold_rfm(a, b, fold(a, b, RULES), RULES)
    ba = rfm.fold_rfm(b, a, fold(b, a, RULES), RULES)
    merged = {**fold(a, b, RULES), "rfm": ab}

    assert ab == ba and ab.lapse == NOW - 120 * DAY
    assert ab.due == NOW - 120 * DAY + 180 * DAY + 1  # R 2 -> 1, no win-back left
    assert rfm.evaluate(merged, NOW, RULES) == []


def test_an_order_after_the_evaluation_time_is_due_when_it_enters_the_window():
    # evaluated at a late event's time, before a purchase already on the profile
    state = customer("c", (0, 10_000, 0))
    rfm.evaluate(state, NOW - 10 * DAY, RULES)

    assert state["rfm"].scores.f == 0
    assert rfm.due(state) == NOW
    rfm.evaluate(state, NOW, RULES)
    assert triple(state) == (5, 1, 1, "New")


def test_a_late_event_does_not_take_the_scores_back_in_time():
    state = customer("c", (300, 30_000, 0), (10, 30_000, 0))
    rfm.evaluate(state, NOW, RULES)
    now_scores = state["rfm"].scores

    rfm.evaluate(state, NOW - 200 * DAY, RULES)  # a late return, 200 days old

    assert state["rfm"].at == NOW and state["rfm"].scores == now_scores
    assert state["rfm"].figures.orders_365 == 2
