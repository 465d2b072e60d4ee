"""Loyalty (docs/domain.md, "Loyalty"): the points ledger, tiers with grace, expiry, VIP, rewards.

The ledger lives in the customer record: ``orders`` (what each order earned and how much of it
was refunded), ``returns`` by ``return_id`` and ``redemptions`` by ``redemption_id``, so every
delivery of the same fact counts once. ``loyalty`` holds what was last announced (the tier, the
warnings already given) and ``due``, the next event time at which the tier or the balance can
change with no new event: an order leaving the tier window, the end of a grace period, the expiry
warning, the expiry. The timers fire ``evaluate`` there (``domain.timers``).

The tier *held* at time t is the highest tier the qualifying spend reached at any moment of the
last ``grace_days``: an upgrade is immediate, and a customer whose spend falls below their tier
keeps it for the grace period. Being a pure function of the ledger and t, it does not depend on
which worker saw what first, and a merge of two profiles prices their orders exactly as one
profile that had seen them all (``domain.fold``).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from touchstream.config.rules import Rules
from touchstream.domain import state_bounds, triggers
from touchstream.domain.clock import MS_PER_DAY, iso
from touchstream.domain.decision import Decision
from touchstream.domain.state import State

# redemption, order and return ids are remembered for a span of event time with a hard cap
# (domain.state_bounds: ID_SPAN_DAYS, REDEMPTIONS_MAX, IDS_MAX)


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


def outcome(state: State, kind: str, cause: str, at: int, **fields: Any) -> Decision:
    """A ledger outcome for ``loyalty.outcomes``; its id is deterministic, so a replay repeats it."""
    oid = hashlib.sha256(f"{state['customer_id']}|{kind}|{cause}".encode()).hexdigest()[:32]
    return Decision(
        "loyalty",
        {
            "outcome_id": oid,
            "outcome": kind,
            "customer_id": state["customer_id"],
            "at": at,
            **fields,
            "balance": state["points"],
        },
    )


def published(payload: dict[str, Any]) -> dict[str, Any]:
    """The record for ``loyalty.outcomes`` (schemas/loyalty/v1/outcome.json)."""
    record = {k: v for k, v in payload.items() if k != "at"}
    record["schema_version"] = 1
    record["occurred_at"] = iso(payload["at"])
    return record


# --- the order book -------------------------------------------------------------------------


def reversed_points(order: dict[str, Any]) -> int:
    """Points a refund took back: proportional, rounded up, never more than the order earned."""
    net, ref, pts = order["net"], order.get("ref", 0), order["pts"]
    if net <= 0 or ref <= 0 or pts <= 0:
        return 0
    return min(pts, -(-pts * ref // net))


def held_points(order: dict[str, Any]) -> int:
    return int(order["pts"]) - reversed_points(order)


def effective_value(props: dict[str, Any], net: int, at: int, rules: Rules) -> int:
    """The order's value in thousandths, with bonus campaigns applied (no float money).

    A campaign boosts the items of its category (or the whole order when it names none) while
    ``at`` is inside its dates; an item in two campaigns gets the larger multiplier, they do not
    stack. The order's net is shared between its items by their gross value.
    """
    active = [c for c in rules.loyalty.campaigns if c.active(at)]
    if not active:
        return net * 1000
    items = props.get("items") or []
    gross = [(i["quantity"] * i["unit_price_minor"], i.get("category", "")) for i in items]
    total = sum(g for g, _ in gross)

    def boost(category: str | None) -> int:
        factors = [c.per_mille for c in active if not c.category or c.category == category]
        return max([1000, *factors])

    if total <= 0:
        return net * boost(None)
    weighted = sum(g * boost(category) for g, category in gross)
    return net * weighted // total


def earned_points(effective: int, multiplier: float, rules: Rules) -> int:
    """Whole points, rounded down, from a value in thousandths and a tier multiplier."""
    per_mille = round(multiplier * 1000)
    return (effective * rules.loyalty.points_per_unit * per_mille) // (
        rules.program.minor_per_unit * 1_000_000
    )


def _refunds_by_order(state: State) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    for ret in state.get("returns", {}).values():
        out.setdefault(ret["order"], []).append((ret["at"], ret["refund"]))
    return out


def _year_start(at: int, rules: Rules, years_back: int = 0) -> int:
    tz = ZoneInfo(rules.program.timezone)
    year = datetime.fromtimestamp(at / 1000, tz).year - years_back
    return int(datetime(year, 1, 1, tzinfo=tz).timestamp() * 1000)


def spend_between(state: State, start: int, end: int, refunds: dict[str, Any] | None = None) -> int:
    """Qualifying spend of orders placed in (start, end], less what was refunded by ``end``."""
    if refunds is None:
        refunds = _refunds_by_order(state)
    total = 0
    for order_id, order in state["orders"].items():
        if start < order["at"] <= end:
            net = order["net"]
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
        this_year = _year_start(at, rules)
        last_year = _year_start(at, rules, 1)
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
    top = tier_index(
        sum(o["net"] for o in orders.values() if o["at"] <= at and o["net"] > 0), rules
    )
    if top == 0:
        return 0
    refunds = _refunds_by_order(state)
    since = at - rules.loyalty.grace_days * MS_PER_DAY
    # spend only rises when an order is placed: the maximum is at the start or at an order
    moments = [since, at, *(o["at"] for o in orders.values() if since < o["at"] <= at)]
    held = 0
    for moment in moments:
        held = max(held, tier_index(tier_spend(state, moment, rules, refunds), rules))
        if held == top:
            break
    return held


def multiplier_before(state: State, at: int, rules: Rules) -> float:
    return float(rules.loyalty.tiers[held_tier(state, at, rules)].multiplier)


def _in_time(item: tuple[str, dict[str, Any]]) -> tuple[int, str]:
    return item[1]["at"], item[0]


def priced(
    orders: dict[str, Any], returns: dict[str, Any], rules: Rules, after: tuple[int, str] = (0, "")
) -> dict[str, tuple[int, float]]:
    """(points, multiplier) of each order placed after ``after`` in event time (ties by id),
    priced at the tier its history held before it: what one profile that saw every order and
    return in event time would have earned, whatever order they arrived in."""
    history: State = {"orders": {}, "returns": returns}
    out: dict[str, tuple[int, float]] = {}
    for order_id, order in sorted(orders.items(), key=_in_time):
        if (order["at"], order_id) > after:
            multiplier = multiplier_before(history, order["at"], rules)
            effective = order.get("eff", order["net"] * 1000)
            out[order_id] = (earned_points(effective, multiplier, rules), multiplier)
        history["orders"][order_id] = order
    return out


def reprice(
    state: State, after: tuple[int, str], at: int, rules: Rules, decisions: list[Decision]
) -> None:
    """Price again the orders placed after ``after``: an order or a return arriving late (from
    another partition, or after a merge) changes the tier those orders were placed in. Each
    change of an order's points is published as ``points_repriced`` at ``at``."""
    if not any((o["at"], k) > after for k, o in state["orders"].items()):
        return  # in-order arrival, the usual case: nothing was placed later
    for order_id, (points, multiplier) in priced(
        state["orders"], state["returns"], rules, after
    ).items():
        order = state["orders"][order_id]
        if points == order["pts"]:
            continue
        updated = dict(order, pts=points)
        delta = held_points(updated) - held_points(order)
        state["orders"] = dict(state["orders"], **{order_id: updated})
        state["points"] += delta
        decisions.append(
            outcome(
                state,
                "points_repriced",
                f"{order_id}:{points}",
                at,
                order_id=order_id,
                points=delta,
                multiplier=multiplier,
            )
        )


