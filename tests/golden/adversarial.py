"""Hostile sequences for the golden outputs: what the fault-isolation, bounds and privacy work
taught the core to survive, as v1 events with the wall time ingest reads each (and whether it
came on the privileged input).

The two examples of the bounded-core property (tests/unit/domain/test_bounded_core_property.py:
a merge of two maximal profiles then erased, a cart line 1000 times over its bounds) under
that test's rules (currencies of exponent 0, 2 and 3, a 10x campaign); hand-written sequences
for erasure, access, redirects, identity limits, privileged commands on the public input,
future-dated, late and duplicate events; and seeded random traffic of a small identifier pool
(links, merges, limits exceeded) with numbers at, above and inside their bounds.
"""

from __future__ import annotations

import random
from typing import Any

from tests.unit.domain.test_bounded_core_property import (
    IDENTIFIERS,
    LATE,
    MERGE_THEN_ERASE,
    OVER_BOUNDS,
    RULES,
    T0,
    TYPES,
)
from tests.unit.domain.test_bounded_core_property import STEPS as PROPERTY_STEPS
from tests.unit.domain.test_bounded_core_property import event as ev
from touchstream.domain.bounds import MAX_MONEY_MINOR, MAX_POINTS, MAX_QUANTITY
from touchstream.domain.clock import MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE, iso

__all__ = ["PARTITIONS", "RULES", "sequences"]

PARTITIONS = 3
LAG_MS = 1_000  # ingest reads a record this long after it happened (unless late)
RANDOM_SEQUENCES = 40

Arrival = tuple[dict[str, Any], int, bool]  # (v1 event, read at, privileged input)

CARD, MAIL, WEB, PHONE = (
    {"loyalty_id": "L-9"},
    {"email": "nine@example.com"},
    {"device_id": "dev-9"},
    {"phone": "+49 170 9999999"},
)


def timely(events: list[dict[str, Any]], privileged: bool = True) -> list[Arrival]:
    return [(e, int(e["occurred_at"]) + LAG_MS, privileged) for e in events]


def buy(ident: dict[str, str], at: int, order: str, total: int, **more: Any) -> dict[str, Any]:
    items = [{"sku": "s-1", "quantity": 1, "unit_price_minor": total, "category": "shoes"}]
    return ev(
        "purchase",
        ident,
        at,
        order_id=order,
        total_minor=total,
        currency="EUR",
        items=items,
        **more,
    )


def cart_add(ident: dict[str, str], at: int, cart: str, sku: str, price: int) -> dict[str, Any]:
    return ev(
        "add_to_cart",
        ident,
        at,
        cart_id=cart,
        sku=sku,
        quantity=1,
        unit_price_minor=price,
        currency="EUR",
    )


def erase_then_seen_again() -> list[Arrival]:
    """A known shopper grants consent, asks for their data, is erased; a record in flight
    from before the erasure arrives after it; the same identifiers come back later."""
    t = T0
    events = [
        ev("identify", {**WEB, **MAIL}, t),
        ev("identify", {**MAIL, **CARD}, t + 1),
        buy(CARD, t + 2, "O-1", 50_000),
        cart_add(WEB, t + 3, "c-9", "s-2", 1_999),
        ev("consent_updated", MAIL, t + 4, purposes={"email_marketing": True, "profiling": True}),
        ev("access_requested", CARD, t + 5, request_id="dsr-access"),
        ev("erasure_requested", MAIL, t + 6, request_id="dsr-erase"),
    ]
    arrivals = timely(events)
    # in flight at the erasure (dated before it), then the same identifiers days later
    arrivals.append(
        (ev("page_view", WEB, t + 5, url="https://shop.example/late"), t + 9_000, False)
    )
    later = t + 3 * MS_PER_DAY
    arrivals += timely(
        [
            ev("page_view", WEB, later, url="https://shop.example/again"),
            buy(CARD, later + 1, "O-2", 7_500),
            ev("erasure_requested", CARD, later + 2, request_id="dsr-erase"),  # the same request
            ev("access_requested", CARD, later + 3, request_id="dsr-access-2"),
        ]
    )
    return arrivals


def privileged_on_public_input() -> list[Arrival]:
    """Commands that act for the customer arrive on the ordinary input (refused to the DLQ);
    a consent withdrawal is accepted from any channel."""
    t = T0
    public = [
        buy(CARD, t, "O-1", 120_000),
        ev("erasure_requested", CARD, t + 1, request_id="forged"),
        ev("access_requested", CARD, t + 2, request_id="forged"),
        ev("redemption", CARD, t + 3, redemption_id="r-forged", points=100),
        ev("consent_updated", CARD, t + 4, purposes={"email_marketing": True}),
        ev("consent_updated", CARD, t + 5, purposes={"email_marketing": False}),
    ]
    privileged = [
        ev("consent_updated", CARD, t + 6, purposes={"email_marketing": True}),
        ev("redemption", CARD, t + 7, redemption_id="r-1", points=MAX_POINTS),  # too many
        ev("redemption", CARD, t + 8, redemption_id="r-2", points=10),
    ]
    return timely(public, privileged=False) + timely(privileged)


