"""Carts on the customer state: items, quantities and value per ``cart_id``, in event time.

A purchase on any channel closes the cart it names, or the customer's most recently active
open cart. A closed cart remembers when it closed, so a late cart event cannot reopen it, and
a cart first seen through a late event older than a purchase that named no cart was bought by
that purchase (events reach a profile in arrival order, not event time).

A customer's carts are ``state["carts"]``: cart id -> ``Cart`` (``domain.records``), records
held by the state's dict (the typed-state rewrite, docs/design/typed-state.md, step 3); a
line is a (quantity, unit price) pair. Records are values: a change puts a new ``Cart``
(``msgspec.structs.replace``) in a copy of the dict, never changes one a previous state holds.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from msgspec.structs import replace

from touchstream.config.rules import Rules
from touchstream.domain import triggers
from touchstream.domain.bounds import MAX_MONEY_MINOR
from touchstream.domain.clock import MS_PER_MINUTE, iso
from touchstream.domain.decision import Decision, StateCapped
from touchstream.domain.records import Cart

CLOSED_KEPT = 8  # closed carts remembered (a late event cannot reopen them)
CART_LINES_MAX = 100  # distinct SKUs per cart: a line beyond it is not added (counted)
OPEN_CARTS_MAX = 20  # open carts per customer: the least recently active one beyond is dropped


def capped(state: dict[str, Any], what: str, at: int) -> Decision:
    """A cap of the state was reached (not a ledger one): counted, nothing published."""
    return StateCapped(state["customer_id"], what, at)


def _new(at: int) -> Cart:
    """A cart first seen at ``at``."""
    return Cart(items={}, at=at, since=at, closed_at=None, reminded=None)


def _value(items: dict[str, tuple[int, int]]) -> int:
    # saturates at the money bound: each cart event's line is within it (domain/bounds.py),
    # but quantities add up over events, and 18,447 maximal additions would exceed the 64-bit
    # integers the state codec writes
    return min(sum(qty * unit for qty, unit in items.values() if qty > 0), MAX_MONEY_MINOR)


def _store(state: dict[str, Any], cart_id: str, cart: Cart) -> None:
    state["carts"] = {**state["carts"], cart_id: cart}


def change(
    state: dict[str, Any], event: dict[str, Any], sign: int, decisions: list[Decision] | None = None
) -> None:
    props = event["props"]
    cart_id, at, sku = props["cart_id"], event["at"], props["sku"]
    cart: Cart | None = state["carts"].get(cart_id)
    if cart is None:
        cart = _new(at)
    if sku not in cart.items and len(cart.items) >= CART_LINES_MAX:
        if decisions is not None:
            decisions.append(capped(state, "cart_lines", at))
        return
    # a bought cart keeps counting its items (a late event may show another cart was the one
    # bought, and reopen this one); a closed cart's items are in no open value
    # quantities add up signed: a removal read before its addition (another partition, the
    # other profile of a merge) nets out the same as in event time; a cart shows what is > 0
    items = dict(cart.items)
    qty, _ = items.get(sku, (0, 0))
    qty += sign * props["quantity"]
    if qty:
        items[sku] = (qty, props["unit_price_minor"])
    else:
        items.pop(sku, None)
    cart = replace(
        cart, items=items, at=max(cart.at, at), since=min(_since(cart), at), value=_value(items)
    )
    _store(state, cart_id, cart)
    bought = state["carts_closed_until"]
    if bought is not None and at <= bought:
        _settle_unnamed_purchase(state, bought)
    if _prune_open(state) and decisions is not None:
        decisions.append(capped(state, "open_carts", at))


def _bounded_open(carts: dict[str, Cart]) -> dict[str, Cart]:
    """The carts without the least recently active open ones beyond ``OPEN_CARTS_MAX``."""
    if len(carts) <= OPEN_CARTS_MAX:  # the usual case: a handful of carts in all
        return carts
    open_ = sorted((c.at, cid) for cid, c in carts.items() if c.closed_at is None)
    if len(open_) <= OPEN_CARTS_MAX:
        return carts
    gone = {cid for _, cid in open_[: len(open_) - OPEN_CARTS_MAX]}
    return {k: v for k, v in carts.items() if k not in gone}


def _prune_open(state: dict[str, Any]) -> bool:
    bounded = _bounded_open(state["carts"])
    if bounded is state["carts"]:
        return False
    state["carts"] = bounded
    return True


def _since(cart: Cart) -> int:
    """When the cart was first active (carts stored before this was kept: its last activity)."""
    return cart.at if cart.since is None else cart.since


def _settle_unnamed_purchase(state: dict[str, Any], bought: int) -> None:
    state["carts"] = _settled(state["carts"], bought)


def _settled(carts: dict[str, Cart], bought: int) -> dict[str, Cart]:
    """The carts after the purchase at ``bought`` that named no cart bought the most recently
    active of the carts that existed by then: decided again when a late cart event (or a
    merge) brings another, so it is the same cart whatever order the cart events and the
    purchase reached the profile in."""
    # (a cart active again after the purchase ranks by its first activity: the best known
    # activity by then)
    candidates = [
        (c.at if c.at <= bought else _since(c), cid)
        for cid, c in carts.items()
        if _since(c) <= bought and c.closed_at in (None, bought)
    ]
    if not candidates:
        return carts
    chosen = max(candidates)[1]
    out = dict(carts)
    for _, cid in candidates:
        closed_at = bought if cid == chosen else None
        if out[cid].closed_at != closed_at:
            out[cid] = replace(out[cid], closed_at=closed_at)
    return out


def close_by_purchase(state: dict[str, Any], event: dict[str, Any]) -> None:
    cart_id = event["props"].get("cart_id")
    at = event["at"]
    if cart_id is None and (state["carts_closed_until"] or 0) <= at:
        state["carts_closed_until"] = at
        _settle_unnamed_purchase(state, at)
        _prune_closed(state)
        return
    if cart_id is None:  # an older unnamed purchase, arriving late: the current cart then
        open_ = [(c.at, cid) for cid, c in state["carts"].items() if c.closed_at is None]
        if not open_:
            return
        cart_id = max(open_)[1]
    cart: Cart | None = state["carts"].get(cart_id)
    if cart is None:
        cart = _new(at)
    # A cart closed at the time of the last purchase that named none was that purchase's
    # choice (``_settled``), a guess a purchase naming the cart overrides: the cart closes
    # when it was bought, and the unnamed purchase chooses again among the others. Kept at
    # the unnamed purchase's time, it stayed that purchase's to give back, and a later cart
    # event reopened a cart its own purchase had bought (a merge's forwarded events, in the
    # "poison pills" chaos scenario).
    bought = state["carts_closed_until"]
    chosen = bought is not None and cart.closed_at == bought != at
    closed_at = at if chosen else max(cart.closed_at or 0, at)
    cart = replace(cart, closed_at=closed_at, value=_value(cart.items))
    _store(state, cart_id, cart)
    if chosen:
        _settle_unnamed_purchase(state, bought)
    _prune_closed(state)


def _prune_closed(state: dict[str, Any]) -> None:
    closed = sorted(
        (c.closed_at, cid) for cid, c in state["carts"].items() if c.closed_at is not None
    )
    for _, old in closed[:-CLOSED_KEPT]:
        state["carts"] = {k: v for k, v in state["carts"].items() if k != old}


def open_value(state: dict[str, Any]) -> int:
    """The value of the open carts, saturating at the money bound like each cart's."""
    return min(
        sum(c.value for c in state["carts"].values() if c.closed_at is None),
        MAX_MONEY_MINOR,
    )