# --- evaluation in event time ---------------------------------------------------------------


def expiry_anchor(state: State) -> int | None:
    """Points expire ``expiry_days`` after the last purchase (or the signup bonus, if none)."""
    last = state["last_purchase_at"]
    return last if last is not None else state["signup_bonus_at"]


def expiry_times(state: State, rules: Rules) -> tuple[int, int, int] | None:
    """(anchor, warning time, expiry time) of a positive balance; None when nothing expires."""
    anchor = expiry_anchor(state)
    if anchor is None or state["points"] <= 0:
        return None
    loyalty = rules.loyalty
    expires_at = anchor + loyalty.expiry_days * MS_PER_DAY
    return anchor, expires_at - loyalty.expiry_warning_days * MS_PER_DAY, expires_at


def tier_rank(name: str | None, rules: Rules) -> int:
    """Index of an announced tier (None, or a tier since removed from the rules: the first)."""
    names = [t.name for t in rules.loyalty.tiers]
    return names.index(name) if name in names else 0


def _changes(state: State, after: int, rules: Rules) -> list[int]:
    """Moments after ``after`` at which the held tier or the balance can change by itself."""
    loyalty = rules.loyalty
    grace = loyalty.grace_days * MS_PER_DAY
    out: list[int] = []
    if state["orders"]:
        if loyalty.tier_mode == "calendar_year":
            for years_back in (-1, 0):
                boundary = _year_start(after, rules, years_back)
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


