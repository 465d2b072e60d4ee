"""A realistic shopper's journey through the per-customer stage, shared by the fixture script
(``make_fixture.py``, run once with the code of state format 1) and the migration test.

``before()`` builds the customers table: an anonymous device that browsed and filled a cart,
then logged in (its profile merged into the email's), loyalty signup, orders over two years,
a return, an accepted and a rejected redemption, consents, an open session and an open cart.
``after()`` is what happens next: duplicates of ledger facts (a replay), a new order, a late
return of an old order, a redemption, then the clock moving on (session close, cart reminder).
"""

from __future__ import annotations

from typing import Any

from tests.unit.tables import state_fixture
from touchstream.config.rules import load_rules
from touchstream.domain.identity import mint_customer_id
from touchstream.offline import OfflineStage

RULES = load_rules(None)
T0 = 1_733_000_000_000  # 2024-11-30T20:53:20Z
MIN = 60_000
DAY = 86_400_000
DEVICE = {"device_id": "dev-7f3a"}
ANN = {"email": "a" * 64}
BOTH = {**ANN, **DEVICE}


def ev(event_id: str, at: int, ids: dict[str, str], type_: str, **props: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": type_,
        "at": at,
        "ch": "web",
        "src": "web-eu",
        "ids": ids,
        "cid": mint_customer_id(ids),
        "props": props,
        "ts": at + 1_000,
    }


def buy(event_id: str, at: int, order_id: str, total: int, **extra: Any) -> dict[str, Any]:
    return ev(
        event_id,
        at,
        ANN,
        "purchase",
        order_id=order_id,
        total_minor=total,
        discount_minor=0,
        currency="EUR",
        items=[{"sku": "SKU-1", "quantity": 1, "unit_price_minor": total}],
        **extra,
    )


def view(event_id: str, at: int, ids: dict[str, str], sku: str) -> dict[str, Any]:
    return ev(event_id, at, ids, "product_view", sku=sku)


def cart(event_id: str, at: int, ids: dict[str, str], cart_id: str, sku: str, qty: int):
    return ev(
        event_id,
        at,
        ids,
        "add_to_cart",
        cart_id=cart_id,
        sku=sku,
        quantity=qty,
        unit_price_minor=2_500,
    )


def before() -> list[dict[str, Any]]:
    t = T0
    out = [
        ev(
            "e-consent",
            t,
            ANN,
            "consent_updated",
            purposes={"email_marketing": True, "profiling": True},
        ),
        ev("e-signup", t + MIN, ANN, "loyalty_signup", program="default"),
    ]
    # two years of orders, one every 40 days
    for i in range(18):
        out.append(buy(f"e-buy-{i}", t + 2 * MIN + i * 40 * DAY, f"order-{i}", 8_000 + 500 * i))
    now = t + 2 * MIN + 17 * 40 * DAY + DAY
    out += [
        ev(
            "e-ret-1",
            now,
            ANN,
            "return",
            return_id="ret-1",
            order_id="order-16",
            refund_minor=3_000,
            reason="damaged",
        ),
        ev("e-red-1", now + MIN, ANN, "redemption", redemption_id="red-1", points=200),
        ev("e-red-2", now + 2 * MIN, ANN, "redemption", redemption_id="red-2", points=999_999),
        # the anonymous device browses and fills a cart, then logs in (its profile merges)
        view("e-v1", now + 3 * MIN, DEVICE, "SKU-9"),
        view("e-v2", now + 4 * MIN, DEVICE, "SKU-9"),
        view("e-v3", now + 5 * MIN, DEVICE, "SKU-9"),
        cart("e-c1", now + 6 * MIN, DEVICE, "cart-dev", "SKU-2", 2),
        ev("e-login", now + 7 * MIN, BOTH, "identify"),
        cart("e-c2", now + 8 * MIN, ANN, "cart-dev", "SKU-3", 1),
        view("e-v4", now + 9 * MIN, ANN, "SKU-4"),
    ]
    return out


def after() -> list[dict[str, Any]]:
    now = T0 + 2 * MIN + 17 * 40 * DAY + DAY
    later = now + 10 * MIN
    return [
        buy("e-buy-16", T0 + 2 * MIN + 16 * 40 * DAY, "order-16", 8_000 + 500 * 16),  # replay
        ev("e-red-1", now + MIN, ANN, "redemption", redemption_id="red-1", points=200),  # replay
        ev("e-red-1b", later, ANN, "redemption", redemption_id="red-1", points=200),  # same id
        ev(
            "e-ret-1b",
            later + MIN,
            ANN,
            "return",
            return_id="ret-1",
            order_id="order-16",
            refund_minor=3_000,
            reason="damaged",
        ),  # same return id under another event id
        buy("e-buy-new", later + 2 * MIN, "order-new", 12_000),
        ev(
            "e-ret-2",
            later + 3 * MIN,
            ANN,
            "return",
            return_id="ret-2",
            order_id="order-15",
            refund_minor=1_000,
            reason="damaged",
        ),  # an older order (80 days), inside the windows
        ev("e-red-3", later + 4 * MIN, ANN, "redemption", redemption_id="red-3", points=100),
        cart("e-c3", later + 5 * MIN, ANN, "cart-2", "SKU-5", 3),
    ]


def stage_with(table: dict[str, dict[str, Any]]) -> OfflineStage:
    """An offline stage holding ``table``, its timers indexed as a worker's recovery does."""
    return state_fixture.stage_holding(table, RULES)


def numbered(events: list[dict[str, Any]], start: int) -> list[dict[str, Any]]:
    return [dict(e, **{"in": [0, i]}) for i, e in enumerate(events, start=start)]


def replay_after(stage: OfflineStage) -> None:
    """Feed ``after()`` (one at a time, as they arrive) and move the clock on by two days."""
    for e in numbered(after(), start=1_000):
        stage.submit([e])
        stage.drain()
    last = max(e["at"] for e in after())
    stage.tick(last + 2 * DAY, last + 2 * DAY)
