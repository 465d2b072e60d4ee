"""Evaluation in event time: bring the tier, the expiry and the rewards up to an event time.

``loyalty`` in the customer record holds what was last announced (the tier, the warnings
already given) and ``due``, the next event time at which the tier or the balance can change
with no new event: an order leaving the tier window, the end of a grace period, the expiry
warning, the expiry. The timers fire ``evaluate`` there (``domain.timers``).

``state["loyalty"]`` is a ``LoyaltyMarks`` record (``domain.records``) held by the state's dict
(the typed-state rewrite, docs/design/typed-state.md, step 3), stored as the JSON object it
was; ``default()`` is a new customer's. Records are values: ``evaluate`` and ``fold`` put a
new one in the state, never change one a previous state holds."""

from __future__ import annotations

from msgspec.structs import replace

from touchstream.config.rules import Rules
from touchstream.domain.clock import MS_PER_DAY
from touchstream.domain.decision import Decision
from touchstream.domain.loyalty.expiry import expire, expiry_owed, expiry_times
from touchstream.domain.loyalty.outcomes import outcome
from touchstream.domain.loyalty.rewards import reward_owed, rewards
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
from touchstream.domain.records import LoyaltyMarks
from touchstream.domain.state import State

_INITIAL = LoyaltyMarks(
    tier=None,  # the name of the tier last announced; None: the first tier
    at=None,  # event time of the last evaluation
    due=None,  # next event time something can change without a new event
    spend=0,  # qualifying spend the tier was judged on, at ``at``
    risk=None,  # (tier, since): tier_downgrade_risk given for this fall
    warned=None,  # expiry anchor whose points_expiring was given
    expired=None,  # expiry anchor whose points were expired
    vips=0,  # times the top tier was announced: names each VIP decision
)


def default() -> LoyaltyMarks:
    """``state["loyalty"]`` of a new customer: nothing announced (``customer.new_state``)."""
    return _INITIAL


def _changes(
    state: State, after: int, rules: Rules, marks: LoyaltyMarks | None = None
) -> list[int]:
    """Moments after ``after`` at which the held tier or the balance can change by itself;
    ``marks``: the loyalty marks to judge the expiry by (None: the state's)."""
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
                out += [order.at + window, order.at + window + grace]
        # a return matched late (its order arrived after it) lowers the spend at its own time
        for ret in state.get("returns", {}).values():
            out += [ret.at, ret.at + grace]
    expiry = expiry_times(state, rules)
    if expiry is not None:
        anchor, warn_at, expires_at = expiry
        if marks is None:
            marks = state["loyalty"]
        if marks.warned != anchor:
            out.append(warn_at)
        if marks.expired != anchor:
            out.append(expires_at)
    return [t for t in out if t > after]


def next_change(
    state: State, after: int, rules: Rules, marks: LoyaltyMarks | None = None
) -> int | None:
    changes = _changes(state, after, rules, marks)
    return min(changes) if changes else None


def due(state: State) -> int | None:
    marks: LoyaltyMarks = state["loyalty"]
    return marks.due


def evaluate(state: State, at: int, rules: Rules, decisions: list[Decision]) -> None:
    """Bring tier, expiry and their triggers up to event time ``at`` (``state`` is a fresh copy).

    The triggers are named by what happened in the ledger (how many times a tier or threshold
    was reached, when the spend fell), not by the event that moved the customer's time, so a
    replay, or the same events read in another order, proposes them under the same ids.
    """
    marks: LoyaltyMarks = state["loyalty"]
    if marks.at is not None and at < marks.at:
        at = marks.at  # a late event: the customer's time does not go back
    marks = expire(state, marks, at, rules, decisions)
    tiers = rules.loyalty.tiers
    tier, risk, vips = marks.tier, marks.risk, marks.vips
    before = tier_rank(tier, rules)
    held = held_tier(state, at, rules)
    spend = tier_spend(state, at, rules)
    earned = tier_index(spend, rules)
    if held != before:
        tier = tiers[held].name
        risk = None
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
            times = vips
            vips = times + 1
            decisions.append(vip(state, spend, reached_at(state, at, top, rules), times, rules))
    if earned >= held:
        risk = None
    else:
        fell = fell_at(state, at, held, rules)
        if risk is None:
            decisions.append(downgrade_risk(state, held, fell, rules))
        risk = (tiers[held].name, fell)
    marks = LoyaltyMarks(
        tier=tier,
        at=at,
        due=None,
        spend=spend,
        risk=risk,
        warned=marks.warned,
        expired=marks.expired,
        vips=vips,
    )
    state["loyalty"] = replace(marks, due=next_change(state, at, rules, marks))
    rewards(state, at, rules, decisions)  # a merge may have carried the balance over one


def fold(w: State, lo: State, out: State, rules: Rules) -> LoyaltyMarks:
    """``domain.fold``'s rule for ``loyalty`` (``FOLDERS``): the merged ledger judged at the
    later of both evaluations, its spend and next change; ``out`` holds the merged ledger.

    The announced tier is the higher of both; when the merged ledger holds another tier (or
    owes an expiry step), ``due`` is that moment, so the next clock advance announces it
    (``tier_changed``, and ``vip_status`` for the top tier) through the usual evaluation.
    """
    a: LoyaltyMarks = w["loyalty"]
    b: LoyaltyMarks = lo["loyalty"]
    ranks = [tier_rank(m.tier, rules) for m in (a, b)]
    times = [m.at for m in (a, b) if m.at is not None]
    warned = [m.warned for m in (a, b) if m.warned is not None]
    expired = [m.expired for m in (a, b) if m.expired is not None]
    marks = LoyaltyMarks(
        tier=rules.loyalty.tiers[max(ranks)].name,
        at=max(times) if times else None,
        due=None,
        spend=0,
        risk=a.risk or b.risk,
        warned=max(warned) if warned else None,
        expired=max(expired) if expired else None,
        vips=max(a.vips, b.vips),
    )
    at = marks.at
    if at is None:
        return marks
    view = {**out, "loyalty": marks}
    spend = tier_spend(view, at, rules)
    unlocked = [*w["rewards"], *lo["rewards"]]
    if (
        held_tier(view, at, rules) != max(ranks)
        or expiry_owed(view, at, rules)
        or reward_owed(view, unlocked, rules)
    ):
        due: int | None = at
    else:
        due = next_change(view, at, rules, marks)
    return replace(marks, spend=spend, due=due)
