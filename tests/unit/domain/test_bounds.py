"""Bounds of the inbound contract (domain/bounds.py): a schema-valid event with a number beyond
its bound is a ``schema_violation`` naming the field, before it can reach the customer stage;
at the bound it passes. The schemas bound every string and array themselves and state each
numeric bound in their descriptions."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import orjson
import pytest

from touchstream.config.rules import load_rules, parse_rules
from touchstream.domain import carts
from touchstream.domain.bounds import MAX_LINE_MINOR, MAX_MONEY_MINOR, MAX_POINTS, MAX_QUANTITY
from touchstream.domain.customer import new_state
from touchstream.domain.identity import IdentityNormaliser
from touchstream.domain.ingest import Ingest
from touchstream.domain.profile import project
from touchstream.errors import SchemaViolation
from touchstream.schemas.decode import EVENT_TYPES, decode
from touchstream.tables import state_codec

SECRET = "unit-test-hmac-secret-0123456789abcdef"
NOW = 1_795_183_500_000
DAY_MS = 86_400_000


def event(event_type: str, **props: Any) -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "type": event_type,
        "schema_version": 1,
        "occurred_at": "2026-11-20T14:03:27.512+01:00",
        "channel": "pos",
        "source": "store-042",
        "identity": {"loyalty_id": "L-7"},
        "properties": props,
    }


def cart(event_type: str = "add_to_cart", quantity: int = 1, unit: int = 100) -> dict[str, Any]:
    return event(
        event_type, cart_id="c", sku="s", quantity=quantity, unit_price_minor=unit, currency="EUR"
    )


def order(event_type: str, lines: list[tuple[int, int]], currency: str = "EUR") -> dict[str, Any]:
    items = [
        {"sku": f"S{i}", "quantity": q, "unit_price_minor": u} for i, (q, u) in enumerate(lines)
    ]
    if event_type == "purchase":
        return event("purchase", order_id="o", total_minor=1, currency=currency, items=items)
    return event(
        "return", return_id="r", order_id="o", refund_minor=1, currency=currency, items=items
    )


def redemption(points: int) -> dict[str, Any]:
    return event("redemption", redemption_id="r", points=points)


def ingest(rules_text: str = "") -> Ingest:
    rules = parse_rules(rules_text) if rules_text else load_rules(None)
    return Ingest(rules.program, IdentityNormaliser(SECRET), DAY_MS)


def refused(ev: dict[str, Any], rules_text: str = "") -> str:
    # through the decoder first: every event here is valid against its v1 schema
    decoded = decode(orjson.dumps(ev), 65536)
    with pytest.raises(SchemaViolation) as error:
        ingest(rules_text).normalise(decoded, NOW, 0, 0)
    assert error.value.reason == "schema_violation"
    return error.value.message


def accepted(ev: dict[str, Any]) -> dict[str, Any]:
    return ingest().normalise(decode(orjson.dumps(ev), 65536), NOW, 0, 0)


@pytest.mark.parametrize("event_type", ["add_to_cart", "remove_from_cart"])
def test_a_cart_quantity_above_the_bound_is_refused_naming_it(event_type):
    message = refused(cart(event_type, quantity=99_999))

    assert message == f"properties.quantity must be at most {MAX_QUANTITY}, got 99999"
    assert accepted(cart(event_type, quantity=MAX_QUANTITY))["props"]["quantity"] == MAX_QUANTITY


@pytest.mark.parametrize("event_type", ["purchase", "return"])
def test_an_order_line_quantity_above_the_bound_is_refused_naming_the_line(event_type):
    lines = [(1, 100)] * 3 + [(99_999, 1)]

    message = refused(order(event_type, lines))

    assert message == f"properties.items[3].quantity must be at most {MAX_QUANTITY}, got 99999"
    accepted(order(event_type, [(MAX_QUANTITY, 100)]))


def test_a_cart_line_worth_more_than_the_money_bound_is_refused_naming_it():
    # each number within its own bound, their product 10**19: more than a signed 64-bit
    # integer holds, in a cart's value
    message = refused(cart(quantity=MAX_QUANTITY, unit=MAX_MONEY_MINOR))

    assert message.startswith(
        f"properties: quantity x unit_price_minor must be at most {MAX_LINE_MINOR}"
    )
    assert f"{MAX_QUANTITY} x {MAX_MONEY_MINOR}" in message
    accepted(cart(quantity=10, unit=MAX_LINE_MINOR // 10))


@pytest.mark.parametrize("event_type", ["purchase", "return"])
def test_an_order_line_worth_more_than_the_money_bound_is_refused_naming_it(event_type):
    message = refused(order(event_type, [(1, 100), (2, MAX_MONEY_MINOR)]))

    assert message.startswith("properties.items[1]: quantity x unit_price_minor must be at most")
    accepted(order(event_type, [(1, 100), (2, MAX_LINE_MINOR // 2)]))


def test_a_line_that_converts_above_the_money_bound_is_refused_in_program_money():
    # 5 x 2 * 10**14 GBP minor units is within the bound; at 1.17 EUR per GBP it is not
    text = "[program]\nexchange_rates_per_major = { GBP = 1.17 }\n"

    message = refused(order("purchase", [(5, 2 * 10**14)], currency="GBP"), text)

    assert message.startswith("properties.items[0]: quantity x unit_price_minor")
    assert "(EUR)" in message


def test_redeemed_points_above_the_bound_are_refused_naming_them():
    message = refused(redemption(MAX_POINTS + 1))

    assert message == f"properties.points must be at most {MAX_POINTS}, got {MAX_POINTS + 1}"
    assert accepted(redemption(MAX_POINTS))["props"]["points"] == MAX_POINTS


# --- the contract itself: everything bounded, every bound stated where producers read it -----

NUMERIC_BOUNDS = {"quantity": MAX_QUANTITY, "points": MAX_POINTS}


def schema(event_type: str) -> dict[str, Any]:
    text = resources.files("touchstream.schemas").joinpath(f"events/v1/{event_type}.json")
    return json.loads(text.read_text("utf-8"))


def fields(node: dict[str, Any], path: str = ""):
    """(path, name, subschema) of every declared field, nested ones included."""
    for name, sub in node.get("properties", {}).items():
        yield f"{path}{name}", name, sub
        if sub.get("type") == "object":
            yield from fields(sub, f"{path}{name}.")
        if sub.get("type") == "array":
            yield from fields(sub["items"], f"{path}{name}[].")


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_field_of_the_contract_is_bounded_and_its_bound_documented(event_type):
    for path, name, sub in fields(schema(event_type)):
        kind = sub.get("type")
        if kind == "string" and "enum" not in sub and "pattern" not in sub:
            assert "maxLength" in sub, path
        elif kind == "array":
            assert "maxItems" in sub, path
        elif kind == "integer" and "const" not in sub:
            if name.endswith("_minor"):
                assert "10^15" in sub["description"], path
            else:
                bound = NUMERIC_BOUNDS[name]  # a new integer field needs a bound here
                assert f"at most {bound}" in sub["description"], path
        elif kind == "object" and name not in ("identity", "properties", "purposes"):
            # free-form objects: bounded by the event's size and depth, and said so
            assert "64 KiB" in sub["description"], path


def test_the_readme_tables_every_bound_with_its_value():
    readme = resources.files("touchstream.schemas").joinpath("events/v1/README.md")
    text = readme.read_text("utf-8")

    for bound in (MAX_QUANTITY, MAX_POINTS, MAX_MONEY_MINOR, MAX_LINE_MINOR):
        assert f"{bound:,}" in text


# --- sums over many events: saturate at the money bound, so the state stays storable ---------


def test_a_cart_filled_past_64_bits_by_many_maximal_additions_stays_storable():
    # every addition within its bounds (10,000 x 10**11 = 10**15 minor units), 18,500 of them
    # add up past what a 64-bit integer holds: the cart's value, and so the open cart value
    # served on the profile, saturate at the money bound instead of making the state unstorable
    state = new_state("ts-bot", "loyalty_id", "L-bot", at=NOW)
    for i in range(18_500):
        props = {"cart_id": "c", "sku": f"s{i % 2}", "quantity": 10_000}
        carts.change(state, {"at": NOW + i, "props": {**props, "unit_price_minor": 10**11}}, 1)

    assert state_codec.decode(state_codec.encode(state)) == state
    assert project(state, load_rules(None))["open_cart_value_minor"] == MAX_MONEY_MINOR
