"""Pricing: the points an order earns and a refund takes back.

An order earns on its value with bonus campaigns applied, times the multiplier of the tier its
history held before it in event time (``domain.loyalty.tiers``); a refund takes back its share.
An order or a return arriving late prices the orders placed after it again (``reprice``), so a
merge of two profiles prices their orders exactly as one profile that had seen them all
(``domain.fold``)."""

from __future__ import annotations

from typing import Any

import msgspec

from touchstream.config.rules import Rules
from touchstream.domain.decision import Decision
from touchstream.domain.loyalty.outcomes import outcome
from touchstream.domain.loyalty.tiers import multiplier_before, tier_index
from touchstream.domain.records import Order, Return
from touchstream.domain.state import State


def reversed_points(order: Order) -> int:
    """Points a refund took back: proportional, rounded up, never more than the order earned."""
    net, ref, pts = order.net, order.ref, order.pts
    if net <= 0 or ref <= 0 or pts <= 0:
        return 0
    return min(pts, -(-pts * ref // net))


def held_points(order: Order) -> int:
    return int(order.pts) - reversed_points(order)


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


def _in_time(item: tuple[str, Order]) -> tuple[int, str]:
    return item[1].at, item[0]


def priced(
    orders: dict[str, Order],
    returns: dict[str, Return],
    rules: Rules,
    after: tuple[int, str] = (0, ""),
) -> dict[str, tuple[int, float]]:
    """(points, multiplier) of each order placed after ``after`` in event time (ties by id),
    priced at the tier its history held before it: what one profile that saw every order and
    return in event time would have earned, whatever order they arrived in."""
    out: dict[str, tuple[int, float]] = {}
    if tier_index(sum(o.net for o in orders.values() if o.net > 0), rules) == 0:
        # no history of these orders reaches a tier above the first (a history's spend is at
        # most the sum of its positive nets): every order is priced at the first tier, as
        # ``held_tier`` would find one order at a time (most merges: a quadratic walk saved)
        first = float(rules.loyalty.tiers[0].multiplier)
        for order_id, order in orders.items():
            if (order.at, order_id) > after:
                effective = order.eff
                out[order_id] = (earned_points(effective, first, rules), first)
        return dict(sorted(out.items(), key=lambda item: _in_time((item[0], orders[item[0]]))))
    history: State = {"orders": {}, "returns": returns}
    for order_id, order in sorted(orders.items(), key=_in_time):
        if (order.at, order_id) > after:
            multiplier = multiplier_before(history, order.at, rules)
            effective = order.eff
            out[order_id] = (earned_points(effective, multiplier, rules), multiplier)
        history["orders"][order_id] = order
    return out


def reprice(
    state: State, after: tuple[int, str], at: int, rules: Rules, decisions: list[Decision]
) -> None:
    """Price again the orders placed after ``after``: an order or a return arriving late (from
    another partition, or after a merge) changes the tier those orders were placed in. Each
    change of an order's points is published as ``points_repriced`` at ``at``."""
    if not any((o.at, k) > after for k, o in state["orders"].items()):
        return  # in-order arrival, the usual case: nothing was placed later
    for order_id, (points, multiplier) in priced(
        state["orders"], state["returns"], rules, after
    ).items():
        order = state["orders"][order_id]
        if points == order.pts:
            continue
        updated = msgspec.structs.replace(order, pts=points)
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


# -- the order book's fold rule (domain.fold's FOLDERS points at it) --


def default_orders() -> dict[str, Order]:
    """A new profile's order book (``domain.customer.new_state``): order id -> Order."""
    return {}


def default_returns() -> dict[str, Return]:
    """A new profile's returns (``domain.customer.new_state``): return id -> Return."""
    return {}


def fold_returns(w: State, lo: State, out: State, rules: Rules) -> dict[str, Return]:
    """Both profiles' returns, once each, but for those either profile folded away (``ids``,
    folded first): the merged returns apply to the merged orders (``fold_orders``, after)."""
    merged = {**lo["returns"], **w["returns"]}
    if out["ids"] is None:
        return merged
    return {rid: r for rid, r in merged.items() if rid not in out["ids"].r}


def sole_ledger(w: State, lo: State) -> State | None:
    """The one profile of the two that holds a ledger, when the other holds none and neither
    folded an order or a return away (``past``, ``ids``): most merges, an anonymous visitor's
    profile and a shopper's. Its orders are the merged book as they are: priced again over the
    same history they give the points they hold (each was priced at the tier its history held
    before it, and priced again when an order or a return arrived late: ``loyalty.reprice``),
    and their refunds are its returns'. Pricing them again cost a fifth of a merge. (After a
    change of the rules' points or tiers, they keep what they earned under the rules of their
    time, as they would with no merge; docs/domain.md, "Identity".)"""
    for a, b in ((w, lo), (lo, w)):
        if (
            not b["orders"]
            and not b["returns"]
            and b["past"] is None
            and b["ids"] is None
            and a["past"] is None
            and a["ids"] is None
        ):
            return a
    return None


def fold_orders(w: State, lo: State, out: State, rules: Rules) -> dict[str, Order]:
    """The union of both order books, each order priced at the tier the merged history held
    before it (in event time), exactly as one profile that had seen them all would have; a
    return either profile holds is applied to its order once."""
    only = sole_ledger(w, lo)
    if only is not None:
        return only["orders"]
    union = {**lo["orders"], **w["orders"]}
    if out["ids"] is not None:  # counted in ``past``
        union = {k: o for k, o in union.items() if k not in out["ids"].o}
    refunded: dict[str, int] = {}
    for ret in out["returns"].values():
        refunded[ret.order] = refunded.get(ret.order, 0) + ret.refund
    # a return folded away (a capped return book) stays in its order's ``ref``
    known = {k: max(s["orders"][k].ref for s in (w, lo) if k in s["orders"]) for k in union}
    return {
        order_id: msgspec.structs.replace(
            union[order_id],
            pts=points,
            ref=min(union[order_id].net, max(refunded.get(order_id, 0), known[order_id])),
        )
        for order_id, (points, _) in priced(union, out["returns"], rules).items()
    }
