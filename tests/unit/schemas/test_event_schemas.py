"""The inbound event contract (touchstream/schemas/events/v1): every documented example is
accepted, and the mistakes producers make are rejected with a message naming the field."""

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest

import touchstream

SCHEMA_DIR = Path(touchstream.__file__).parent / "schemas" / "events" / "v1"
DRAFT_07 = "http://json-schema.org/draft-07/schema#"
EVENT_TYPES = (
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout_started",
    "purchase",
    "return",
    "redemption",
    "loyalty_signup",
    "identify",
    "email_open",
    "email_click",
    "social_engagement",
    "consent_updated",
    "erasure_requested",
    "access_requested",
)
DELETE = object()

ACCEPTED = [
    # id, event type, dotted path in the README example, new value (DELETE removes it)
    ("epoch-millis", "page_view", "occurred_at", 1795183407512),
    ("epoch-zero", "page_view", "occurred_at", 0),
    ("rfc3339-space", "page_view", "occurred_at", "2026-11-20 14:03:27Z"),
    ("neg-offset", "page_view", "occurred_at", "2026-11-20T13:03:27.5-01:00"),
    ("unknown-top-level-field", "page_view", "producer_trace", "abc"),
    ("unknown-property", "purchase", "properties.gift_wrap", True),
    ("purchase-no-items", "purchase", "properties.items", []),
    ("item-no-category", "purchase", "properties.items.0.category", DELETE),
    ("empty-referrer", "page_view", "properties.referrer", ""),
    ("identify-no-traits", "identify", "properties", {}),
    ("signup-only-id", "loyalty_signup", "identity", {"loyalty_id": "L-1"}),
    ("1-purpose", "consent_updated", "properties.purposes", {"profiling": False}),
    ("product-view-sku-only", "product_view", "properties", {"sku": "SKU-1"}),
]

REJECTED = [
    # id, event type, dotted path, new value, field the message must name
    ("negative-money", "purchase", "properties.total_minor", -1, "total_minor"),
    ("float-money", "purchase", "properties.total_minor", 12.5, "total_minor"),
    ("string-money", "purchase", "properties.total_minor", "1250", "total_minor"),
    ("bool-money", "purchase", "properties.total_minor", True, "total_minor"),
    ("neg-disc", "purchase", "properties.discount_minor", -100, "discount_minor"),
    (
        "negative-item-price",
        "purchase",
        "properties.items.0.unit_price_minor",
        -1,
        "unit_price_minor",
    ),
    ("float-unit-price", "add_to_cart", "properties.unit_price_minor", 89.99, "unit_price_minor"),
    ("negative-cart-value", "checkout_started", "properties.value_minor", -1, "value_minor"),
    ("float-refund", "return", "properties.refund_minor", 25.98, "refund_minor"),
    ("neg-price", "product_view", "properties.price_minor", -1, "price_minor"),
    ("lowercase-currency", "purchase", "properties.currency", "eur", "currency"),
    ("long-currency", "add_to_cart", "properties.currency", "EURO", "currency"),
    ("missing-currency", "purchase", "properties.currency", DELETE, "currency"),
    ("missing-event-id", "page_view", "event_id", DELETE, "event_id"),
    ("event-id-129-chars", "page_view", "event_id", "e" * 129, "event_id"),
    ("empty-event-id", "page_view", "event_id", "", "event_id"),
    ("unknown-channel", "page_view", "channel", "fax", "channel"),
    ("missing-source", "page_view", "source", DELETE, "source"),
    ("missing-properties", "page_view", "properties", DELETE, "properties"),
    ("empty-identity", "page_view", "identity", {}, "identity"),
    ("unknown-identifier", "page_view", "identity", {"cookie": "c1"}, "identity"),
    ("blank-id", "page_view", "identity.anonymous_id", "", "anonymous_id"),
    ("version-2", "page_view", "schema_version", 2, "schema_version"),
    ("version-as-string", "page_view", "schema_version", "1", "schema_version"),
    ("timestamp-without-offset", "page_view", "occurred_at", "2026-11-20T14:03:27", "occurred_at"),
    ("not-rfc3339", "page_view", "occurred_at", "20/11/2026 14:03", "occurred_at"),
    ("negative-epoch", "page_view", "occurred_at", -1, "occurred_at"),
    ("identify-one-identifier", "identify", "identity", {"email": "a@example.com"}, "identity"),
    ("signup-no-loyalty-id", "loyalty_signup", "identity", {"email": "a@ex.com"}, "loyalty_id"),
    ("item-quantity-0", "purchase", "properties.items.0.quantity", 0, "quantity"),
    ("missing-items", "purchase", "properties.items", DELETE, "items"),
    (
        "item-without-price",
        "purchase",
        "properties.items",
        [{"sku": "S", "quantity": 1}],
        "unit_price_minor",
    ),
    (
        "501-items",
        "purchase",
        "properties.items",
        [{"sku": "S", "quantity": 1, "unit_price_minor": 1}] * 501,
        "items",
    ),
    ("cart-quantity-0", "add_to_cart", "properties.quantity", 0, "quantity"),
    ("zero-points", "redemption", "properties.points", 0, "points"),
    ("float-points", "redemption", "properties.points", 10.5, "points"),
    (
        "purpose-not-boolean",
        "consent_updated",
        "properties.purposes.email_marketing",
        "yes",
        "email_marketing",
    ),
    ("no-purposes", "consent_updated", "properties.purposes", {}, "purposes"),
    ("unknown-purpose", "consent_updated", "properties.purposes.newsletter", True, "purposes"),
    ("query-too-long", "search", "properties.query", "q" * 513, "query"),
    ("url-too-long", "page_view", "properties.url", "u" * 2049, "url"),
    ("missing-campaign", "email_click", "properties.campaign_id", DELETE, "campaign_id"),
    ("missing-request-id", "erasure_requested", "properties.request_id", DELETE, "request_id"),
    ("missing-return-id", "return", "properties.return_id", DELETE, "return_id"),
]


