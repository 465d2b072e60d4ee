"""Decoding inbound records: every bad record is refused with its DLQ reason and a message
naming the problem, and the DLQ record keeps the exact original bytes for replay."""

import base64
import copy
import hashlib
from typing import Any

import orjson
import pytest

from touchstream.errors import PoisonEvent
from touchstream.schemas.decode import EVENT_TYPES, MAX_DEPTH, decode, load_validators
from touchstream.schemas.dlq import dlq_record, original_bytes

MAX = 65_536

PURCHASE: dict[str, Any] = {
    "event_id": "store-042-000007",
    "type": "purchase",
    "schema_version": 1,
    "occurred_at": 1795183407512,
    "channel": "pos",
    "source": "store-042",
    "identity": {"loyalty_id": "L-0042-118877"},
    "properties": {
        "order_id": "POS-042-20261120-0193",
        "total_minor": 11597,
        "currency": "EUR",
        "discount_minor": 1000,
        "store_id": "store-042",
        "items": [
            {"sku": "SKU-10442", "quantity": 1, "unit_price_minor": 8999, "category": "shoes"},
            {"sku": "SKU-20017", "quantity": 2, "unit_price_minor": 1299, "category": "socks"},
        ],
    },
}


def raw(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


def purchase_with(path: str, value: Any) -> dict[str, Any]:
    event = copy.deepcopy(PURCHASE)
    *parents, leaf = path.split(".")
    target: Any = event
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    target[leaf] = value
    return event


def refused(record: bytes | None, max_bytes: int = MAX) -> PoisonEvent:
    with pytest.raises(PoisonEvent) as error:
        decode(record, max_bytes)
    return error.value


def test_valid_purchase_decodes_to_the_same_event():
    assert decode(raw(PURCHASE), MAX) == PURCHASE


def test_every_contract_schema_compiles():
    load_validators()


@pytest.mark.parametrize("record", [b"{", b'{"type": "purchase",}', b"not json", b"[" * 5000])
def test_invalid_json(record):
    error = refused(record)

    assert error.reason == "invalid_json"
    assert "JSON" in error.message


def test_deeply_nested_object_inside_an_event_is_invalid_json():
    nested = b'{"type": "page_view", "properties": ' + b'{"a": ' * 2000 + b"1" + b"}" * 2001

    assert refused(nested).reason == "invalid_json"


PAGE_VIEW: dict[str, Any] = {
    **{k: v for k, v in PURCHASE.items() if k not in ("type", "properties")},
    "type": "page_view",
    "properties": {"url": "https://shop.example.com/"},
}


def page_view_with(**extra: Any) -> dict[str, Any]:
    event = copy.deepcopy(PAGE_VIEW)
    event["properties"].update(extra)
    return event


def nested(levels: int) -> bytes:
    """A page_view whose unknown properties.x holds ``levels`` nested arrays: the event is
    level 1, properties level 2, so the innermost array is level ``levels + 2``."""
    return raw(page_view_with(x="@deep@")).replace(
        b'"@deep@"', b"[" * levels + b"1" + b"]" * levels
    )


def test_an_event_nested_exactly_max_depth_deep_is_accepted():
    assert MAX_DEPTH == 64
    event = decode(nested(MAX_DEPTH - 2), MAX)

    assert event["properties"]["x"] == orjson.loads(b"[" * 62 + b"1" + b"]" * 62)
    assert orjson.loads(orjson.dumps(event)) == event


@pytest.mark.parametrize("levels", [MAX_DEPTH - 1, 253, 1_000])
def test_an_event_nested_deeper_than_max_depth_is_invalid_json_naming_the_limit(levels):
    # orjson reads 1,024 levels but writes only 255: an event it cannot send on is refused here
    error = refused(nested(levels))

    assert error.reason == "invalid_json"
    assert "JSON" in error.message
    assert f"deeper than {MAX_DEPTH} levels" in error.message


@pytest.mark.parametrize(
    "record",
    [
        b"[" * 65 + b"]" * 65,
        b'{"a":' * 65 + b"1" + b"}" * 65,
        raw(page_view_with(x={"a": [{"b": [[]]}]})).replace(b"[[]]", b"[" * 70 + b"]" * 70),
    ],
)
def test_too_deep_objects_and_arrays_anywhere_are_invalid_json(record):
    assert refused(record).reason == "invalid_json"


@pytest.mark.parametrize(
    "extra",
    [
        {"x": [[] for _ in range(200)]},  # many brackets, shallow
        {"x": "[" * 200 + "{" * 200},  # brackets inside a string are not nesting
        {"x": [{"a": [1]}] * 100},
    ],
)
def test_many_brackets_that_do_not_nest_deep_are_accepted(extra):
    event = page_view_with(**extra)

    assert decode(raw(event), MAX) == event


@pytest.mark.parametrize("items", [1, True, 2.5, "x", None, {"a": 1}])
@pytest.mark.parametrize("event_type", ["page_view", "checkout_started", "redemption"])
def test_an_unknown_items_key_of_any_type_is_accepted_and_kept(event_type, items):
    # only purchase and return define items; elsewhere it is an unknown key: accepted, ignored
    event = copy.deepcopy(PAGE_VIEW)
    event["type"] = event_type
    event["properties"] = {
        "page_view": {"url": "https://shop.example.com/"},
        "checkout_started": {"cart_id": "C-1", "value_minor": 1798, "currency": "EUR"},
        "redemption": {"redemption_id": "RD-1", "points": 500},
    }[event_type]
    event["properties"]["items"] = items

    assert decode(raw(event), MAX) == event


@pytest.mark.parametrize("items", [1, True, "x", {"unit_price_minor": 1.5}])
def test_a_purchase_whose_items_is_not_a_list_is_a_schema_violation_naming_items(items):
    error = refused(raw(purchase_with("properties.items", items)))

    assert error.reason == "schema_violation"
    assert "properties.items" in error.message


@pytest.mark.parametrize("record", [None, b""])
def test_empty_record_is_invalid_json(record):
    assert refused(record).reason == "invalid_json"


@pytest.mark.parametrize(
    "record",
    [b"\xff\xfe", b'{"event_id": "caf\xe9"}', raw(PURCHASE).replace(b"store-042", b"st\xc3\x28re")],
)
def test_invalid_utf8(record):
    error = refused(record)

    assert error.reason == "invalid_utf8"
    assert "UTF-8" in error.message


def test_too_large():
    padded = raw(PURCHASE)[:-1] + b"," + b'"pad": "' + b"x" * MAX + b'"}'

    error = refused(padded)

    assert error.reason == "too_large"
    assert str(len(padded)) in error.message
    assert str(MAX) in error.message


def test_exactly_max_bytes_is_accepted():
    body = raw(PURCHASE)
    padded = body + b" " * (2048 - len(body))

    assert decode(padded, 2048) == PURCHASE
    assert refused(padded + b" ", 2048).reason == "too_large"


def test_size_limit_is_checked_before_parsing():
    assert refused(b"{" * 3000, 2048).reason == "too_large"


@pytest.mark.parametrize("event_type", ["pageview", "Purchase", "refund", ""])
def test_unknown_type(event_type):
    error = refused(raw(purchase_with("type", event_type)))

    assert error.reason == "unknown_type"
    assert repr(event_type) in error.message


@pytest.mark.parametrize("version", [2, 0, 99])
def test_unsupported_version(version):
    error = refused(raw(purchase_with("schema_version", version)))

    assert error.reason == "unsupported_version"
    assert str(version) in error.message


@pytest.mark.parametrize("version", ["1", 1.5, True, None])
def test_schema_version_that_is_not_an_integer_is_a_schema_violation(version):
    error = refused(raw(purchase_with("schema_version", version)))

    assert error.reason == "schema_violation"
    assert "schema_version" in error.message


@pytest.mark.parametrize("record", [b"[]", b'"purchase"', b"42", b"null"])
def test_json_that_is_not_an_object_is_a_schema_violation(record):
    assert refused(record).reason == "schema_violation"


def test_missing_type_is_a_schema_violation_naming_type():
    event = copy.deepcopy(PURCHASE)
    del event["type"]

    error = refused(raw(event))

    assert error.reason == "schema_violation"
    assert "type" in error.message


def test_missing_event_id_names_it():
    event = copy.deepcopy(PURCHASE)
    del event["event_id"]

    error = refused(raw(event))

    assert error.reason == "schema_violation"
    assert "event_id" in error.message


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("properties.total_minor", -1, "properties.total_minor"),
        ("properties.discount_minor", -100, "properties.discount_minor"),
        ("properties.items.0.unit_price_minor", -1, "unit_price_minor"),
        ("properties.total_minor", 12.5, "properties.total_minor"),
        ("properties.total_minor", 12.0, "properties.total_minor"),
        ("properties.discount_minor", 0.0, "properties.discount_minor"),
        ("properties.items.1.unit_price_minor", 12.0, "properties.items[1].unit_price_minor"),
        ("properties.items.0.unit_price_minor", 12.5, "unit_price_minor"),
    ],
)
def test_bad_money_is_a_schema_violation_naming_the_field(path, value, field):
    error = refused(raw(purchase_with(path, value)))

    assert error.reason == "schema_violation"
    assert field in error.message


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (
            {
                "type": "add_to_cart",
                "properties": {
                    "cart_id": "c",
                    "sku": "s",
                    "quantity": 1,
                    "unit_price_minor": 899.0,
                    "currency": "EUR",
                },
            },
            "properties.unit_price_minor",
        ),
        (
            {
                "type": "return",
                "properties": {
                    "return_id": "r",
                    "order_id": "o",
                    "refund_minor": 2598.0,
                    "currency": "EUR",
                },
            },
            "properties.refund_minor",
        ),
        (
            {
                "type": "checkout_started",
                "properties": {"cart_id": "c", "value_minor": 100.0, "currency": "EUR"},
            },
            "properties.value_minor",
        ),
    ],
)
def test_whole_number_floats_are_refused_for_every_money_field(event, field):
    envelope = {k: v for k, v in PURCHASE.items() if k not in ("type", "properties")}

    error = refused(raw({**envelope, **event}))

    assert error.reason == "schema_violation"
    assert field in error.message


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (
            {"type": "redemption", "properties": {"redemption_id": "R-1", "points": 500.0}},
            "properties.points",
        ),
        (
            {
                "type": "add_to_cart",
                "properties": {
                    "cart_id": "c",
                    "sku": "s",
                    "quantity": 2.0,
                    "unit_price_minor": 899,
                    "currency": "EUR",
                },
            },
            "properties.quantity",
        ),
        (
            purchase_with("properties.items.0.quantity", 1.0),
            "properties.items[0].quantity",
        ),
    ],
)
def test_whole_number_floats_are_refused_for_integer_counts(event, field):
    # the contract says integer: a 500.0 redemption would make the points balance a float
    # and a quantity of 2.0 would make cart values float money
    envelope = {k: v for k, v in PURCHASE.items() if k not in ("type", "properties")}

    error = refused(raw({**envelope, **event}))

    assert error.reason == "schema_violation"
    assert field in error.message