def fold_carts(winner: dict[str, Any], loser: dict[str, Any]) -> dict[str, Cart]:
    """Anonymous carts follow the shopper. A cart both profiles hold (items added before and
    after the login) gets the items of both: each cart event was applied to exactly one of
    them, so quantities add up."""
    carts: dict[str, Cart] = dict(winner["carts"])
    theirs: Cart
    for cart_id, theirs in loser["carts"].items():
        mine = carts.get(cart_id)
        if mine is None:
            carts[cart_id] = theirs
            continue
        items = dict(mine.items)
        for sku, (qty, unit) in theirs.items.items():
            known = items.get(sku)
            if known is None and len(items) >= CART_LINES_MAX:
                continue  # the line cap holds for a merged cart too
            items[sku] = (qty + known[0], unit) if known else (qty, unit)
        closed = [c for c in (mine.closed_at, theirs.closed_at) if c is not None]
        carts[cart_id] = Cart(
            items=items,
            at=max(mine.at, theirs.at),
            since=min(_since(mine), _since(theirs)),
            closed_at=max(closed) if closed else None,
            # new contents re-arm the reminders; the same contents keep the further count
            reminded=max(
                (r for r in (mine.reminded, theirs.reminded) if r),
                key=lambda r: r[1],
                default=None,
            ),
            value=_value(items),
        )
    # each profile's last purchase that named no cart chooses again among the united carts
    # (bought in store before the login linked the card: the cart the other profile brings)
    for bought in sorted({s["carts_closed_until"] for s in (winner, loser)} - {None}):
        carts = _settled(carts, bought)
    by_close = sorted((c.closed_at, cid) for cid, c in carts.items() if c.closed_at is not None)
    gone = {cid for _, cid in by_close[:-CLOSED_KEPT]}
    return _bounded_open({k: v for k, v in carts.items() if k not in gone})


