"""Property: whatever the contract admits, the pure core keeps going and its states stay storable.

Events are generated from the v1 contract and its bounds (domain/bounds.py), numbers drawn
at, just above and well inside each bound, money in currencies of exponent 0, 2 and 3, and
shoppers who share identifiers: one seen alone, then with another (a link), two identifiers
each with a profile of its own seen together (a merge), erasure and access requests, late
and out-of-order events. Each goes through the decoder and ingest as the worker runs them; what
they refuse is a DLQ record (counted, not applied); the rest runs through the customer stage
replayed offline (``touchstream.offline``, the oracle), timers included. Afterwards every state in
the table encodes with the state codec and decodes to an equal value, and every served
profile and every decision encodes as JSON: nothing a valid event carries can make a worker
raise (and so crash-loop on it) or write a state it cannot read back.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from touchstream.config.rules import parse_rules
from touchstream.domain.bounds import MAX_MONEY_MINOR, MAX_POINTS, MAX_QUANTITY
from touchstream.domain.clock import MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE, iso
from touchstream.domain.identity import IdentityNormaliser
from touchstream.domain.ingest import Ingest
from touchstream.domain.profile import view
from touchstream.errors import PoisonEvent
from touchstream.offline import OfflineStage
from touchstream.schemas.decode import EVENT_TYPES, decode
from touchstream.tables import state_codec
from touchstream.tables.customers import decode_state

SECRET = "unit-test-hmac-secret-0123456789abcdef"
T0 = 1_795_179_807_512  # 2026-11-20T13:03:27.512Z
FUTURE_MS = MS_PER_DAY
# a program with rates for currencies of three exponents, and a bonus campaign at the largest
# multiplier the rules allow (its thousandths multiply the order value the state keeps)
RULES = parse_rules(
    """
[program]
exchange_rates_per_major = { JPY = 0.0061, KWD = 2.98, USD = 0.92 }

