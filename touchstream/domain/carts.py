"""Carts on the customer state: items, quantities and value per ``cart_id``, in event time.

A purchase on any channel closes the cart it names, or the customer's most recently active
open cart. A closed cart remembers when it closed, so a late cart event cannot reopen it, and
a cart first seen through a late event older than a purchase that named no cart was bought by
that purchase (events reach a profile in arrival order, not event time).
"""

from __future__ import annotations

from typing import Any

CLOSED_KEPT = 8


def _cart(state: dict[str, Any], cart_id: str) -> dict[str, Any] | None:
    carts = state["carts"]
    cart = carts.get(cart_id)
    return None if cart is None else {**cart, "items": dict(cart["items"])}


def _value(items: dict[str, list[int]]) -> int:
    return sum(qty * unit for qty, unit in items.values())


def _store(state: dict[str, Any], cart_id: str, cart: dict[str, Any]) -> None:
    cart["value"] = _value(cart["items"])
    state["carts"] = {**state["carts"], cart_id: cart}


def change(state: dict[str, Any], event: dict[str, Any], sign: int) -> None:
    props = event["props"]
    cart_id, at = props["cart_id"], event["at"]
    cart = _cart(state, cart_id)
    if cart is None:
        bought = state["carts_closed_until"]
        cart = {"items": {}, "at": at, "closed_at": bought if bought and at <= bought else None}
    if cart["closed_at"] is not None and at <= cart["closed_at"]:
        return  # late activity on a cart already bought
    qty, _ = cart["items"].get(props["sku"], (0, 0))
    qty = max(qty + sign * props["quantity"], 0)
    if qty:
        cart["items"][props["sku"]] = [qty, props["unit_price_minor"]]
    else:
        cart["items"].pop(props["sku"], None)
    cart["at"] = max(cart["at"], at)
    _store(state, cart_id, cart)


def close_by_purchase(state: dict[str, Any], event: dict[str, Any]) -> None:
    cart_id = event["props"].get("cart_id")
    if cart_id is None:
        state["carts_closed_until"] = max(state["carts_closed_until"] or 0, event["at"])
        open_ = [(c["at"], cid) for cid, c in state["carts"].items() if c["closed_at"] is None]
        if not open_:
            return
        cart_id = max(open_)[1]
    cart = _cart(state, cart_id) or {"items": {}, "at": event["at"], "closed_at": None}
    cart["closed_at"] = max(cart["closed_at"] or 0, event["at"])
    _store(state, cart_id, cart)
    closed = sorted(
        (c["closed_at"], cid) for cid, c in state["carts"].items() if c["closed_at"] is not None
    )
    for _, old in closed[:-CLOSED_KEPT]:
        state["carts"] = {k: v for k, v in state["carts"].items() if k != old}


def open_value(state: dict[str, Any]) -> int:
    return sum(c["value"] for c in state["carts"].values() if c["closed_at"] is None)


def fold_carts(winner: dict[str, Any], loser: dict[str, Any]) -> dict[str, Any]:
    """Anonymous carts follow the shopper. A cart both profiles hold (items added before and
    after the login) gets the items of both: each cart event was applied to exactly one of
    them, so quantities add up."""
    carts = dict(winner["carts"])
    for cart_id, theirs in loser["carts"].items():
        mine = carts.get(cart_id)
        if mine is None:
            carts[cart_id] = theirs
            continue
        items = {sku: list(entry) for sku, entry in mine["items"].items()}
        for sku, (qty, unit) in theirs["items"].items():
            known = items.get(sku)
            items[sku] = [qty + known[0], unit] if known else [qty, unit]
        closed = [c for c in (mine["closed_at"], theirs["closed_at"]) if c is not None]
        merged = {
            "items": items,
            "at": max(mine["at"], theirs["at"]),
            "closed_at": max(closed) if closed else None,
        }
        merged["value"] = _value(items)
        carts[cart_id] = merged
    return carts
