"""The events that change the ledger: an order (``purchase``), a ``return`` (``refund``), a
``redemption`` (``redeem``) and the ``signup`` bonus, each applied once by its own id.

The ledger lives in the customer record: ``orders`` (what each order earned and how much of it
was refunded), ``returns`` by ``return_id`` and ``redemptions`` by ``redemption_id``, so every
delivery of the same fact counts once."""

from __future__ import annotations

from typing import Any

import msgspec

from touchstream.config.rules import Rules
from touchstream.domain import state_bounds
from touchstream.domain.decision import Decision
from touchstream.domain.loyalty.outcomes import outcome
from touchstream.domain.loyalty.pricing import (
    earned_points,
    effective_value,
    held_points,
    reprice,
)
from touchstream.domain.loyalty.tiers import multiplier_before
from touchstream.domain.records import Ids, Order, Return
from touchstream.domain.state import State

# redemption, order and return ids are remembered for a span of event time with a hard cap
# (domain.state_bounds: ID_SPAN_DAYS, REDEMPTIONS_MAX, IDS_MAX)


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
    earlier = {k: o for k, o in state["orders"].items() if (o.at, k) < (at, order_id)}
    multiplier = multiplier_before({"orders": earlier, "returns": state["returns"]}, at, rules)
    points = earned_points(effective, multiplier, rules)
    order = Order(at=at, net=net, eff=effective, pts=points, ref=0)
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
    waiting = [rid for rid, r in state["returns"].items() if r.order == order_id]
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
    entry = Return(order=props["order_id"], at=event["at"], refund=props["refund_minor"])
    folded = state_bounds.folded_order(
        state, props["order_id"]
    )  # into ``past`` (domain.state_bounds)
    if folded:  # nothing to apply it to, ever: only its id is kept
        known = state_bounds.ids_of(state)
        state["ids"] = Ids(o=known.o, r={**known.r, return_id: event["at"]})
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
    reprice(state, (entry.at, ""), entry.at, rules, decisions)
    return True


def _refund(state: State, return_id: str, entry: Return, decisions: list[Decision]) -> None:
    order_id = entry.order
    held = state["orders"][order_id]
    before_pts, before_ref = held_points(held), held.ref
    # a new record: the previous state holds the old one
    order = msgspec.structs.replace(held, ref=min(held.net, before_ref + entry.refund))
    state["orders"] = dict(state["orders"], **{order_id: order})
    taken = before_pts - held_points(order)
    state["points"] -= taken
    state["qualifying_spend_minor"] -= order.ref - before_ref
    decisions.append(
        outcome(
            state,
            "points_reversed",
            return_id,
            entry.at,
            return_id=return_id,
            order_id=order_id,
            refund_minor=entry.refund,
            points=-taken,
            spend_minor=before_ref - order.ref,
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