[[loyalty.campaigns]]
name = "double"
multiplier = 10.0
category = "shoes"
"""
)
INGEST = Ingest(RULES.program, IdentityNormaliser(SECRET), FUTURE_MS)
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# a small pool, so generated shoppers link, merge and exceed the identity limits
IDENTIFIERS = {
    "loyalty_id": ["L-1", "L-2"],
    "customer_id": ["crm-1", "crm-2"],
    "email": ["ana@example.com", "bo@example.com"],
    "phone": ["+49 170 1111111"],
    "device_id": ["dev-1", "dev-2"],
    "anonymous_id": ["anon-1", "anon-2", "anon-3"],
}
# every type, those carrying numbers three times as often
NUMBERS = [
    "add_to_cart",
    "remove_from_cart",
    "purchase",
    "return",
    "redemption",
    "checkout_started",
]
TYPES = [*EVENT_TYPES, *NUMBERS, *NUMBERS]
STEPS = [0, 1, MS_PER_MINUTE, 40 * MS_PER_MINUTE, 2 * MS_PER_HOUR, MS_PER_DAY, 45 * MS_PER_DAY]
LATE = [-MS_PER_HOUR, -3 * MS_PER_DAY]


def near(bound: int, low: int = 0) -> st.SearchStrategy[int]:
    """At the bound, above it (refused), at the bottom (two draws in three), or ordinary."""
    edges = st.sampled_from([low, bound, bound + 1, bound * 1000])
    return st.one_of(edges, edges, st.integers(low, min(bound, 200_000)))


MONEY = near(MAX_MONEY_MINOR)
QUANTITY = near(MAX_QUANTITY, low=1)
IDS = st.sampled_from(["x-1", "x-2", "x" * 128])


@st.composite
def identity(draw: st.DrawFn) -> dict[str, str]:
    kinds = draw(st.lists(st.sampled_from(sorted(IDENTIFIERS)), min_size=1, max_size=3))
    return {kind: draw(st.sampled_from(IDENTIFIERS[kind])) for kind in kinds}


@st.composite
def lines(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(0, 3))
    return [
        {
            "sku": draw(IDS),
            "quantity": draw(QUANTITY),
            "unit_price_minor": draw(MONEY),
            **({"category": "shoes"} if draw(st.booleans()) else {}),
        }
        for _ in range(count)
    ]


@st.composite
def properties(draw: st.DrawFn, event_type: str) -> dict[str, Any]:
    currency = draw(st.sampled_from(["EUR", "EUR", "EUR", "JPY", "KWD", "USD"]))
    if event_type in ("add_to_cart", "remove_from_cart"):
        return {
            "cart_id": draw(IDS),
            "sku": draw(IDS),
            "quantity": draw(QUANTITY),
            "unit_price_minor": draw(MONEY),
            "currency": currency,
        }
    if event_type == "checkout_started":
        return {"cart_id": draw(IDS), "value_minor": draw(MONEY), "currency": currency}
    if event_type == "purchase":
        props = {
            "order_id": draw(IDS),
            "total_minor": draw(MONEY),
            "currency": currency,
            "items": draw(lines()),
        }
        if draw(st.booleans()):
            props["discount_minor"] = draw(MONEY)
        if draw(st.booleans()):
            props["cart_id"] = draw(IDS)
        return props
    if event_type == "return":
        props = {
            "return_id": draw(IDS),
            "order_id": draw(IDS),
            "refund_minor": draw(MONEY),
            "currency": currency,
        }
        if draw(st.booleans()):
            props["items"] = draw(lines())
        return props
    if event_type == "redemption":
        return {"redemption_id": draw(IDS), "points": draw(near(MAX_POINTS, low=1))}
    if event_type == "product_view":
        props = {"sku": draw(IDS)}
        if draw(st.booleans()):
            props.update(price_minor=draw(MONEY), currency=currency)
        return props
    if event_type == "page_view":
        return {"url": "https://shop.example.com/" + "p" * draw(st.sampled_from([0, 2000]))}
    if event_type == "search":
        return {"query": "q" * draw(st.sampled_from([0, 1, 512]))}
    if event_type == "identify":
        return {"traits": {"first_name": "Ana"}}
    if event_type in ("email_open", "email_click", "social_engagement"):
        return {"campaign_id": draw(IDS)}
    if event_type == "consent_updated":
        purposes = ["email_marketing", "sms_marketing", "push_marketing", "profiling"]
        chosen = draw(st.lists(st.sampled_from(purposes), min_size=1, max_size=4, unique=True))
        return {"purposes": {p: draw(st.booleans()) for p in chosen}}
    if event_type in ("erasure_requested", "access_requested"):
        return {"request_id": draw(IDS)}
    return {}


@st.composite
def traffic(draw: st.DrawFn) -> list[tuple[dict[str, Any], int]]:
    """(v1 event, wall clock when ingest reads it), in arrival order."""
    count = draw(st.integers(1, 30))
    at = arrive = T0
    out = []
    for i in range(count):
        at = max(at + draw(st.sampled_from(STEPS + LATE)), 0)
        arrive = max(arrive, at)
        event_type = draw(st.sampled_from(TYPES))
        ident = draw(identity())
        if event_type == "loyalty_signup" and "loyalty_id" not in ident:
            ident["loyalty_id"] = draw(st.sampled_from(IDENTIFIERS["loyalty_id"]))
        if event_type == "identify" and len(ident) < 2:
            ident.setdefault("device_id", "dev-1")
            ident.setdefault("email", "ana@example.com")
        event = {
            "event_id": f"e-{draw(st.integers(0, count))}",  # a few duplicates
            "type": event_type,
            "schema_version": 1,
            # epoch ms or RFC 3339, as the contract allows
            "occurred_at": iso(at) if draw(st.booleans()) else at,
            "channel": draw(st.sampled_from(["pos", "web", "app", "email"])),
            "source": "src",
            "identity": ident,
            "properties": draw(properties(event_type)),
        }
        out.append((event, arrive + 1_000 + i))
    return out


def run(arrivals: list[tuple[dict[str, Any], int]]) -> tuple[OfflineStage, int]:
    stage = OfflineStage(RULES, partitions=3)
    refused = 0
    last = T0
    for offset, (event, now_ms) in enumerate(arrivals):
        try:
            decoded = decode(orjson.dumps(event), 65536)
            record = INGEST.normalise(decoded, now_ms, 0, offset)
        except PoisonEvent:
            refused += 1  # the DLQ's: never reaches the stage
            continue
        stage.submit([record])
        stage.drain()
        stage.tick(0, now_ms)  # a timer a late event set that is already due fires now
        assert_storable(stage)  # what each record wrote, before a later one replaces it
        last = now_ms
    # the traffic stops: the idle fallback moves every clock on, past each reminder, session
    # end, anonymous expiry, grace period, RFM step and point expiry
    for later in (MS_PER_HOUR, 2 * MS_PER_DAY, 40 * MS_PER_DAY, 100 * MS_PER_DAY, 400 * MS_PER_DAY):
        stage.tick(last + later, last + later)
        assert_storable(stage)
    return stage, refused


def assert_storable(stage: OfflineStage) -> None:
    """Every state reads back equal; every served profile and decision so far encodes."""
    for key, state in stage.table.items():
        assert decode_state(state_codec.encode(state)) == state, key
        orjson.dumps(view(state, RULES))
    for decision in stage.decisions:
        orjson.dumps(decision.payload)


def event(event_type: str, ident: dict[str, str], at: int, **props: Any) -> dict[str, Any]:
    return {
        "event_id": f"{event_type}-{at}",
        "type": event_type,
        "schema_version": 1,
        "occurred_at": at,
        "channel": "web",
        "source": "src",
        "identity": ident,
        "properties": props,
    }


def arrive(events: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    return [(e, e["occurred_at"] + 1_000) for e in events]


MAX_LINE = {
    "sku": "s",
    "quantity": MAX_QUANTITY,
    "unit_price_minor": MAX_MONEY_MINOR // MAX_QUANTITY,
}
# two shoppers' profiles, each with maximal orders, carts and points, then seen together
# (merged), then erased; every amount at its bound
MERGE_THEN_ERASE = arrive(
    [
        event(
            "purchase",
            {"loyalty_id": "L-1"},
            T0,
            order_id="o1",
            total_minor=MAX_MONEY_MINOR,
            currency="EUR",
            items=[dict(MAX_LINE, category="shoes")],
        ),
        event(
            "add_to_cart",
            {"anonymous_id": "anon-1"},
            T0 + 1,
            cart_id="c1",
            currency="EUR",
            **MAX_LINE,
        ),
        event(
            "add_to_cart",
            {"anonymous_id": "anon-1"},
            T0 + 2,
            cart_id="c1",
            currency="EUR",
            **MAX_LINE,
        ),
        event(
            "purchase",
            {"email": "ana@example.com"},
            T0 + 3,
            order_id="o2",
            total_minor=MAX_MONEY_MINOR,
            currency="KWD",
            items=[],
        ),
        event("identify", {"loyalty_id": "L-1", "anonymous_id": "anon-1"}, T0 + 4),
        event("identify", {"loyalty_id": "L-1", "email": "ana@example.com"}, T0 + 5),
        event("redemption", {"email": "ana@example.com"}, T0 + 6, redemption_id="r", points=10),
        event("erasure_requested", {"loyalty_id": "L-1"}, T0 + 7, request_id="dsr"),
        event("page_view", {"anonymous_id": "anon-1"}, T0 + MS_PER_DAY, url="https://x/"),
    ]
)


# a cart line of each number at most 1000 times its bound: 10**22 minor units of cart value
OVER_BOUNDS = arrive(
    [
        event(
            "add_to_cart",
            {"anonymous_id": "anon-1"},
            T0,
            cart_id="c",
            sku="s",
            quantity=MAX_QUANTITY * 1000,
            unit_price_minor=MAX_MONEY_MINOR,
            currency="EUR",
        )
    ]
)


@SETTINGS
@given(traffic())
@example(MERGE_THEN_ERASE)
@example(OVER_BOUNDS)
def test_the_core_never_raises_and_every_state_it_writes_reads_back_equal(arrivals):
    run(arrivals)  # asserts as it goes
