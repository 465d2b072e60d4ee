"""The loyalty ledger (docs/domain.md, "Loyalty") through the offline stage, timers included."""

import itertools
from dataclasses import replace
from typing import Any

import fastjsonschema
import orjson
import pytest

import touchstream.schemas
from touchstream.config.rules import Campaign, load_rules
from touchstream.domain import loyalty
from touchstream.domain.clock import MS_PER_DAY, iso
from touchstream.domain.fold import fold
from touchstream.domain.identity import home_of
from touchstream.domain.profile import project
from touchstream.offline import OfflineStage
from touchstream.simulator.factory import internal

RULES = load_rules(None)
NOW = 1_795_179_807_512
DAY = MS_PER_DAY
CID = home_of("loyalty_id", "L-7")
IDS = {"loyalty_id": "L-7"}
EMAIL = {"email_marketing": True}


class Member:
    """One member's events through the oracle; ``ts`` (ingest's wall clock) is ``NOW``."""

    def __init__(self, rules: Any = RULES) -> None:
        self.stage = OfflineStage(rules, partitions=1)
        self.n = 0

    def send(self, type_: str, at: int, **props: Any) -> "Member":
        self.n += 1
        e = internal(CID, IDS, type_, f"e{self.n}", self.n, at=at, **props)
        e["ts"] = NOW
        self.stage.submit([e])
        self.stage.drain()
        return self

    def buy(self, order_id: str, total: int, at: int, items: Any = ()) -> "Member":
        return self.send(
            "purchase", at, order_id=order_id, total_minor=total, currency="EUR", items=list(items)
        )

    def refund(self, return_id: str, order_id: str, refund: int, at: int) -> "Member":
        return self.send(
            "return",
            at,
            return_id=return_id,
            order_id=order_id,
            refund_minor=refund,
            currency="EUR",
        )

    def redeem(self, redemption_id: str, points: int, at: int) -> "Member":
        return self.send("redemption", at, redemption_id=redemption_id, points=points)

    @property
    def state(self) -> dict[str, Any]:
        return self.stage.table[CID]

    def outcomes(self) -> list[tuple[str, int | None]]:
        return [
            (d.payload["outcome"], d.payload.get("points"))
            for d in self.stage.decisions
            if d.kind == "loyalty"
        ]

    def triggers(self) -> list[tuple[str, str, str | None]]:
        return [
            (d.kind, d.payload["type"], d.payload.get("suppressed_reason"))
            for d in self.stage.decisions
            if d.kind.startswith("trigger")
        ]


def test_a_partial_return_reverses_its_share_of_points_and_spend_once():
    m = Member().buy("O-1", 40_000, NOW - 10 * DAY)  # 400 points at the member rate
    m.refund("R-1", "O-1", 16_000, NOW - 9 * DAY)  # 40 % back
    m.refund("R-1", "O-1", 16_000, NOW - 9 * DAY)  # the same return_id again, new event id

    assert m.state["points"] == 240
    assert m.state["qualifying_spend_minor"] == 24_000
    points = [o for o in m.outcomes() if o[0].startswith("points")]
    assert points == [("points_earned", 400), ("points_reversed", -160)]


def test_points_reversed_round_up_and_never_exceed_what_the_order_earned():
    m = Member().buy("O-1", 1_099, NOW - DAY)  # 10 points
    m.refund("R-1", "O-1", 100, NOW)  # 9.1 % of 10 points: 0.9, rounded up to 1
    assert m.state["points"] == 9
    m.refund("R-2", "O-1", 5_000, NOW)  # more than was paid: capped at the order
    assert m.state["points"] == 0 and m.state["qualifying_spend_minor"] == 0


def test_a_return_after_the_points_were_spent_leaves_a_negative_balance():
    m = Member().buy("O-1", 50_000, NOW - 3 * DAY).redeem("RD-1", 500, NOW - 2 * DAY)
    m.refund("R-1", "O-1", 50_000, NOW - DAY)

    assert m.state["points"] == -500
    assert m.outcomes()[-1] == ("points_reversed", -500)


def test_a_return_for_an_unknown_order_is_reported_then_applied_when_the_order_arrives():
    m = Member().refund("R-1", "O-9", 5_000, NOW - DAY)

    (unmatched,) = [d.payload for d in m.stage.decisions if d.kind == "loyalty"]
    assert unmatched["outcome"] == "return_unmatched" and unmatched["reason"] == "unknown_order"
    assert m.state["points"] == 0

    m.buy("O-9", 10_000, NOW - 2 * DAY)  # the order, delivered late from another partition
    assert m.state["points"] == 50 and m.state["qualifying_spend_minor"] == 5_000
    assert m.outcomes()[-1] == ("points_reversed", -50)


