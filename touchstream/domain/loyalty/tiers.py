"""Tiers (docs/domain.md, "Loyalty"): the qualifying spend, the tier it earns and the tier held.

The tier *held* at time t is the highest tier the qualifying spend reached at any moment of the
last ``grace_days``: an upgrade is immediate, and a customer whose spend falls below their tier
keeps it for the grace period. Being a pure function of the ledger and t, it does not depend on
which worker saw what first. The moments a tier was reached (``vip_status``) and the spend fell
below it (``tier_downgrade_risk``) are functions of the ledger too, and so are the checks that
those two triggers still hold when they are sent (``still_vip``, ``still_at_risk``,
``purchased_recently``: named by ``domain/trigger_catalog.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from touchstream.config.rules import Rules
from touchstream.domain import triggers
from touchstream.domain.clock import MS_PER_DAY, iso
from touchstream.domain.decision import Decision
from touchstream.domain.state import State


def refunds_by_order(state: State) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    for ret in state.get("returns", {}).values():
        out.setdefault(ret.order, []).append((ret.at, ret.refund))
    return out


def year_start(at: int, rules: Rules, years_back: int = 0) -> int:
    tz = ZoneInfo(rules.program.timezone)
    year = datetime.fromtimestamp(at / 1000, tz).year - years_back
    return int(datetime(year, 1, 1, tzinfo=tz).timestamp() * 1000)


def spend_between(state: State, start: int, end: int, refunds: dict[str, Any] | None = None) -> int:
    """Qualifying spend of orders placed in (start, end], less what was refunded by ``end``."""
    if refunds is None:
        refunds = refunds_by_order(state)
    total = 0
    for order_id, order in state["orders"].items():
        if start < order.at <= end:
            net = order.net
            back = refunds.get(order_id)
            if back:
                net -= sum(r for at, r in back if at <= end)
            if net > 0:
                total += net
    return total


def tier_spend(state: State, at: int, rules: Rules, refunds: dict[str, Any] | None = None) -> int:
    """The spend a tier is earned on at ``at``.

    ``trailing_365``: the trailing ``tier_window_days``. ``calendar_year``: the spend of this
    calendar year so far or of all of last year, whichever is higher, so a tier earned in one year
    is held through the next (program time zone).
    """
    loyalty = rules.loyalty
    if loyalty.tier_mode == "calendar_year":
        this_year = year_start(at, rules)
        last_year = year_start(at, rules, 1)
        return max(
            spend_between(state, this_year - 1, at, refunds),
            spend_between(state, last_year - 1, this_year - 1, refunds),
        )
    return spend_between(state, at - loyalty.tier_window_days * MS_PER_DAY, at, refunds)


def tier_index(spend_minor: int, rules: Rules) -> int:
    index = 0
    for i, tier in enumerate(rules.loyalty.tiers):
        if spend_minor >= tier.min_spend_minor:
            index = i
    return index


def held_tier(state: State, at: int, rules: Rules) -> int:
    """Index of the tier held at ``at``: the highest earned at any moment of the grace period."""
    orders = state["orders"]
    if not orders:  # no spend at any moment (most profiles before their first order)
        return tier_index(0, rules)
    # no moment's spend exceeds every order placed by ``at`` with no refund: when that earns
    # no tier above the first, none is held (most profiles), and no moment can beat it
    top = tier_index(sum(o.net for o in orders.values() if o.at <= at and o.net > 0), rules)
    if top == 0:
        return 0
    refunds = refunds_by_order(state)
    since = at - rules.loyalty.grace_days * MS_PER_DAY
    # spend only rises when an order is placed: the maximum is at the start or at an order
    moments = [since, at, *(o.at for o in orders.values() if since < o.at <= at)]
    held = 0
    for moment in moments:
        held = max(held, tier_index(tier_spend(state, moment, rules, refunds), rules))
        if held == top:
            break
    return held


def multiplier_before(state: State, at: int, rules: Rules) -> float:
    return float(rules.loyalty.tiers[held_tier(state, at, rules)].multiplier)


def tier_rank(name: str | None, rules: Rules) -> int:
    """Index of an announced tier (None, or a tier since removed from the rules: the first)."""
    names = [t.name for t in rules.loyalty.tiers]
    return names.index(name) if name in names else 0


def reached_at(state: State, at: int, index: int, rules: Rules) -> int:
    """The moment the held tier last rose to ``index`` or above, by ``at``: the placing of an
    order (only an order raises the spend), by the ledger known at ``at``."""
    placed = sorted({o.at for o in state["orders"].values() if o.at <= at}, reverse=True)
    reached = at
    for moment in placed:
        reached = moment
        if held_tier(state, moment - 1, rules) < index:
            break
    return reached


def vip(state: State, spend: int, reached: int, times: int, rules: Rules) -> Decision:
    """Named by how many times the top tier was reached before: a late order can move the
    moment it was reached, not the fact."""
    top = rules.loyalty.tiers[-1]
    last = state["last_purchase_at"]
    placed = sorted(k for k, o in state["orders"].items() if o.at == reached)
    return triggers.propose(
        "vip_status",
        f"{top.name}:{times}",
        reached,
        f"Reached the {top.name} tier.",
        {
            "tier": top.name,
            "qualifying_spend_minor": spend,
            "order_id": placed[-1] if placed else None,
            "last_purchase_at": iso(last) if last is not None else None,
            "points": state["points"],
        },
        "vip_status",
    )


def fell_at(state: State, at: int, held: int, rules: Rules) -> int:
    """The moment the spend fell below the tier held at ``at`` and stayed there: a pure function
    of the ledger (not of when a worker noticed), so the grace period, its warning and its
    ``trigger_id`` do not depend on the order in which orders and returns arrived."""
    loyalty = rules.loyalty
    since = at - loyalty.grace_days * MS_PER_DAY
    window = loyalty.tier_window_days * MS_PER_DAY
    # the spend is constant between these moments: orders entering and leaving the window,
    # returns, and calendar years turning
    moments = {since, at, year_start(at, rules), year_start(at, rules, 1)}
    for order in state["orders"].values():
        moments.update((order.at, order.at + window))
    moments.update(ret.at for ret in state.get("returns", {}).values())
    refunds = refunds_by_order(state)
    fell = at
    for moment in sorted((m for m in moments if since <= m <= at), reverse=True):
        if tier_index(tier_spend(state, moment, rules, refunds), rules) >= held:
            break
        fell = moment
    return fell


def downgrade_risk(state: State, held: int, at: int, rules: Rules) -> Decision:
    tier = rules.loyalty.tiers[held]
    spend = tier_spend(state, at, rules)
    needed = tier.min_spend_minor - spend
    until = at + rules.loyalty.grace_days * MS_PER_DAY
    return triggers.propose(
        "tier_downgrade_risk",
        f"{tier.name}:{at}",
        at,
        f"Spend {needed} more minor units by {iso(until)[:10]} to keep the {tier.name} tier.",
        {
            "tier": tier.name,
            "qualifying_spend_minor": spend,
            "needed_minor": needed,
            "downgrade_at": iso(until),
        },
        "tier_downgrade_risk",
    )


# --- still true at emit time ----------------------------------------------------------------


def tier_name(state: State, rules: Rules) -> str:
    return str(state["loyalty"].tier or rules.loyalty.tiers[0].name)


def still_vip(state: State, proposal: dict[str, Any], rules: Rules) -> bool:
    return tier_name(state, rules) == rules.loyalty.tiers[-1].name


def still_at_risk(state: State, proposal: dict[str, Any], rules: Rules) -> bool:
    return (
        state["loyalty"].risk is not None
        and tier_name(state, rules) == proposal["evidence"]["tier"]
    )


def purchased_recently(state: State, proposal: dict[str, Any], rules: Rules) -> bool:
    """``vip_status``'s recency rule: a purchase within ``vip_recency_days`` (and never beyond
    ``vip_max_lapse_days``) of the trigger's time."""
    last = state["last_purchase_at"]
    if last is None:
        return False
    age = proposal["at"] - last
    loyalty = rules.loyalty
    return age <= loyalty.vip_recency_days * MS_PER_DAY and age <= (
        loyalty.vip_max_lapse_days * MS_PER_DAY
    )