def expiry_owed(state: State, at: int, rules: Rules) -> bool:
    """An expiry warning or an expiry fell due by ``at`` and was not given yet."""
    expiry = expiry_times(state, rules)
    if expiry is None:
        return False
    anchor, warn_at, expires_at = expiry
    marks = state["loyalty"]
    return (at >= warn_at and marks["warned"] != anchor) or (
        at >= expires_at and marks["expired"] != anchor
    )


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
    _expire(state, marks, at, rules, decisions)
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
            decisions.append(_vip(state, spend, reached_at(state, at, top, rules), times, rules))
    if earned >= held:
        marks["risk"] = None
    else:
        fell = fell_at(state, at, held, rules)
        if marks["risk"] is None:
            decisions.append(_downgrade_risk(state, held, fell, rules))
        marks["risk"] = [tiers[held].name, fell]
    marks["at"] = at
    marks["spend"] = spend
    marks["due"] = next_change(state, at, rules)
    rewards(state, at, rules, decisions)  # a merge may have carried the balance over one


def _expire(
    state: State, marks: dict[str, Any], at: int, rules: Rules, decisions: list[Decision]
) -> None:
    expiry = expiry_times(state, rules)
    if expiry is None:
        return
    anchor, warn_at, expires_at = expiry
    if at >= expires_at and marks["expired"] != anchor:
        marks["expired"] = marks["warned"] = anchor
        lost = state["points"]
        state["points"] = 0
        decisions.append(outcome(state, "points_expired", str(anchor), expires_at, points=-lost))
        rewards(state, expires_at, rules, decisions)
    elif at >= warn_at and marks["warned"] != anchor:
        marks["warned"] = anchor
        decisions.append(
            triggers.propose(
                "points_expiring",
                str(anchor),
                warn_at,
                f"{state['points']} points expire on {iso(expires_at)[:10]} without a purchase.",
                {
                    "points": state["points"],
                    "expires_at": iso(expires_at),
                    "last_purchase_at": iso(anchor),
                    "anchor": anchor,
                },
                "points_expiring",
            )
        )


def reached_at(state: State, at: int, index: int, rules: Rules) -> int:
    """The moment the held tier last rose to ``index`` or above, by ``at``: the placing of an
    order (only an order raises the spend), by the ledger known at ``at``."""
    placed = sorted({o["at"] for o in state["orders"].values() if o["at"] <= at}, reverse=True)
    reached = at
    for moment in placed:
        reached = moment
        if held_tier(state, moment - 1, rules) < index:
            break
    return reached