def test_a_return_matched_late_lowers_the_spend_when_the_clock_reaches_it():
    # found by the reliability suite: the order arrives after its return and after another
    # order moved the customer's time, so the return's refund lies ahead of the evaluation
    m = Member().refund("R-1", "O-9", 4_000, NOW - DAY)
    m.buy("O-1", 20_000, NOW - 36 * 3_600_000)
    m.buy("O-9", 10_000, NOW - 2 * DAY)
    m.send("page_view", NOW, url="/")  # the partition clock is past the return's time

    assert project(m.state, RULES)["qualifying_spend_minor"] == 30_000 - 4_000


def test_an_over_balance_redemption_is_rejected_with_its_reason_and_changes_nothing():
    m = Member().buy("O-1", 30_000, NOW - DAY).redeem("RD-1", 301, NOW)

    rejected = [d.payload for d in m.stage.decisions if d.kind == "loyalty"][-1]
    assert rejected["outcome"] == "redemption_rejected"
    assert rejected["reason"] == "insufficient_points"
    assert rejected["points_requested"] == 301 and rejected["balance"] == 300
    assert m.state["points"] == 300

    m.redeem("RD-2", 300, NOW).redeem("RD-2", 300, NOW)  # same redemption_id twice
    assert m.state["points"] == 0
    assert m.outcomes()[-1] == ("points_redeemed", -300)


def test_points_expire_after_a_year_without_purchase_with_one_warning_30_days_before():
    start = NOW - 400 * DAY
    m = Member().send("consent_updated", start, purposes=EMAIL).buy("O-1", 20_000, start)
    m.stage.tick(start + 334 * DAY, NOW)
    assert m.state["points"] == 200 and m.triggers() == []

    m.stage.tick(start + 335 * DAY, NOW)
    (warning,) = [d for d in m.stage.decisions if d.kind.startswith("trigger")]
    assert warning.payload["type"] == "points_expiring"
    assert warning.payload["occurred_at"] == iso(start + 335 * DAY)
    assert warning.payload["evidence"]["expires_at"] == iso(start + 365 * DAY)

    m.stage.tick(start + 365 * DAY, NOW)
    assert m.state["points"] == 0
    assert m.outcomes()[-1] == ("points_expired", -200)
    m.stage.tick(start + 399 * DAY, NOW)
    assert [t for t in m.triggers() if t[1] == "points_expiring"] == [
        ("trigger_audit", "points_expiring", "stale")
    ]


def test_a_purchase_before_the_deadline_moves_the_expiry_on():
    start = NOW - 20 * DAY
    m = Member().buy("O-1", 20_000, start - 300 * DAY).buy("O-2", 1_000, start)
    m.stage.tick(start - 300 * DAY + 366 * DAY, NOW)

    assert m.state["points"] == 210
    assert [t for t in m.triggers() if t[1] == "points_expiring"] == []


def gold_member(at: int) -> Member:
    """Gold since ``at``: 1,000.00 of qualifying spend in one order, consent to email."""
    return Member().send("consent_updated", at, purposes=EMAIL).buy("G-1", 100_000, at)


def test_falling_below_the_tier_starts_a_grace_period_with_one_downgrade_warning():
    at = NOW - 400 * DAY
    m = gold_member(at).buy("S-1", 20_000, at + 200 * DAY)
    m.stage.tick(at + 365 * DAY, NOW)  # G-1 leaves the trailing window

    risks = [d.payload for d in m.stage.decisions if d.kind.startswith("trigger")]
    risks = [r for r in risks if r["type"] == "tier_downgrade_risk"]
    assert len(risks) == 1
    assert risks[0]["evidence"]["needed_minor"] == 100_000 - 20_000
    assert risks[0]["evidence"]["downgrade_at"] == iso(at + 395 * DAY)
    assert m.state["loyalty"].tier == "gold"  # kept through the grace period

    m.stage.tick(at + 394 * DAY, NOW)
    assert m.state["loyalty"].tier == "gold"
    m.stage.tick(at + 395 * DAY, NOW)
    assert m.state["loyalty"].tier == "member"
    changed = [d.payload for d in m.stage.decisions if d.payload.get("outcome") == "tier_changed"]
    assert [(c["tier_before"], c["tier"]) for c in changed] == [
        ("member", "gold"),
        ("gold", "member"),
    ]
    assert changed[-1]["at"] == at + 395 * DAY
    assert (
        len([1 for d in m.stage.decisions if d.payload.get("type") == "tier_downgrade_risk"]) == 1
    )