def redirect_chain() -> list[Arrival]:
    """Three profiles linked one after the other: redirects that point at a redirect, events
    sent to absorbed ids, a return of an order bought on the other side of the link."""
    t = T0
    a, b, c = {"device_id": "dev-a"}, {"email": "b@example.com"}, {"loyalty_id": "L-c"}
    events = [
        buy(a, t, "O-a", 30_000),
        cart_add(a, t + 1, "c-a", "s-1", 4_000),
        buy(b, t + 2, "O-b", 60_000),
        buy(c, t + 3, "O-c", 90_000),
        ev("identify", {**a, **b}, t + MS_PER_MINUTE),
        ev("page_view", a, t + 2 * MS_PER_MINUTE, url="https://shop.example/a"),
        ev("identify", {**b, **c}, t + 3 * MS_PER_MINUTE),
        ev(
            "return",
            a,
            t + 4 * MS_PER_MINUTE,
            return_id="R-b",
            order_id="O-b",
            refund_minor=60_000,
            currency="EUR",
        ),
        ev("page_view", b, t + 5 * MS_PER_MINUTE, url="https://shop.example/b"),
        ev(
            "checkout_started",
            c,
            t + 6 * MS_PER_MINUTE,
            cart_id="c-a",
            value_minor=4_000,
            currency="EUR",
        ),
    ]
    return timely(events)


def identity_limits() -> list[Arrival]:
    """One card seen with more devices and emails than the rules allow, then an email of it with
    a second card (one card a customer), then a phone linking that second card's side."""
    t = T0
    events = [ev("identify", {**CARD, "device_id": f"dev-{i:02d}"}, t + i) for i in range(28)]
    events += [
        ev("identify", {**CARD, "email": f"m{i}@example.com"}, t + 100 + i) for i in range(7)
    ]
    events.append(ev("identify", {"loyalty_id": "L-10", "email": "m0@example.com"}, t + 200))
    events.append(ev("identify", {"loyalty_id": "L-10", **PHONE}, t + 201))
    events.append(ev("identify", {**PHONE, "device_id": "dev-00"}, t + 202))
    return timely(events)


def future_late_and_duplicates() -> list[Arrival]:
    """Device clocks ahead (inside the day ingest accepts, and beyond it), events days late,
    the same event id again, a return read before its purchase."""
    t = T0
    arrivals: list[Arrival] = [
        (cart_add(WEB, t + 23 * MS_PER_HOUR, "c-f", "s-1", 2_500), t, False),
        (ev("page_view", WEB, t + 2 * MS_PER_DAY, url="https://shop.example/f"), t + 1, False),
        (
            ev(
                "return",
                CARD,
                t - MS_PER_DAY,
                return_id="R-1",
                order_id="O-1",
                refund_minor=5_000,
                currency="EUR",
            ),
            t + 2,
            False,
        ),
        (buy(CARD, t - 2 * MS_PER_DAY, "O-1", 10_000), t + 3, False),
        (buy(CARD, t - 2 * MS_PER_DAY, "O-1", 10_000), t + 4, False),  # a duplicate
        (cart_add(CARD, t + 5, "c-1", "s-9", 3_000), t + 6, False),
        (buy(CARD, t - 400 * MS_PER_DAY, "O-old", 80_000), t + 7, False),  # past expiry
        (ev("page_view", CARD, iso(t + 8), url="https://shop.example/rfc3339"), t + 9, False),
    ]
    return arrivals


def trigger_guards() -> list[Arrival]:
    """Shoppers who consent to every channel, then carts, browsing and orders every few
    minutes to hours for three days: triggers delivered, and held back by cooldown, the
    frequency cap, a withdrawn consent and a condition no longer true."""
    rng = random.Random(2929)
    shoppers = [{"loyalty_id": f"L-g{n}", "device_id": f"dev-g{n}"} for n in range(3)]
    grant = {"email_marketing": True, "sms_marketing": True, "push_marketing": True}
    events = [ev("consent_updated", s, T0 + n, purposes=grant) for n, s in enumerate(shoppers)]
    at = T0 + MS_PER_MINUTE
    for n in range(240):
        at += rng.choice([MS_PER_MINUTE, 10 * MS_PER_MINUTE, 40 * MS_PER_MINUTE, 2 * MS_PER_HOUR])
        who = rng.choice(shoppers)
        roll = rng.random()
        if roll < 0.3:
            events.append(cart_add(who, at, f"c-{n}", f"s-{n % 7}", rng.randint(50, 30_000)))
        elif roll < 0.6:
            events.append(ev("product_view", who, at, sku=f"s-{n % 5}"))
        elif roll < 0.75:
            events.append(buy(who, at, f"O-{n}", rng.randint(1_000, 400_000), cart_id=f"c-{n - 1}"))
        elif roll < 0.8:
            events.append(
                ev(
                    "return",
                    who,
                    at,
                    return_id=f"R-{n}",
                    order_id=f"O-{n - 2}",
                    refund_minor=rng.randint(100, 50_000),
                    currency="EUR",
                )
            )
        elif roll < 0.82:
            events.append(ev("consent_updated", who, at, purposes={"email_marketing": False}))
        else:
            events.append(ev("page_view", who, at, url=f"https://shop.example/{n}"))
    return timely(events)


