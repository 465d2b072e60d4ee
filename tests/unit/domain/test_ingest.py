"""Ingest: a schema-valid inbound event becomes the internal event the customer stage applies,
with identifiers hashed, time in epoch ms, and money in the program currency."""

import copy
from fractions import Fraction

import orjson
import pytest

from touchstream.config.rules import load_rules, parse_rules
from touchstream.domain.identity import IdentityNormaliser, mint_customer_id
from touchstream.domain.ingest import (
    MAX_MONEY_MINOR,
    MONEY_BY_TYPE,
    MONEY_FIELDS,
    TYPES_WITH_LINES,
    Ingest,
)
from touchstream.errors import SchemaViolation, UnsupportedCurrency
from touchstream.schemas.decode import EVENT_TYPES, schema_text

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


# --- money only where the contract puts it, and never more than MAX_MONEY_MINOR -------------


def page_view(**props):
    event = purchase()
    event.update(type="page_view", properties={"url": "https://shop.example.com/", **props})
    return event


EXCHANGE = "[program]\nexchange_rates = { USD = 0.92, GBP = 1.17 }\n"


@pytest.mark.parametrize("rules", ["", EXCHANGE], ids=["default-rules", "exchange-table"])
@pytest.mark.parametrize(
    "extra",
    [
        {"currency": []},
        {"currency": {}},
        {"currency": ["EUR"]},
        {"currency": "JPY"},  # no rate for it: no matter, a page_view carries no money
        {"currency": "USD", "value_minor": "x"},
        {"currency": "USD", "total_minor": None},
        {"currency": "USD", "price_minor": 10**20},
        {"currency": "USD", "items": [1]},
        {"currency": "USD", "items": [{"sku": "SKU-1"}]},
        {"currency": "GBP", "items": [{"sku": "S", "quantity": 1, "unit_price_minor": 10**18}]},
    ],
)
def test_unknown_currency_and_money_keys_of_a_type_without_money_pass_through(rules, extra):
    # the contract accepts and ignores unknown property keys: a page_view has no money to convert
    event = page_view(**extra)

    props = make_ingest(rules).normalise(event, NOW, 0, 0)["props"]

    assert props == event["properties"]
    assert "original_currency" not in props


def test_unknown_money_keys_of_a_type_with_money_are_not_converted():
    event = purchase("USD", value_minor="x", price_minor=[1], items=[])

    props = make_ingest(EXCHANGE).normalise(event, NOW, 0, 0)["props"]

    assert (props["total_minor"], props["discount_minor"]) == (10669, 920)
    assert (props["value_minor"], props["price_minor"]) == ("x", [1])
    assert props["items"] == []


def test_money_by_type_is_the_money_of_the_schemas():
    for event_type in EVENT_TYPES:
        props = orjson.loads(schema_text(event_type))["properties"]["properties"]
        fields = props.get("properties", {})
        money = tuple(name for name in fields if name.endswith("_minor"))
        lines = fields.get("items", {}).get("items", {}).get("properties", {})

        assert money == MONEY_BY_TYPE.get(event_type, ()), event_type
        assert ("unit_price_minor" in lines) == (event_type in TYPES_WITH_LINES), event_type
        assert set(money) <= set(MONEY_FIELDS)


def test_max_money_minor_is_ten_to_the_fifteen():
    # far above any real amount, exact as a double, and ~9,000 of them still sum within int64
    assert MAX_MONEY_MINOR == 10**15 < 2**53
    assert 9_000 * MAX_MONEY_MINOR < 2**63


MONEY_EVENTS = [
    ("purchase", {"order_id": "o", "total_minor": 0, "items": []}, "total_minor"),
    ("purchase", {"order_id": "o", "total_minor": 0, "items": []}, "discount_minor"),
    ("return", {"return_id": "r", "order_id": "o", "refund_minor": 0}, "refund_minor"),
    ("checkout_started", {"cart_id": "c", "value_minor": 0}, "value_minor"),
    ("product_view", {"sku": "s"}, "price_minor"),
    (
        "add_to_cart",
        {"cart_id": "c", "sku": "s", "quantity": 1, "unit_price_minor": 0},
        "unit_price_minor",
    ),
    (
        "remove_from_cart",
        {"cart_id": "c", "sku": "s", "quantity": 1, "unit_price_minor": 0},
        "unit_price_minor",
    ),
]


def money_event(event_type, props, field, amount, currency="EUR"):
    event = purchase()
    event.update(type=event_type, properties={**props, field: amount, "currency": currency})
    return event


@pytest.mark.parametrize(("event_type", "props", "field"), MONEY_EVENTS)
def test_an_amount_above_the_maximum_is_a_schema_violation_naming_the_field(
    event_type, props, field
):
    event = money_event(event_type, props, field, MAX_MONEY_MINOR + 1)

    for rules in ("", EXCHANGE):
        with pytest.raises(SchemaViolation) as error:
            make_ingest(rules).normalise(event, NOW, 0, 0)

        assert error.value.reason == "schema_violation"
        assert f"properties.{field} " in error.value.message
        assert str(MAX_MONEY_MINOR) in error.value.message


@pytest.mark.parametrize(("event_type", "props", "field"), MONEY_EVENTS)
def test_an_amount_at_the_maximum_is_accepted_and_can_be_sent_on(event_type, props, field):
    out = make_ingest().normalise(money_event(event_type, props, field, MAX_MONEY_MINOR), NOW, 0, 0)

    assert out["props"][field] == MAX_MONEY_MINOR
    assert orjson.loads(orjson.dumps(out)) == out


