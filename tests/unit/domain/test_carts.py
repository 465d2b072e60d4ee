"""A cart bought by a purchase that names it stays bought, whatever order the events of a
merged profile reach the survivor in (the "poison pills" chaos scenario's failure)."""

from __future__ import annotations

from itertools import permutations
from typing import Any

from touchstream.domain import carts
from touchstream.domain.customer import new_state

# event times of the failed run, in ms: the survivor's own purchases first (one naming cart
# 4, then one naming none), then the loser's events, forwarded after the merge, all older
UNNAMED_AT = 1_796_569_735_572


def _add(cart_id: str, at: int, qty: int, unit: int) -> dict[str, Any]:
    props = {"cart_id": cart_id, "sku": f"SKU-{cart_id}", "quantity": qty, "unit_price_minor": unit}
    return {"type": "add_to_cart", "at": at, "props": props}


def _purchase(at: int, cart_id: str | None = None) -> dict[str, Any]:
    return {"type": "purchase", "at": at, "props": {} if cart_id is None else {"cart_id": cart_id}}


def _apply(state: dict[str, Any], event: dict[str, Any]) -> None:
    if event["type"] == "add_to_cart":
        carts.change(state, event, +1)
    else:
        carts.close_by_purchase(state, event)


def _survivor() -> dict[str, Any]:
    state = new_state("ts-survivor")
    for event in (
        _add("cart-4", 1_796_569_483_672, 2, 11_099),
        _purchase(1_796_569_712_472, "cart-4"),
        _purchase(UNNAMED_AT),  # named no cart, and every cart so far is bought
    ):
        _apply(state, event)
    return state


LOSERS_EVENTS = [
    _add("cart-1", 1_796_568_877_172, 2, 11_599),
    _purchase(1_796_568_945_072, "cart-1"),
    _add("cart-2", 1_796_568_988_872, 3, 4_399),
    _purchase(1_796_569_097_472, "cart-2"),
]


def test_the_forwarded_events_of_a_merged_profile_leave_no_bought_cart_open() -> None:
    # as they arrived in the failed run: cart 1, its purchase, cart 2 (which the unnamed
    # purchase then chose), its purchase; cart 1 was reopened and showed 23,198 open
    state = _survivor()
    for event in LOSERS_EVENTS:
        _apply(state, event)
    assert carts.open_value(state) == 0
    assert state["carts"]["cart-1"].closed_at == 1_796_568_945_072  # when it was bought
    assert state["carts"]["cart-2"].closed_at == 1_796_569_097_472


def test_the_open_value_does_not_depend_on_the_order_the_loser_events_arrive_in() -> None:
    # each cart's own events in their order (a purchase after its cart's addition), the two
    # carts interleaved in every way
    values = set()
    for order in permutations(range(4)):
        if order.index(0) > order.index(1) or order.index(2) > order.index(3):
            continue
        state = _survivor()
        for i in order:
            _apply(state, LOSERS_EVENTS[i])
        values.add(carts.open_value(state))
    assert values == {0}