def _vip(state: State, spend: int, reached: int, times: int, rules: Rules) -> Decision:
    """Named by how many times the top tier was reached before: a late order can move the
    moment it was reached, not the fact."""
    top = rules.loyalty.tiers[-1]
    last = state["last_purchase_at"]
    placed = sorted(k for k, o in state["orders"].items() if o["at"] == reached)
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
    moments = {since, at, _year_start(at, rules), _year_start(at, rules, 1)}
    for order in state["orders"].values():
        moments.update((order["at"], order["at"] + window))
    moments.update(ret["at"] for ret in state.get("returns", {}).values())
    refunds = _refunds_by_order(state)
    fell = at
    for moment in sorted((m for m in moments if since <= m <= at), reverse=True):
        if tier_index(tier_spend(state, moment, rules, refunds), rules) >= held:
            break
        fell = moment
    return fell


def _downgrade_risk(state: State, held: int, at: int, rules: Rules) -> Decision:
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


def rewards(state: State, at: int, rules: Rules, decisions: list[Decision]) -> None:
    """``reward_unlocked`` when the balance crosses a threshold from below; re-armed below it.

    The cause is the threshold and how many times it was unlocked before, not the event that
    crossed it: orders arriving in another order, or a merge, cross it with another event, and
    the shopper must still get one message for one crossing.
    """
    unlocked = list(state["rewards"])
    counts = dict(state.get("unlocks", {}))
    for threshold in rules.loyalty.reward_thresholds:
        if state["points"] >= threshold and threshold not in unlocked:
            unlocked.append(threshold)
            times = counts.get(str(threshold), 0)
            counts[str(threshold)] = times + 1
            decisions.append(
                triggers.propose(
                    "reward_unlocked",
                    f"{threshold}:{times}",
                    at,
                    f"The points balance reached {threshold}.",
                    {"threshold": threshold, "points": state["points"]},
                    "reward_unlocked",
                )
            )
        elif state["points"] < threshold and threshold in unlocked:
            unlocked.remove(threshold)
    state["rewards"] = unlocked
    state["unlocks"] = counts


def reward_owed(state: State, unlocked: list[int], rules: Rules) -> bool:
    return any(state["points"] >= t and t not in unlocked for t in rules.loyalty.reward_thresholds)


# --- still true at emit time ----------------------------------------------------------------


def tier_name(state: State, rules: Rules) -> str:
    return str(state["loyalty"]["tier"] or rules.loyalty.tiers[0].name)


def still_vip(state: State, proposal: dict[str, Any], rules: Rules) -> bool:
    return tier_name(state, rules) == rules.loyalty.tiers[-1].name


def still_at_risk(state: State, proposal: dict[str, Any], rules: Rules) -> bool:
    marks = state["loyalty"]
    return marks["risk"] is not None and tier_name(state, rules) == proposal["evidence"]["tier"]


def still_expiring(state: State, proposal: dict[str, Any], rules: Rules) -> bool:
    anchor = proposal["evidence"]["anchor"]
    return bool(state["points"] > 0 and expiry_anchor(state) == anchor)


def still_rewarded(state: State, proposal: dict[str, Any], rules: Rules) -> bool:
    return bool(state["points"] >= proposal["evidence"]["threshold"])


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


# --- events ---------------------------------------------------------------------------------


def purchase(state: State, event: dict[str, Any], rules: Rules, decisions: list[Decision]) -> bool:
    """Earn on an order once; a return that arrived before its order is applied now."""
    props = event["props"]
    order_id = props["order_id"]
    if order_id in state["orders"] or state_bounds.folded_order(state, order_id):
        return False  # each order earns once, whatever the event id it arrives under
    at = event["at"]
    net = max(props["total_minor"] - props.get("discount_minor", 0), 0)
    effective = effective_value(props, net, at, rules)
    # the history before it in event time: an order that arrived earlier but was placed later
    # (or at the same moment, with a later id) does not raise this order's tier
    earlier = {k: o for k, o in state["orders"].items() if (o["at"], k) < (at, order_id)}
    multiplier = multiplier_before({"orders": earlier, "returns": state["returns"]}, at, rules)
    points = earned_points(effective, multiplier, rules)
    order = {"at": at, "net": net, "eff": effective, "pts": points, "ref": 0}
    state["orders"] = dict(state["orders"], **{order_id: order})
    state["points"] += points
    state["qualifying_spend_minor"] += net
    decisions.append(
        outcome(
            state,
            "points_earned",
            order_id,
            at,
            order_id=order_id,
            points=points,
            net_minor=net,
            spend_minor=net,
            multiplier=multiplier,
        )
    )
    waiting = [rid for rid, r in state["returns"].items() if r["order"] == order_id]
    for rid in waiting:
        _refund(state, rid, state["returns"][rid], decisions)
    reprice(state, (at, order_id), at, rules, decisions)
    return True