def test_an_order_line_above_the_maximum_is_a_schema_violation_naming_the_line():
    event = purchase()
    event["properties"]["items"][1]["unit_price_minor"] = MAX_MONEY_MINOR + 1

    with pytest.raises(SchemaViolation) as error:
        make_ingest().normalise(event, NOW, 0, 0)

    assert error.value.reason == "schema_violation"
    assert "properties.items[1].unit_price_minor" in error.value.message


def test_an_amount_near_2_to_the_64_is_refused_not_converted():
    # 1.8e19 GBP at 1.17 would be more than 2**64: orjson could not send it on
    event = purchase("GBP", total_minor=18_000_000_000_000_000_000)

    with pytest.raises(SchemaViolation) as error:
        make_ingest(EXCHANGE).normalise(event, NOW, 0, 0)

    assert "properties.total_minor" in error.value.message


@pytest.mark.parametrize(("event_type", "props", "field"), MONEY_EVENTS)
def test_an_amount_that_converts_above_the_maximum_is_a_schema_violation_naming_it(
    event_type, props, field
):
    # 10**15 GBP minor units is within the maximum, but 1.17 * 10**15 EUR minor units is not
    event = money_event(event_type, props, field, MAX_MONEY_MINOR, currency="GBP")

    with pytest.raises(SchemaViolation) as error:
        make_ingest(EXCHANGE).normalise(event, NOW, 0, 0)

    assert error.value.reason == "schema_violation"
    message = error.value.message
    assert f"properties.{field} {MAX_MONEY_MINOR} GBP is {117 * 10**13} EUR" in message
    assert str(MAX_MONEY_MINOR) in message


def test_an_order_line_that_converts_above_the_maximum_names_the_line():
    event = purchase("GBP", total_minor=1000, discount_minor=0)
    event["properties"]["items"][1]["unit_price_minor"] = 900_000_000_000_000

    with pytest.raises(SchemaViolation) as error:
        make_ingest(EXCHANGE).normalise(event, NOW, 0, 0)

    assert "properties.items[1].unit_price_minor 900000000000000 GBP" in error.value.message


def test_the_largest_amount_that_converts_within_the_maximum_is_accepted():
    # at 1.17, 854700854700854 GBP minor units is 999999999999999.18 EUR: rounds to 10**15 - 1
    event = purchase("GBP", total_minor=854_700_854_700_854, discount_minor=0, items=[])

    props = make_ingest(EXCHANGE).normalise(event, NOW, 0, 0)["props"]

    assert props["total_minor"] == MAX_MONEY_MINOR - 1
    assert orjson.dumps(props)


# --- money across currencies of different ISO 4217 exponents ---------------------------------

PER_MAJOR = "[program]\nexchange_rates_per_major = { JPY = 0.0061, KWD = 2.98, USD = 0.92 }\n"


@pytest.mark.parametrize(
    ("currency", "foreign_minor", "program_minor"),
    [
        # 10,000 JPY (no minor unit: 10000 minor units) at 0.0061 EUR per yen is 61.00 EUR
        ("JPY", 10_000, 6_100),
        # 1.500 KWD (1500 fils) at 2.98 EUR per dinar is 4.47 EUR
        ("KWD", 1_500, 447),
        # 25.00 USD at 0.92 is 23.00 EUR: same exponent, the rate applies as before
        ("USD", 2_500, 2_300),
    ],
)
def test_a_rate_per_major_unit_converts_by_each_currencys_exponent(
    currency, foreign_minor, program_minor
):
    ingest = make_ingest(PER_MAJOR)
    event = purchase(currency, total_minor=foreign_minor, discount_minor=0)
    event["properties"]["items"] = [{"sku": "S", "quantity": 1, "unit_price_minor": foreign_minor}]

    props = ingest.normalise(event, NOW, 0, 0)["props"]

    assert (props["currency"], props["original_currency"]) == ("EUR", currency)
    assert props["total_minor"] == program_minor
    assert props["items"][0]["unit_price_minor"] == program_minor


def test_a_program_in_yen_converts_euro_cents_to_whole_yen():
    # the program currency itself without a minor unit: 12.50 EUR at 163.9 JPY per euro
    # is 2048.75 yen, banker's-rounded to 2049 yen
    ingest = make_ingest(
        '[program]\ncurrency = "JPY"\ncurrency_decimals = 0\n'
        "exchange_rates_per_major = { EUR = 163.9 }\n"
    )

    props = ingest.normalise(purchase("EUR", total_minor=1250, discount_minor=0), NOW, 0, 0)

    assert props["props"]["total_minor"] == 2049
    assert props["props"]["currency"] == "JPY"


def test_a_program_in_dinars_converts_euro_cents_to_fils():
    # 12.34 EUR at 0.3355 KWD per euro is 4.140070 KWD: 4140 fils
    ingest = make_ingest(
        '[program]\ncurrency = "KWD"\ncurrency_decimals = 3\n'
        "exchange_rates_per_major = { EUR = 0.3355, JPY = 0.00205 }\n"
    )

    eur = ingest.normalise(purchase("EUR", total_minor=1234, discount_minor=0), NOW, 0, 0)
    # 10,000 JPY at 0.00205 KWD per yen is 20.500 KWD
    jpy = ingest.normalise(purchase("JPY", total_minor=10_000, discount_minor=0), NOW, 0, 0)

    assert eur["props"]["total_minor"] == 4_140
    assert jpy["props"]["total_minor"] == 20_500
