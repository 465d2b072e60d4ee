"""Ingest: a schema-valid inbound event becomes the internal event the customer stage applies,
with identifiers hashed, time in epoch ms, and money in the program currency."""

import copy
from fractions import Fraction

import pytest

from touchstream.config.rules import load_rules, parse_rules
from touchstream.domain.identity import IdentityNormaliser, mint_customer_id
from touchstream.domain.ingest import Ingest
from touchstream.errors import UnsupportedCurrency

SECRET = "unit-test-hmac-secret-0123456789abcdef"
NOW = 1_795_183_500_000
AT = 1_795_179_807_512  # 2026-11-20T13:03:27.512Z
DAY_MS = 86_400_000


def purchase(currency="EUR", **props):
    return {
        "event_id": "store-042-000007",
        "type": "purchase",
        "schema_version": 1,
        "occurred_at": "2026-11-20T14:03:27.512+01:00",
        "channel": "pos",
        "source": "store-042",
        "identity": {"email": " Ann@Example.COM ", "phone": "+49 170 1234567", "loyalty_id": "L-7"},
        "properties": {
            "order_id": "POS-042-0193",
            "total_minor": 11597,
            "discount_minor": 1000,
            "currency": currency,
            "store_id": "store-042",
            "items": [
                {"sku": "SKU-10442", "quantity": 1, "unit_price_minor": 8999, "category": "shoes"},
                {"sku": "SKU-20017", "quantity": 2, "unit_price_minor": 1299},
            ],
            **props,
        },
    }


def make_ingest(rules_text: str = "") -> Ingest:
    rules = parse_rules(rules_text) if rules_text else load_rules(None)
    normaliser = IdentityNormaliser(SECRET, rules.identity.blocked_values)
    return Ingest(rules.program, normaliser, DAY_MS)


@pytest.fixture
def ingest() -> Ingest:
    return make_ingest()


def test_internal_event_fields(ingest):
    out = ingest.normalise(purchase(), NOW, partition=3, offset=41)
    ids = IdentityNormaliser(SECRET)

    assert out["id"] == "store-042-000007"
    assert out["type"] == "purchase"
    assert out["at"] == AT
    assert (out["ch"], out["src"]) == ("pos", "store-042")
    assert out["in"] == [3, 41]
    assert out["ts"] == NOW
    assert out["ids"] == {
        "loyalty_id": "L-7",
        "email": ids.normalise_value("email", "ann@example.com"),
        "phone": ids.normalise_value("phone", "0049 170 1234567"),
    }
    assert out["cid"] == mint_customer_id({"loyalty_id": "L-7"})
    assert out["props"] == purchase()["properties"]


def test_raw_email_and_phone_never_leave_ingest(ingest):
    out = ingest.normalise(purchase(), NOW, 0, 0)

    text = repr(out).lower()
    assert "ann@example.com" not in text
    assert "1701234567" not in text.replace(" ", "")


def test_crm_customer_id_becomes_the_key(ingest):
    event = purchase()
    event["identity"] = {"customer_id": "CRM-1", "email": "ann@example.com"}

    assert ingest.normalise(event, NOW, 0, 0)["cid"] == "CRM-1"


def test_epoch_millisecond_occurred_at(ingest):
    event = purchase()
    event["occurred_at"] = AT

    assert ingest.normalise(event, NOW, 0, 0)["at"] == AT


def test_input_event_is_not_modified(ingest):
    event = purchase()
    before = copy.deepcopy(event)

    ingest.normalise(event, NOW, 0, 0)

    assert event == before


def test_event_without_money_passes_properties_through(ingest):
    event = purchase()
    event.update(type="page_view", properties={"url": "https://shop.example.com/"})

    assert ingest.normalise(event, NOW, 0, 0)["props"] == {"url": "https://shop.example.com/"}


def test_foreign_currency_without_rate_is_unsupported_naming_it(ingest):
    with pytest.raises(UnsupportedCurrency) as error:
        ingest.normalise(purchase("USD"), NOW, 0, 0)

    assert error.value.reason == "unsupported_currency"
    assert "USD" in error.value.message
    assert "EUR" in error.value.message


def test_rate_for_another_currency_does_not_admit_this_one():
    ingest = make_ingest("[program]\nexchange_rates = { GBP = 1.15 }\n")

    with pytest.raises(UnsupportedCurrency) as error:
        ingest.normalise(purchase("USD"), NOW, 0, 0)

    assert "USD" in error.value.message


def test_foreign_money_is_converted_to_program_minor_units():
    ingest = make_ingest("[program]\nexchange_rates = { USD = 0.5 }\n")

    event = purchase("USD", total_minor=11598)
    event["properties"]["items"][0]["unit_price_minor"] = 8998
    event["properties"]["items"][1]["unit_price_minor"] = 1298

    props = ingest.normalise(event, NOW, 0, 0)["props"]

    assert props["currency"] == "EUR"
    assert props["original_currency"] == "USD"
    assert (props["total_minor"], props["discount_minor"]) == (5799, 500)
    assert [item["unit_price_minor"] for item in props["items"]] == [4499, 649]
    assert [item["quantity"] for item in props["items"]] == [1, 2]
    assert props["order_id"] == "POS-042-0193"
    for value in (
        props["total_minor"],
        props["discount_minor"],
        props["items"][0]["unit_price_minor"],
    ):
        assert type(value) is int


@pytest.mark.parametrize(
    ("event_type", "props", "field"),
    [
        (
            "add_to_cart",
            {"cart_id": "c", "sku": "s", "quantity": 1, "unit_price_minor": 2000},
            "unit_price_minor",
        ),
        ("checkout_started", {"cart_id": "c", "value_minor": 2000}, "value_minor"),
        ("return", {"return_id": "r", "order_id": "o", "refund_minor": 2000}, "refund_minor"),
        ("product_view", {"sku": "s", "price_minor": 2000}, "price_minor"),
    ],
)
def test_every_money_field_is_converted(event_type, props, field):
    ingest = make_ingest("[program]\nexchange_rates = { GBP = 1.25 }\n")
    event = purchase()
    event.update(type=event_type, properties={**props, "currency": "GBP"})

    out = ingest.normalise(event, NOW, 0, 0)["props"]

    assert out[field] == 2500
    assert out["currency"] == "EUR"


@pytest.mark.parametrize(
    ("rate", "foreign_minor", "program_minor"),
    [("0.57", 100, 57), ("0.29", 100, 29), ("1.15", 2000, 2300), ("0.92", 2500, 2300)],
)
def test_exact_conversions_are_not_lost_to_float_rounding(rate, foreign_minor, program_minor):
    # 1.00 USD at 0.57 is exactly 0.57 EUR; whatever the rounding rule, it is 57 cents, not 56
    ingest = make_ingest(f"[program]\nexchange_rates = {{ USD = {rate} }}\n")
    event = purchase("USD", total_minor=foreign_minor, discount_minor=0)
    event["properties"]["items"] = [{"sku": "S", "quantity": 1, "unit_price_minor": foreign_minor}]

    props = ingest.normalise(event, NOW, 0, 0)["props"]

    assert Fraction(rate) * foreign_minor == program_minor
    assert props["total_minor"] == program_minor
    assert props["items"][0]["unit_price_minor"] == program_minor


def test_program_currency_is_not_touched_even_with_rates_configured():
    ingest = make_ingest("[program]\nexchange_rates = { USD = 0.5 }\n")

    props = ingest.normalise(purchase("EUR"), NOW, 0, 0)["props"]

    assert props == purchase()["properties"]
    assert "original_currency" not in props