def signup(state: State, event: dict[str, Any], rules: Rules, decisions: list[Decision]) -> bool:
    if state["signup_bonus_at"] is not None:
        return False
    state["signup_bonus_at"] = event["at"]
    state["points"] += rules.loyalty.signup_bonus
    decisions.append(
        outcome(state, "signup_bonus", "signup", event["at"], points=rules.loyalty.signup_bonus)
    )
    return True


def refund(state: State, event: dict[str, Any], rules: Rules, decisions: list[Decision]) -> bool:
    """A return reverses the order's points in proportion and reduces qualifying spend.

    A return for an order this customer has not (yet) been seen to place is recorded and
    reported as ``return_unmatched``; when the order arrives later, the return is applied then.
    """
    props = event["props"]
    return_id = props["return_id"]
    if return_id in state["returns"] or state_bounds.folded_return(state, return_id):
        return False
    entry = {"order": props["order_id"], "at": event["at"], "refund": props["refund_minor"]}
    folded = state_bounds.folded_order(
        state, props["order_id"]
    )  # into ``past`` (domain.state_bounds)
    if folded:  # nothing to apply it to, ever: only its id is kept
        known = state_bounds.ids_of(state)
        state["ids"] = {**known, "r": {**known["r"], return_id: event["at"]}}
    else:
        state["returns"] = dict(state["returns"], **{return_id: entry})
    if folded or props["order_id"] not in state["orders"]:
        decisions.append(
            outcome(
                state,
                "return_unmatched",
                return_id,
                event["at"],
                return_id=return_id,
                order_id=props["order_id"],
                refund_minor=props["refund_minor"],
                reason="order_compacted" if folded else "unknown_order",
            )
        )
        return False
    _refund(state, return_id, entry, decisions)
    reprice(state, (entry["at"], ""), entry["at"], rules, decisions)
    return True


def _refund(state: State, return_id: str, entry: dict[str, Any], decisions: list[Decision]) -> None:
    order_id = entry["order"]
    order = dict(state["orders"][order_id])
    before_pts, before_ref = held_points(order), order.get("ref", 0)
    order["ref"] = min(order["net"], before_ref + entry["refund"])
    state["orders"] = dict(state["orders"], **{order_id: order})
    taken = before_pts - held_points(order)
    state["points"] -= taken
    state["qualifying_spend_minor"] -= order["ref"] - before_ref
    decisions.append(
        outcome(
            state,
            "points_reversed",
            return_id,
            entry["at"],
            return_id=return_id,
            order_id=order_id,
            refund_minor=entry["refund"],
            points=-taken,
            spend_minor=before_ref - order["ref"],
        )
    )


def redeem(state: State, event: dict[str, Any], rules: Rules, decisions: list[Decision]) -> bool:
    """Spend points; a redemption above the balance is rejected, reported, and changes nothing."""
    props = event["props"]
    rid, points = props["redemption_id"], props["points"]
    if rid in state["redemptions"]:
        return False  # decided once, accepted or not
    accepted = points <= state["points"]
    taken = [points if accepted else 0, event["at"]]
    state["redemptions"] = dict(state["redemptions"], **{rid: taken})
    if accepted:
        state["points"] -= points
        decisions.append(
            outcome(state, "points_redeemed", rid, event["at"], redemption_id=rid, points=-points)
        )
        return True
    decisions.append(
        outcome(
            state,
            "redemption_rejected",
            rid,
            event["at"],
            redemption_id=rid,
            points_requested=points,
            reason="insufficient_points",
        )
    )
    return False
