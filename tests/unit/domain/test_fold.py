"""Folding an absorbed profile into its survivor: every state field says how it merges, a
shopper's points and spend are summed with each order and the signup bonus counted once, and
the ledger does not depend on which of the two profiles survives."""

from typing import Any

from touchstream.config.rules import load_rules
from touchstream.domain.customer import apply, new_state
from touchstream.domain.fold import FOLDERS, fold, fold_mark
from touchstream.domain.identity import home_of
from touchstream.simulator.factory import internal

RULES = load_rules(None)
T0 = 1_795_179_807_512  # 2026-11-20T13:03:27.512Z
HOUR = 3_600_000
A = home_of("email", "hash-of-ann")
B = home_of("loyalty_id", "L-7")


def event(
    cid: str, ids: dict[str, str], type_: str, event_id: str, offset: int, **kw: Any
) -> dict[str, Any]:
    return internal(cid, ids, type_, event_id, offset, **{"at": T0, **kw})


def history(cid: str, ids: dict[str, str], *steps: tuple[Any, ...]) -> dict[str, Any]:
    """A profile built by ``apply``: steps are (type, event_id, at, props) in inbound order."""
    ((kind, value),) = ids.items()
    state = new_state(cid, kind, value, T0)
    for offset, (type_, event_id, at, props) in enumerate(steps, start=1):
        state = apply(state, event(cid, ids, type_, event_id, offset, at=at, **props), RULES).state
    return state


def buy(event_id: str, order_id: str, total: int, at: int) -> tuple[Any, ...]:
    props = {"order_id": order_id, "total_minor": total, "currency": "EUR", "items": []}
    return ("purchase", event_id, at, props)


def signup(event_id: str, at: int) -> tuple[Any, ...]:
    return ("loyalty_signup", event_id, at, {})


def visit(event_id: str, at: int) -> tuple[Any, ...]:
    return ("page_view", event_id, at, {"url": "https://shop.example.com/"})


def ann(*steps: tuple[Any, ...]) -> dict[str, Any]:
    return history(A, {"email": "hash-of-ann"}, *steps)


def member(*steps: tuple[Any, ...]) -> dict[str, Any]:
    return history(B, {"loyalty_id": "L-7"}, *steps)


def test_every_state_field_has_a_fold_rule_and_every_rule_a_field():
    fields = set(new_state("x"))

    assert fields - set(FOLDERS) == set(), "state fields without a fold rule"
    assert set(FOLDERS) - fields == set(), "fold rules for fields the state does not have"
    # and a fold really produces exactly the state's fields
    assert set(fold(new_state("w"), new_state("l"), RULES)) == fields


def test_points_and_spend_from_different_orders_add_up():
    loser = ann(buy("a1", "order-1", 10_000, T0), buy("a2", "order-2", 2_550, T0 + HOUR))
    winner = member(buy("b1", "order-3", 5_000, T0 + 2 * HOUR))
    assert (loser["points"], winner["points"]) == (125, 50)

    out = fold(winner, loser, RULES)

    assert out["points"] == 175
    assert out["qualifying_spend_minor"] == 17_550
    assert set(out["orders"]) == {"order-1", "order-2", "order-3"}
    assert out["customer_id"] == B


def test_an_order_both_profiles_hold_counts_once():
    # the same receipt reached both profiles (e.g. POS and e-receipt under different ids)
    loser = ann(buy("a1", "order-1", 10_000, T0), buy("a2", "shared", 4_000, T0 + HOUR))
    winner = member(buy("b1", "shared", 4_000, T0 + HOUR), buy("b2", "order-3", 1_000, T0))

    out = fold(winner, loser, RULES)

    assert out["points"] == 100 + 40 + 10
    assert out["qualifying_spend_minor"] == 10_000 + 4_000 + 1_000
    assert len(out["orders"]) == 3