def test_a_tick_per_partition_moves_only_the_clocks_it_names():
    # the chaos harness moves the oracle's clocks to those each live partition reports
    at = NOW - 400 * DAY
    named, other = gold_member(at), gold_member(at)
    named.stage.tick({0: at + 365 * DAY}, NOW)  # G-1 leaves the trailing window
    other.stage.tick({1: at + 365 * DAY}, NOW)  # a partition this stage does not have

    moved = {t[1] for t in named.triggers()} - {t[1] for t in other.triggers()}
    assert {"tier_downgrade_risk", "points_expiring"} <= moved
    assert "tier_downgrade_risk" not in {t[1] for t in other.triggers()}


def test_buying_again_inside_the_grace_period_keeps_the_tier():
    at = NOW - 380 * DAY
    m = gold_member(at)
    m.stage.tick(at + 365 * DAY, NOW)
    m.buy("G-2", 100_000, at + 370 * DAY)
    m.stage.tick(at + 400 * DAY, NOW)

    assert m.state["loyalty"].tier == "gold" and m.state["loyalty"].risk is None
    # the top tier was held throughout: no second VIP decision
    assert [d for d in m.stage.decisions if d.payload.get("type") == "vip_status"][1:] == []


def test_calendar_year_mode_holds_a_tier_through_the_next_year():
    rules = replace(RULES, loyalty=replace(RULES.loyalty, tier_mode="calendar_year"))
    jan_2025 = 1_735_689_600_000  # 2025-01-01T00:00:00Z
    jan_2026, jan_2027 = jan_2025 + 365 * DAY, jan_2025 + 730 * DAY
    m = Member(rules).buy("G-1", 100_000, jan_2025 + 100 * DAY)
    m.stage.tick(jan_2026 + 200 * DAY, NOW)
    assert m.state["loyalty"].tier == "gold"  # earned in 2025, held through 2026

    m.stage.tick(jan_2027, NOW)
    assert m.state["loyalty"].risk == ("gold", jan_2027)
    m.stage.tick(jan_2027 + 30 * DAY, NOW)
    assert m.state["loyalty"].tier == "member"


def test_a_category_campaign_multiplies_the_points_of_its_items_only():
    campaign = Campaign(
        "double-shoes", 2.0, "shoes", "2026-11-27T00:00:00Z", "2026-11-30T23:59:59Z"
    )
    rules = replace(RULES, loyalty=replace(RULES.loyalty, campaigns=(campaign,)))
    items = [
        {"sku": "S", "quantity": 1, "unit_price_minor": 6_000, "category": "shoes"},
        {"sku": "T", "quantity": 2, "unit_price_minor": 2_000, "category": "tops"},
    ]
    black_friday = 1_795_824_000_000  # 2026-11-28T00:00:00Z
    m = Member(rules).buy("O-1", 10_000, black_friday, items)  # 60 x 2 + 40 points
    m.buy("O-2", 10_000, black_friday + 10 * DAY, items)  # after the campaign: 100

    assert m.outcomes() == [("points_earned", 160), ("points_earned", 100)]


def test_vip_status_only_for_a_recent_purchase_reaching_the_top_tier():
    m = gold_member(NOW - 400 * DAY)
    m.send("email_open", NOW, campaign_id="vip")  # time moves on; no purchase

    assert [t for t in m.triggers() if t[1] == "vip_status"] == [
        ("trigger_audit", "vip_status", "stale")
    ]
    m.buy("G-2", 100_000, NOW)
    vip = [t for t in m.triggers() if t[1] == "vip_status"]
    assert vip == [("trigger_audit", "vip_status", "stale"), ("trigger_out", "vip_status", None)]


def test_replaying_a_year_gives_the_same_outcome_and_trigger_ids():
    def year() -> list[str]:
        m = gold_member(NOW - 360 * DAY).buy("S-1", 30_000, NOW - 200 * DAY)
        m.refund("R-1", "S-1", 10_000, NOW - 190 * DAY).redeem("RD-1", 900, NOW - 100 * DAY)
        m.stage.tick(NOW, NOW)
        return [
            d.payload.get("outcome_id") or d.payload["trigger_id"]
            for d in m.stage.decisions
            if d.kind in ("loyalty", "trigger_out", "trigger_audit")
        ]

    first = year()
    assert len(first) >= 6 and first == year()


