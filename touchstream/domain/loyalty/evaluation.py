"""Evaluation in event time: bring the tier, the expiry and the rewards up to an event time.

``loyalty`` in the customer record holds what was last announced (the tier, the warnings
already given) and ``due``, the next event time at which the tier or the balance can change
with no new event: an order leaving the tier window, the end of a grace period, the expiry
warning, the expiry. The timers fire ``evaluate`` there (``domain.timers``)."""

from __future__ import annotations

from typing import Any

from touchstream.config.rules import Rules
from touchstream.domain.clock import MS_PER_DAY
from touchstream.domain.decision import Decision
from touchstream.domain.loyalty.expiry import expire, expiry_times
from touchstream.domain.loyalty.outcomes import outcome
from touchstream.domain.loyalty.rewards import rewards
from touchstream.domain.loyalty.tiers import (
    downgrade_risk,
    fell_at,
    held_tier,
    reached_at,
    tier_index,
    tier_rank,
    tier_spend,
    vip,
    year_start,
)
from touchstream.domain.state import State


def initial() -> dict[str, Any]:
    return {
        "tier": None,  # the name of the tier last announced; None: the first tier
        "at": None,  # event time of the last evaluation
        "due": None,  # next event time something can change without a new event
        "spend": 0,  # qualifying spend the tier was judged on, at ``at``
        "risk": None,  # [tier, since]: tier_downgrade_risk given for this fall
        "warned": None,  # expiry anchor whose points_expiring was given
        "expired": None,  # expiry anchor whose points were expired
        "vips": 0,  # times the top tier was announced: names each VIP decision
    }


def _changes(state: State, after: int, rules: Rules) -> list[int]:
    """Moments after ``after`` at which the held tier or the balance can change by itself."""
    loyalty = rules.loyalty
    grace = loyalty.grace_days * MS_PER_DAY
    out: list[int] = []
    if state["orders"]:
        if loyalty.tier_mode == "calendar_year":
            for years_back in (-1, 0):
                boundary = year_start(after, rules, years_back)
                out += [boundary, boundary + grace]
        else:
            window = loyalty.tier_window_days * MS_PER_DAY
            for order in state["orders"].values():
                out += [order["at"] + window, order["at"] + window + grace]
        # a return matched late (its order arrived after it) lowers the spend at its own time
        for ret in state.get("returns", {}).values():
            out += [ret["at"], ret["at"] + grace]
    expiry = expiry_times(state, rules)
    if expiry is not None:
        anchor, warn_at, expires_at = expiry
        marks = state["loyalty"]
        if marks["warned"] != anchor:
            out.append(warn_at)
        if marks["expired"] != anchor:
            out.append(expires_at)
    return [t for t in out if t > after]


def next_change(state: State, after: int, rules: Rules) -> int | None:
    changes = _changes(state, after, rules)
    return min(changes) if changes else None


def due(state: State) -> int | None:
    return state["loyalty"]["due"]


def evaluate(state: State, at: int, rules: Rules, decisions: list[Decision]) -> None:
    """Bring tier, expiry and their triggers up to event time ``at`` (``state`` is a fresh copy).

    The triggers are named by what happened in the ledger (how many times a tier or threshold
    was reached, when the spend fell), not by the event that moved the customer's time, so a
    replay, or the same events read in another order, proposes them under the same ids.
    """
    marks = dict(state["loyalty"])
    state["loyalty"] = marks
    if marks["at"] is not None and at < marks["at"]:
        at = marks["at"]  # a late event: the customer's time does not go back
    expire(state, marks, at, rules, decisions)
    tiers = rules.loyalty.tiers
    before = tier_rank(marks["tier"], rules)
    held = held_tier(state, at, rules)
    spend = tier_spend(state, at, rules)
    earned = tier_index(spend, rules)
    if held != before:
        marks["tier"] = tiers[held].name
        marks["risk"] = None
        decisions.append(
            outcome(
                state,
                "tier_changed",
                f"{tiers[held].name}:{at}",
                at,
                tier_before=tiers[before].name,
                tier=tiers[held].name,
                qualifying_spend_minor=spend,
            )
        )
        top = len(tiers) - 1
        if held == top:
            times = marks.get("vips", 0)
            marks["vips"] = times + 1
            decisions.append(vip(state, spend, reached_at(state, at, top, rules), times, rules))
    if earned >= held:
        marks["risk"] = None
    else:
        fell = fell_at(state, at, held, rules)
        if marks["risk"] is None:
            decisions.append(downgrade_risk(state, held, fell, rules))
        marks["risk"] = [tiers[held].name, fell]
    marks["at"] = at
    marks["spend"] = spend
    marks["due"] = next_change(state, at, rules)
    rewards(state, at, rules, decisions)  # a merge may have carried the balance over one