def test_schema_violation_message_names_the_field_without_internal_prefix():
    error = refused(raw(purchase_with("channel", "fax")))

    assert error.reason == "schema_violation"
    assert error.message.startswith("channel")


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_known_types_are_never_unknown(event_type):
    event = purchase_with("type", event_type)

    try:
        decode(raw(event), MAX)
    except PoisonEvent as error:
        assert error.reason == "schema_violation"


# --- the DLQ record -------------------------------------------------------------------------


def dlq(key: bytes | None, value: bytes | None, **kw: Any) -> dict[str, Any]:
    fields = {
        "reason": "invalid_utf8",
        "message": "the record is not UTF-8 (byte 0)",
        "topic": "touchpoints",
        "partition": 3,
        "offset": 1234,
        "timestamp_ms": 1795183407512,
        "key": key,
        "value": value,
        **kw,
    }
    return orjson.loads(dlq_record(**fields))


def test_dlq_record_fields():
    record = dlq(b"L-0042", b"\xff\xfe")

    assert record == {
        "reason": "invalid_utf8",
        "message": "the record is not UTF-8 (byte 0)",
        "topic": "touchpoints",
        "partition": 3,
        "offset": 1234,
        "timestamp": 1795183407512,
        "key_b64": base64.b64encode(b"L-0042").decode(),
        "key_size": 6,
        "key_sha256": hashlib.sha256(b"L-0042").hexdigest(),
        "value_b64": base64.b64encode(b"\xff\xfe").decode(),
        "value_size": 2,
        "value_sha256": hashlib.sha256(b"\xff\xfe").hexdigest(),
    }


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"L-0042", raw(PURCHASE)),
        (None, b"\xff\xfe\x00\x80 not utf-8"),
        (b"\xc3\x28", b"{"),
        (b"", b"\x00" * 10),
        (None, None),
    ],
)
def test_original_bytes_round_trip_exactly(key, value):
    assert original_bytes(dlq(key, value)) == (key, value)


def test_null_key_stays_null_not_empty():
    record = dlq(None, b"{")

    assert record["key_b64"] is None
    assert original_bytes(record)[0] is None


def test_record_without_timestamp():
    assert dlq(b"k", b"v", timestamp_ms=None)["timestamp"] is None


def test_decode_failure_feeds_a_replayable_dlq_record():
    value = b'{"type": "purchase", "schema_version": 1, "event_id": "\xff"}'
    error = refused(value)

    record = orjson.loads(
        dlq_record(error.reason, error.message, "touchpoints", 0, 7, None, b"k", value)
    )

    assert record["reason"] == "invalid_utf8"
    assert original_bytes(record) == (b"k", value)