def test_outcomes_follow_the_published_schema():
    path = touchstream.schemas.__path__[0] + "/loyalty/v1/outcome.json"
    with open(path, "rb") as f:
        validate = fastjsonschema.compile(orjson.loads(f.read()))
    m = gold_member(NOW - 400 * DAY).refund("R-1", "G-1", 1_000, NOW - 399 * DAY)
    m.refund("R-2", "X-1", 10, NOW - 399 * DAY).redeem("RD-1", 10, NOW - 398 * DAY)
    m.redeem("RD-2", 10**6, NOW - 398 * DAY).send("loyalty_signup", NOW - 397 * DAY)
    m.buy("E-1", 50_000, NOW - 401 * DAY)  # placed before G-1, arrived after: G-1 repriced
    m.stage.tick(NOW, NOW)
    kinds = set()
    for d in m.stage.decisions:
        if d.kind == "loyalty":
            validate(loyalty.published(d.payload))
            kinds.add(d.payload["outcome"])
    assert len(kinds) == 9  # every outcome type was produced and checked


def test_an_order_arriving_late_prices_the_orders_placed_after_it_again():
    late = Member().buy("O-2", 10_000, NOW - 2 * DAY).buy("O-1", 40_000, NOW - 3 * DAY)
    in_order = Member().buy("O-1", 40_000, NOW - 3 * DAY).buy("O-2", 10_000, NOW - 2 * DAY)

    # O-2 was placed at silver (O-1 had reached it): 1.25 x 100, whatever arrived first
    assert late.state["points"] == in_order.state["points"] == 400 + 125
    assert late.state["orders"] == in_order.state["orders"]
    assert ("points_repriced", 25) in late.outcomes()
    repriced = next(
        d.payload
        for d in late.stage.decisions
        if d.kind == "loyalty" and d.payload["outcome"] == "points_repriced"
    )
    assert (repriced["order_id"], repriced["multiplier"]) == ("O-2", 1.25)


ARRIVALS = [
    ("buy", "O-1", 40_000, NOW - 9 * DAY),
    ("buy", "O-2", 70_000, NOW - 8 * DAY),  # placed at silver (1.25), gold from here
    ("refund", "R-1", "O-2", 50_000, NOW - 7 * DAY),  # silver spend again, gold held in grace
    ("buy", "O-3", 10_000, NOW - 6 * DAY),
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(len(ARRIVALS)))))
def test_the_ledger_does_not_depend_on_the_order_orders_and_returns_arrive_in(order):
    """Each of a customer's inbound partitions is read in its own order: any arrival order of
    the same orders and returns gives the ledger of event time."""
    in_time, shuffled = Member(), Member()
    for member, sequence in ((in_time, range(len(ARRIVALS))), (shuffled, order)):
        for i in sequence:
            verb, *args = ARRIVALS[i]
            getattr(member, verb)(*args)
    want, got = in_time.state, shuffled.state

    assert got["points"] == want["points"] == 400 + 875 - 625 + 150
    assert got["orders"] == want["orders"]
    assert got["qualifying_spend_minor"] == want["qualifying_spend_minor"] == 70_000
    # every field the profile serves, but its version: a count of the changes it went through
    assert dict(project(got, RULES), version=0) == dict(project(want, RULES), version=0)
    balance = [p for kind, p in shuffled.outcomes() if p is not None]
    assert sum(balance) == got["points"]  # the published changes add up to the balance
    # every trigger of event time, under the same id: one message per cause, whatever came
    # first. Until a late order arrives the shopper really has a lower balance or tier, so a
    # warning, or a reward crossed again after a return, can come in between; the ledger
    # still ends equal
    assert trigger_ids(in_time) <= trigger_ids(shuffled)
    assert {kind for kind, _ in trigger_ids(in_time)} == {
        "vip_status",
        "reward_unlocked",
        "tier_downgrade_risk",
    }


def trigger_ids(member: Member) -> set[tuple[str, str]]:
    return {
        (d.payload["type"], d.payload["trigger_id"])
        for d in member.stage.decisions
        if d.kind in ("trigger_out", "trigger_audit")
    }


@pytest.mark.parametrize("first", ["a", "b"])
def test_merging_two_ledgers_counts_a_shared_order_return_and_redemption_once(first: str):
    a = Member().buy("O-1", 40_000, NOW - 5 * DAY).refund("R-1", "O-1", 10_000, NOW - 4 * DAY)
    b = Member().buy("O-1", 40_000, NOW - 5 * DAY).buy("O-2", 10_000, NOW - 3 * DAY)
    b.redeem("RD-1", 100, NOW - 2 * DAY)
    w, lo = (a.state, b.state) if first == "a" else (b.state, a.state)

    merged = fold(w, lo, RULES)

    # O-1: 400 points less 25 % back (100); O-2 at silver, still held in its grace period
    # after the return (1.25 x 100); the redemption: -100
    assert merged["points"] == 300 + 125 - 100
    assert merged["qualifying_spend_minor"] == 30_000 + 10_000
    assert merged["orders"]["O-1"].ref == 10_000