def test_signup_bonus_both_profiles_received_counts_once():
    loser = ann(signup("a1", T0), buy("a2", "order-1", 3_000, T0 + HOUR))
    winner = member(signup("b1", T0 + 2 * HOUR))
    assert (loser["points"], winner["points"]) == (130, 100)

    out = fold(winner, loser, RULES)

    assert out["points"] == 100 + 30
    assert out["signup_bonus_at"] == T0


def test_signup_bonus_of_only_one_profile_is_kept():
    loser = ann(signup("a1", T0))
    winner = member(buy("b1", "order-1", 3_000, T0 + HOUR))

    out = fold(winner, loser, RULES)

    assert out["points"] == 100 + 30
    assert out["signup_bonus_at"] == T0


LEDGER = (
    "points",
    "qualifying_spend_minor",
    "orders",
    "signup_bonus_at",
    "first_purchase_at",
    "last_purchase_at",
    "first_seen_at",
    "last_event_at",
    "events",
)


def ledger(state: dict[str, Any]) -> dict[str, Any]:
    out = {name: state[name] for name in LEDGER}
    out["identifiers"] = {kind: set(values) for kind, values in state["identifiers"].items()}
    return out


def test_folding_either_way_round_gives_the_same_ledger():
    a = ann(
        visit("a0", T0 - 5 * HOUR),
        signup("a1", T0),
        buy("a2", "order-1", 10_000, T0 + HOUR),
        buy("a3", "shared", 4_000, T0 + 3 * HOUR),
    )
    b = member(
        signup("b1", T0 + 2 * HOUR),
        buy("b2", "shared", 4_000, T0 + 3 * HOUR),
        buy("b3", "order-2", 2_000, T0 - 2 * HOUR),
        visit("b4", T0 + 9 * HOUR),
    )

    a_into_b = fold(b, a, RULES)
    b_into_a = fold(a, b, RULES)

    assert ledger(a_into_b) == ledger(b_into_a)
    assert a_into_b["points"] == 100 + 100 + 40 + 20
    assert a_into_b["qualifying_spend_minor"] == 16_000
    assert a_into_b["identifiers"]["email"] == ["hash-of-ann"]
    assert a_into_b["identifiers"]["loyalty_id"] == ["L-7"]
    assert (a_into_b["first_purchase_at"], a_into_b["last_purchase_at"]) == (
        T0 - 2 * HOUR,
        T0 + 3 * HOUR,
    )
    assert (a_into_b["first_seen_at"], a_into_b["last_event_at"]) == (
        T0 - 5 * HOUR,
        T0 + 9 * HOUR,
    )


def test_an_order_earned_at_different_tiers_gives_the_same_ledger_either_way_round():
    # ann is gold (1,000.00 EUR of spend) when the shared receipt reaches her profile, so it
    # earns 1.5x there; the member profile earns it at 1.0x. Which profile survives must not
    # decide the balance: merges settle in whatever order the messages happen to arrive.
    a = ann(buy("a1", "big", 100_000, T0), buy("a2", "shared", 10_000, T0 + HOUR))
    b = member(buy("b1", "shared", 10_000, T0 + HOUR))
    assert (a["orders"]["shared"].pts, b["orders"]["shared"].pts) == (150, 100)

    a_into_b = fold(b, a, RULES)
    b_into_a = fold(a, b, RULES)

    assert a_into_b["points"] == b_into_a["points"]
    assert a_into_b["orders"] == b_into_a["orders"]


def test_losers_own_partitions_become_routes_named_by_its_home():
    loser = dict(new_state(A), src={"0": 7, "3": 2, "x-home/1": 4})
    winner = dict(new_state(B), src={"0": 11, f"{A}/0": 9, "x-home/1": 6, f"{A}/3": 1})

    out = fold(winner, loser, RULES)

    assert out["src"] == {
        "0": 11,  # the survivor's own partition 0 is untouched by the loser's partition 0
        f"{A}/0": 9,  # max of the loser's 7 and what the survivor already saw forwarded
        f"{A}/3": 2,
        "x-home/1": 6,  # routes keep the higher offset
    }