def fold(w: dict[str, Any], lo: dict[str, Any], out: dict[str, Any], rules: Rules) -> Any:
    """``domain.fold``'s rule for ``carts`` (``FOLDERS``): ``fold_carts``."""
    return fold_carts(w, lo)


def default() -> dict[str, Cart]:
    """A new profile's carts: none (``domain.customer.new_state``)."""
    return {}


def digest(items: dict[str, tuple[int, int]]) -> str:
    """Names a cart's contents: reminders go out once per contents."""
    return hashlib.sha256(orjson.dumps(items, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def cart_reminder(cart: Cart, rules: Rules) -> tuple[int, int, str] | None:
    """(due, reminder index, contents digest) of the cart's next reminder, or None."""
    if cart.closed_at is not None or cart.value < rules.carts.min_value_minor:
        return None
    contents = digest(cart.items)
    reminded = cart.reminded
    sent = reminded[1] if reminded and reminded[0] == contents else 0
    delays = rules.carts.reminder_delays_minutes
    if sent >= len(delays):
        return None
    return cart.at + round(delays[sent] * MS_PER_MINUTE), sent, contents


def _reminder_due(cart: Cart, rules: Rules) -> int | None:
    """``cart_reminder``'s due time; the contents' digest only when a reminder was sent (it
    tells whether that reminder was for these contents): this runs after every stored state."""
    if cart.closed_at is not None or cart.value < rules.carts.min_value_minor:
        return None
    reminded = cart.reminded
    sent = reminded[1] if reminded and reminded[0] == digest(cart.items) else 0
    delays = rules.carts.reminder_delays_minutes
    if sent >= len(delays):
        return None
    return int(cart.at + round(delays[sent] * MS_PER_MINUTE))


def next_reminder(state: dict[str, Any], rules: Rules) -> tuple[int, str] | None:
    """(due, cart_id) of the earliest reminder of any open cart."""
    out = None
    for cart_id, cart in state["carts"].items():
        nxt = cart_reminder(cart, rules)
        if nxt is not None and (out is None or (nxt[0], cart_id) < out):
            out = (nxt[0], cart_id)
    return out


def next_due(state: dict[str, Any], rules: Rules) -> int | None:
    """When the earliest reminder of any open cart is due (``next_reminder``'s time)."""
    out = None
    for cart in state["carts"].values():
        due = _reminder_due(cart, rules)
        if due is not None and (out is None or due < out):
            out = due
    return out


def remind(state: dict[str, Any], cart_id: str, rules: Rules) -> Decision:
    """The ``abandoned_cart`` proposal of a cart's due reminder; the reminder counts as done."""
    cart: Cart | None = state["carts"].get(cart_id)
    assert cart is not None
    nxt = cart_reminder(cart, rules)
    assert nxt is not None
    due, sent, contents = nxt
    cart = replace(cart, reminded=(contents, sent + 1))
    _store(state, cart_id, cart)
    items = [
        {"sku": sku, "quantity": qty, "unit_price_minor": unit}
        for sku, (qty, unit) in sorted(cart.items.items())
        if qty > 0
    ]
    return triggers.propose(
        "abandoned_cart",
        f"{cart_id}:{contents}:{sent}",
        due,
        f"A cart worth {cart.value} minor units has seen no purchase for "
        f"{rules.carts.reminder_delays_minutes[sent]:g} minutes since its last change.",
        {
            "cart_id": cart_id,
            "items": items,
            "value_minor": cart.value,
            "last_activity_at": iso(cart.at),
            "reminder": sent + 1,
        },
        "abandoned_cart",
    )


def still_abandoned(state: dict[str, Any], proposal: dict[str, Any], rules: Rules) -> bool:
    """The cart the reminder speaks of is still open with the same contents."""
    evidence = proposal["evidence"]
    cart: Cart | None = state["carts"].get(evidence["cart_id"])
    if cart is None or cart.closed_at is not None:
        return False
    return bool(proposal["cause"].split(":")[-2] == digest(cart.items))
