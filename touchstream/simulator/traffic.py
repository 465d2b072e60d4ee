"""Deterministic generator of touchpoint events (same seed, same clock -> same records).

Shoppers browse on the web or app, fill and abandon carts, buy online or in a store with
their loyalty card, return items, log in (linking device and email), change consent and
open marketing emails. A share of records can be malformed, one kind at a time, each kind
with the DLQ reason a worker must give it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from touchstream.domain.privileged import requires_privilege
from touchstream.streams.topics import privileged_input

# malformed kind -> the DLQ reason a worker must give it
MALFORMED_KINDS: dict[str, str] = {
    "invalid_json": "invalid_json",
    "invalid_utf8": "invalid_utf8",
    "too_large": "too_large",
    "deep_nesting": "invalid_json",
    "unknown_type": "unknown_type",
    "unsupported_version": "unsupported_version",
    "missing_event_id": "schema_violation",
    "negative_money": "schema_violation",
    "wrong_types": "schema_violation",
    "float_money": "schema_violation",
    "far_future": "schema_violation",
    "before_1970": "schema_violation",
    "unsupported_currency": "unsupported_currency",
}

CATEGORIES = ("shoes", "outerwear", "denim", "accessories", "beauty", "home")
STORES = tuple(f"store-{n:03d}" for n in range(1, 13))


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes
    malformed: str | None = None
    # a privileged command (domain.privileged: here, consent grants): produced to the
    # privileged input, as the data-request and loyalty services do (``topic_for``)
    privileged: bool = False


def topic_for(record: Record, topic: str) -> str:
    """The input ``record`` goes to: ``topic``, or its privileged sibling
    (``topics.privileged_input``: the worker's ``touchpoints.privileged`` when ``topic`` is its
    ``touchpoints``)."""
    return privileged_input(topic) if record.privileged else topic


@dataclass
class Shopper:
    n: int
    loyalty_id: str
    email: str
    device_id: str
    phone: str
    prefers_store: bool
    identified: bool = False
    cart: dict[str, tuple[int, int]] = field(default_factory=dict)
    cart_n: int = 0
    orders: list[tuple[str, int]] = field(default_factory=list)
    returned: set[str] = field(default_factory=set)


class Traffic:
    def __init__(
        self,
        customers: int = 500,
        seed: int = 7,
        malformed: float = 0.0,
        malformed_kinds: Sequence[str] | None = None,
        max_event_bytes: int = 65536,
    ) -> None:
        if not 0 <= malformed <= 1:
            raise ValueError("malformed must be a share between 0 and 1")
        kinds = list(malformed_kinds or MALFORMED_KINDS)
        unknown = [k for k in kinds if k not in MALFORMED_KINDS]
        if unknown:
            raise ValueError(
                f"unknown malformed kind {unknown[0]!r}; known: {sorted(MALFORMED_KINDS)}"
            )
        self._rng = random.Random(seed)
        self._seed = seed
        self._malformed = malformed
        self._kinds = kinds
        self._kind_turn = 0
        self._max_bytes = max_event_bytes
        self._seq = 0
        self._skus = [f"SKU-{i:05d}" for i in range(400)]
        self._prices = {sku: self._rng.randrange(299, 25_000, 100) for sku in self._skus}
        self._category = {sku: self._rng.choice(CATEGORIES) for sku in self._skus}
        self.shoppers = [
            Shopper(
                n=i,
                loyalty_id=f"L{seed:02d}{i:07d}",
                email=f"shopper{i}.{seed}@example.com",
                device_id=f"dev-{seed}-{i:07d}",
                phone=f"+49170{seed:02d}{i:06d}",
                prefers_store=self._rng.random() < 0.4,
            )
            for i in range(customers)
        ]

    def next(self, now_ms: int) -> Record:
        self._seq += 1
        if self._malformed and self._rng.random() < self._malformed:
            kind = self._kinds[self._kind_turn % len(self._kinds)]
            self._kind_turn += 1
            return self._malformed_record(kind, now_ms)
        shopper = self._rng.choice(self.shoppers)
        event = self._event_for(shopper, now_ms)
        key = event["identity"].get("loyalty_id") or event["identity"].get("device_id") or ""
        return Record(
            key.encode() or None, orjson.dumps(event), privileged=requires_privilege(event)
        )

    # -- valid traffic -----------------------------------------------------------------------

    def _envelope(
        self,
        shopper: Shopper,
        kind: str,
        channel: str,
        now_ms: int,
        identity: dict[str, str],
        props: dict[str, Any],
    ) -> dict[str, Any]:
        return {
            "event_id": f"sim-{self._seed}-{self._seq}",
            "type": kind,
            "schema_version": 1,
            "occurred_at": now_ms,
            "channel": channel,
            "source": "web-eu" if channel in ("web", "app", "email") else self._rng.choice(STORES),
            "identity": identity,
            "properties": props,
        }

    def _web_identity(self, s: Shopper) -> dict[str, str]:
        if s.identified:
            return {"device_id": s.device_id, "loyalty_id": s.loyalty_id}
        return {"device_id": s.device_id}

    def _event_for(self, s: Shopper, now_ms: int) -> dict[str, Any]:
        r = self._rng.random()
        if s.prefers_store and r < 0.35:
            return self._purchase(s, now_ms, channel="pos")
        if r < 0.30:
            return self._envelope(
                s,
                "page_view",
                "web",
                now_ms,
                self._web_identity(s),
                {"url": f"https://shop.example.com/c/{self._rng.choice(CATEGORIES)}"},
            )
        if r < 0.50:
            sku = self._rng.choice(self._skus)
            return self._envelope(
                s,
                "product_view",
                self._rng.choice(("web", "app")),
                now_ms,
                self._web_identity(s),
                {
                    "sku": sku,
                    "category": self._category[sku],
                    "price_minor": self._prices[sku],
                    "currency": "EUR",
                },
            )
        if r < 0.55:
            return self._envelope(
                s,
                "search",
                "web",
                now_ms,
                self._web_identity(s),
                {"query": self._rng.choice(CATEGORIES)},
            )
        if r < 0.68:
            return self._add_to_cart(s, now_ms)
        if r < 0.71 and s.cart:
            sku = next(iter(s.cart))
            qty, price = s.cart.pop(sku)
            return self._envelope(
                s,
                "remove_from_cart",
                "web",
                now_ms,
                self._web_identity(s),
                {
                    "cart_id": self._cart_id(s),
                    "sku": sku,
                    "quantity": qty,
                    "unit_price_minor": price,
                    "currency": "EUR",
                },
            )
        if r < 0.78 and s.cart:
            return self._purchase(s, now_ms, channel="web")
        if r < 0.82:
            s.identified = True
            return self._envelope(
                s,
                "identify",
                "web",
                now_ms,
                {"device_id": s.device_id, "email": s.email, "loyalty_id": s.loyalty_id},
                {},
            )
        if r < 0.85 and s.orders:
            return self._return(s, now_ms)
        if r < 0.88:
            purposes = {
                "email_marketing": self._rng.random() < 0.7,
                "sms_marketing": self._rng.random() < 0.3,
                "profiling": self._rng.random() < 0.9,
            }
            return self._envelope(
                s, "consent_updated", "web", now_ms, {"email": s.email}, {"purposes": purposes}
            )
        if r < 0.92:
            return self._envelope(
                s,
                "email_open",
                "email",
                now_ms,
                {"email": s.email},
                {"campaign_id": f"cmp-{self._rng.randrange(5)}"},
            )
        if r < 0.94:
            return self._envelope(
                s,
                "loyalty_signup",
                "pos",
                now_ms,
                {"loyalty_id": s.loyalty_id, "phone": s.phone},
                {},
            )
        return self._purchase(s, now_ms, channel="pos")

    def _cart_id(self, s: Shopper) -> str:
        return f"cart-{self._seed}-{s.n}-{s.cart_n}"

    def _add_to_cart(self, s: Shopper, now_ms: int) -> dict[str, Any]:
        sku = self._rng.choice(self._skus)
        qty = self._rng.randint(1, 3)
        s.cart[sku] = (qty, self._prices[sku])
        return self._envelope(
            s,
            "add_to_cart",
            self._rng.choice(("web", "app")),
            now_ms,
            self._web_identity(s),
            {
                "cart_id": self._cart_id(s),
                "sku": sku,
                "quantity": qty,
                "unit_price_minor": self._prices[sku],
                "currency": "EUR",
            },
        )

    def _purchase(self, s: Shopper, now_ms: int, channel: str) -> dict[str, Any]:
        if channel == "web" and s.cart:
            items: list[dict[str, Any]] = [
                {"sku": sku, "quantity": q, "unit_price_minor": p, "category": self._category[sku]}
                for sku, (q, p) in s.cart.items()
            ]
            identity = self._web_identity(s)
            extra: dict[str, Any] = {"cart_id": self._cart_id(s)}
        else:
            skus = self._rng.sample(self._skus, self._rng.randint(1, 3))
            items = [
                {
                    "sku": sku,
                    "quantity": 1,
                    "unit_price_minor": self._prices[sku],
                    "category": self._category[sku],
                }
                for sku in skus
            ]
            identity = {"loyalty_id": s.loyalty_id}
            extra = {"store_id": self._rng.choice(STORES)}
            if s.cart:  # a POS sale closes the open web cart too
                extra["cart_id"] = self._cart_id(s)
        total = sum(i["quantity"] * i["unit_price_minor"] for i in items)
        order_id = f"ord-{self._seed}-{self._seq}"
        s.orders.append((order_id, total))
        s.cart.clear()
        s.cart_n += 1
        props = {
            "order_id": order_id,
            "total_minor": total,
            "currency": "EUR",
            "items": items,
            **extra,
        }
        return self._envelope(s, "purchase", channel, now_ms, identity, props)

    def _return(self, s: Shopper, now_ms: int) -> dict[str, Any]:
        order_id, total = self._rng.choice(s.orders)
        refund = total if self._rng.random() < 0.5 else total * 4 // 10
        return self._envelope(
            s,
            "return",
            "pos",
            now_ms,
            {"loyalty_id": s.loyalty_id},
            {
                "return_id": f"ret-{self._seed}-{self._seq}",
                "order_id": order_id,
                "refund_minor": refund,
                "currency": "EUR",
            },
        )

    # -- malformed traffic -------------------------------------------------------------------

    def _malformed_record(self, kind: str, now_ms: int) -> Record:
        shopper = self._rng.choice(self.shoppers)
        base = self._envelope(
            shopper,
            "purchase",
            "pos",
            now_ms,
            {"loyalty_id": shopper.loyalty_id},
            {"order_id": f"bad-{self._seq}", "total_minor": 1999, "currency": "EUR", "items": []},
        )
        key = shopper.loyalty_id.encode()
        value: bytes
        if kind == "invalid_json":
            value = b'{"event_id": "x", "type": "purchase", '
        elif kind == "invalid_utf8":
            value = b'{"event_id": "\xff\xfe\xfd"}'
        elif kind == "too_large":
            value = orjson.dumps(dict(base, padding="x" * (self._max_bytes + 1024)))
        elif kind == "deep_nesting":
            value = b"[" * 5000 + b"]" * 5000
        elif kind == "unknown_type":
            value = orjson.dumps(dict(base, type="teleport"))
        elif kind == "unsupported_version":
            value = orjson.dumps(dict(base, schema_version=99))
        elif kind == "missing_event_id":
            value = orjson.dumps({k: v for k, v in base.items() if k != "event_id"})
        elif kind == "negative_money":
            value = orjson.dumps(dict(base, properties=dict(base["properties"], total_minor=-500)))
        elif kind == "wrong_types":
            value = orjson.dumps(
                dict(base, properties=dict(base["properties"], total_minor="19.99"))
            )
        elif kind == "float_money":
            value = orjson.dumps(dict(base, properties=dict(base["properties"], total_minor=19.99)))
        elif kind == "far_future":
            value = orjson.dumps(dict(base, occurred_at=now_ms + 400 * 86_400_000))
        elif kind == "before_1970":
            value = orjson.dumps(dict(base, occurred_at="1969-07-20T20:17:00Z"))
        elif kind == "unsupported_currency":
            value = orjson.dumps(dict(base, properties=dict(base["properties"], currency="JPY")))
        else:  # pragma: no cover - guarded in __init__
            raise ValueError(kind)
        return Record(key, value, kind)


def generate(n: int, customers: int, seed: int, start_ms: int, step_ms: int = 50) -> list[Record]:
    """``n`` valid records with event time advancing ``step_ms`` per record (benchmarks)."""
    traffic = Traffic(customers=customers, seed=seed)
    return [traffic.next(start_ms + i * step_ms) for i in range(n)]