def test_redelivered_record_of_the_absorbed_home_is_a_duplicate_at_the_survivor():
    loser = ann(buy("a1", "order-1", 10_000, T0), buy("a2", "order-2", 5_000, T0 + HOUR))
    survivor = fold(member(), loser, RULES)
    survivor["seen"] = []  # its id aged out of the recent-ids window: only the offset guards

    # a rewound consumer re-reads ann's second inbound record; her home forwards it
    type_, event_id, at, props = buy("a2", "order-2", 5_000, T0 + HOUR)
    again = event(A, {"email": "hash-of-ann"}, type_, event_id, 2, at=at, **props)
    out = apply(survivor, again, RULES)

    assert out.duplicate
    assert out.state["points"] == 150
    assert out.state["events"] == {"purchase": 2}


def test_merged_gains_the_losers_fold_mark_and_keeps_both_histories():
    earlier = dict(new_state("ts-old"), version=4)
    loser = dict(ann(visit("a1", T0)), merged=["ts-older@2"])
    winner = dict(member(visit("b1", T0)), merged=[fold_mark(earlier)])

    out = fold(winner, loser, RULES)

    assert fold_mark(loser) == f"{A}@{loser['version']}"
    assert fold_mark(loser) in out["merged"]
    assert {"ts-older@2", "ts-old@4"} <= set(out["merged"])
    assert out["merged"][-1] == fold_mark(loser)


def test_a_cart_both_profiles_hold_keeps_the_items_of_both():
    # two items added on the device before login, two more on the card's profile after it
    def cart_add(cid, ids, n, sku, unit, at):
        return event(
            cid,
            ids,
            "add_to_cart",
            f"a{n}",
            n,
            at=at,
            cart_id="C-1",
            sku=sku,
            quantity=2,
            unit_price_minor=unit,
            currency="EUR",
        )

    web = {"device_id": "dev-1"}
    device_home = home_of("device_id", "dev-1")
    before = apply(None, cart_add(device_home, web, 1, "SKU-73", 11_199, T0), RULES).state
    after = apply(
        None, cart_add(B, {"loyalty_id": "L-7"}, 2, "SKU-160", 12_899, T0 + HOUR), RULES
    ).state

    for merged in (fold(after, before, RULES), fold(before, after, RULES)):
        cart = merged["carts"]["C-1"]
        assert cart.items == {"SKU-73": (2, 11_199), "SKU-160": (2, 12_899)}
        assert cart.value == 48_196


def cart(event_id: str, cart_id: str, sku: str, at: int) -> tuple[Any, ...]:
    props = {
        "cart_id": cart_id,
        "sku": sku,
        "quantity": 1,
        "unit_price_minor": 1_000,
        "currency": "EUR",
    }
    return ("add_to_cart", event_id, at, props)


def test_an_in_store_purchase_buys_the_most_recent_cart_of_the_linked_profiles():
    # the web profile filled two carts, the card's profile one, then bought in store naming
    # no cart, before the login linked them: the person's most recent cart was bought
    web = ann(cart("a1", "C-1", "SKU-1", T0), cart("a2", "C-2", "SKU-2", T0 + 5))
    store = member(cart("s1", "C-0", "SKU-0", T0 + 1), buy("p1", "O-1", 5_000, T0 + 10))
    alone = member(
        cart("a1", "C-1", "SKU-1", T0),
        cart("s1", "C-0", "SKU-0", T0 + 1),
        cart("a2", "C-2", "SKU-2", T0 + 5),
        buy("p1", "O-1", 5_000, T0 + 10),
    )

    for merged in (fold(web, store, RULES), fold(store, web, RULES)):
        closed = {cid: c.closed_at for cid, c in merged["carts"].items()}
        assert closed == {"C-0": None, "C-1": None, "C-2": T0 + 10}
        assert closed == {cid: c.closed_at for cid, c in alone["carts"].items()}