@functools.cache
def schema_text(event_type: str) -> str:
    return (SCHEMA_DIR / f"{event_type}.json").read_text(encoding="utf-8")


@functools.cache
def validator(event_type: str):
    return fastjsonschema.compile(json.loads(schema_text(event_type)))


@functools.cache
def readme_examples() -> dict[str, dict[str, Any]]:
    readme = (SCHEMA_DIR / "README.md").read_text(encoding="utf-8")
    examples: dict[str, dict[str, Any]] = {}
    for block in re.findall(r"```json\n(.*?)\n```", readme, flags=re.DOTALL):
        event = json.loads(block)
        assert event["type"] not in examples, f"README has two examples of {event['type']}"
        examples[event["type"]] = event
    return examples


def example(event_type: str, path: str | None = None, value: Any = DELETE) -> dict[str, Any]:
    """A deep copy of the README example, with `path` (dotted; list indexes as digits) set
    to `value`, or removed when `value` is DELETE."""
    event = copy.deepcopy(readme_examples()[event_type])
    if path is None:
        return event
    *parents, leaf = path.split(".")
    target: Any = event
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is DELETE:
        del target[leaf]
    else:
        target[leaf] = value
    return event


def money_fields(node: Any, path: str = ""):
    """(path, definition) of every property named *_minor, at any depth."""
    if isinstance(node, dict):
        for key, child in node.items():
            if key.endswith("_minor"):
                yield f"{path}.{key}", child
            else:
                yield from money_fields(child, f"{path}.{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from money_fields(child, f"{path}[{index}]")


def test_schema_folder_holds_exactly_the_contract_types():
    assert sorted(p.stem for p in SCHEMA_DIR.glob("*.json")) == sorted(EVENT_TYPES)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_schema_is_self_contained_draft07(event_type):
    schema = json.loads(schema_text(event_type))

    assert schema["$schema"] == DRAFT_07
    assert schema["$id"] == f"urn:touchstream:events:v1:{event_type}"
    assert schema["title"] and schema["description"]
    assert schema["properties"]["type"]["const"] == event_type
    assert "$ref" not in schema_text(event_type)
    assert callable(validator(event_type))


def test_money_is_a_non_negative_integer_everywhere():
    fields = {
        f"{event_type}{path}": definition
        for event_type in EVENT_TYPES
        for path, definition in money_fields(json.loads(schema_text(event_type)))
    }

    assert {path.rsplit(".", 1)[1] for path in fields} == {
        "price_minor",
        "unit_price_minor",
        "value_minor",
        "total_minor",
        "discount_minor",
        "refund_minor",
    }
    for path, definition in fields.items():
        assert (definition["type"], definition["minimum"]) == ("integer", 0), path


def test_readme_has_exactly_one_example_per_type():
    assert sorted(readme_examples()) == sorted(EVENT_TYPES)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_readme_example_is_valid(event_type):
    event = example(event_type)

    assert validator(event_type)(event) == event


@pytest.mark.parametrize(
    ("event_type", "path", "value"), [pytest.param(*case, id=name) for name, *case in ACCEPTED]
)
def test_accepts(event_type, path, value):
    event = example(event_type, path, value)

    assert validator(event_type)(event) == event


@pytest.mark.parametrize(
    ("event_type", "path", "value", "field"),
    [pytest.param(*case, id=name) for name, *case in REJECTED],
)
def test_rejects_with_message_naming_the_field(event_type, path, value, field):
    event = example(event_type, path, value)

    with pytest.raises(fastjsonschema.JsonSchemaValueException) as rejected:
        validator(event_type)(event)

    assert field in rejected.value.message


def test_event_is_rejected_by_another_types_schema():
    with pytest.raises(fastjsonschema.JsonSchemaValueException) as rejected:
        validator("purchase")(example("page_view"))

    assert rejected.value.name == "data.type"