# --- seeded random traffic (after the bounded-core property's strategy) ---------------------

POOL = IDENTIFIERS  # a small pool, so shoppers link, merge and exceed the identity limits
STEPS = [*PROPERTY_STEPS, *LATE]
CURRENCIES = ["EUR", "EUR", "EUR", "JPY", "KWD", "USD"]


def near(rng: random.Random, bound: int, low: int = 0) -> int:
    """At the bound, above it (refused), at the bottom, or ordinary."""
    return rng.choice([low, bound, bound + 1, bound * 1000, rng.randint(low, 200_000)])


def random_props(rng: random.Random, kind: str) -> dict[str, Any]:
    ids = ["x-1", "x-2", "x" * 128]
    cur = rng.choice(CURRENCIES)
    money = lambda: near(rng, MAX_MONEY_MINOR)  # noqa: E731
    lines = lambda: [  # noqa: E731
        {
            "sku": rng.choice(ids),
            "quantity": near(rng, MAX_QUANTITY, 1),
            "unit_price_minor": money(),
            **({"category": "shoes"} if rng.random() < 0.5 else {}),
        }
        for _ in range(rng.randint(0, 3))
    ]
    if kind in ("add_to_cart", "remove_from_cart"):
        return {
            "cart_id": rng.choice(ids),
            "sku": rng.choice(ids),
            "quantity": near(rng, MAX_QUANTITY, 1),
            "unit_price_minor": money(),
            "currency": cur,
        }
    if kind == "checkout_started":
        return {"cart_id": rng.choice(ids), "value_minor": money(), "currency": cur}
    if kind == "purchase":
        return {
            "order_id": rng.choice(ids),
            "total_minor": money(),
            "currency": cur,
            "items": lines(),
            **({"discount_minor": money()} if rng.random() < 0.3 else {}),
        }
    if kind == "return":
        return {
            "return_id": rng.choice(ids),
            "order_id": rng.choice(ids),
            "refund_minor": money(),
            "currency": cur,
            **({"items": lines()} if rng.random() < 0.5 else {}),
        }
    if kind == "redemption":
        return {"redemption_id": rng.choice(ids), "points": near(rng, MAX_POINTS, 1)}
    if kind == "product_view":
        return {"sku": rng.choice(ids), "price_minor": money(), "currency": cur}
    if kind == "page_view":
        return {"url": "https://shop.example.com/" + "p" * rng.choice([0, 2000])}
    if kind == "search":
        return {"query": "q" * rng.choice([0, 1, 512])}
    if kind == "identify":
        return {"traits": {"first_name": "Ana"}}
    if kind in ("email_open", "email_click", "social_engagement"):
        return {"campaign_id": rng.choice(ids)}
    if kind == "consent_updated":
        purposes = ["email_marketing", "sms_marketing", "push_marketing", "profiling"]
        chosen = rng.sample(purposes, rng.randint(1, 4))
        return {"purposes": {p: rng.random() < 0.5 for p in chosen}}
    if kind in ("erasure_requested", "access_requested"):
        return {"request_id": rng.choice(ids)}
    return {}


def random_sequence(seed: int) -> list[Arrival]:
    rng = random.Random(seed)
    count = rng.randint(5, 30)
    at = read = T0
    out: list[Arrival] = []
    for i in range(count):
        at = max(at + rng.choice(STEPS), 0)
        read = max(read, at)
        kind = rng.choice(TYPES)
        kinds = rng.sample(sorted(POOL), rng.randint(1, 3))
        ident = {k: rng.choice(POOL[k]) for k in kinds}
        if kind == "loyalty_signup":
            ident.setdefault("loyalty_id", rng.choice(POOL["loyalty_id"]))
        if kind == "identify" and len(ident) < 2:
            ident.setdefault("device_id", "dev-1")
            ident.setdefault("email", "ana@example.com")
        event = ev(kind, ident, at, **random_props(rng, kind))
        event["event_id"] = f"e-{rng.randint(0, count)}"  # a few duplicates
        event["occurred_at"] = iso(at) if rng.random() < 0.5 else at
        event["channel"] = rng.choice(["pos", "web", "app", "email"])
        out.append((event, read + LAG_MS + i, rng.random() < 0.8))  # a fifth on the public input
    return out


def sequences() -> dict[str, list[Arrival]]:
    out = {
        "merge_then_erase": [(e, t, True) for e, t in MERGE_THEN_ERASE],
        "over_bounds": [(e, t, True) for e, t in OVER_BOUNDS],
        "erase_then_seen_again": erase_then_seen_again(),
        "privileged_on_public_input": privileged_on_public_input(),
        "redirect_chain": redirect_chain(),
        "identity_limits": identity_limits(),
        "future_late_and_duplicates": future_late_and_duplicates(),
        "trigger_guards": trigger_guards(),
    }
    for seed in range(RANDOM_SEQUENCES):
        out[f"random_{seed:02d}"] = random_sequence(seed)
    return out
