"""The bounds of every number the inbound contract (schemas/events/v1) carries, checked on ingest.

The v1 schemas bound every string (``maxLength``) and every array (``maxItems``) themselves;
the numbers below are checked here instead of as a JSON Schema ``maximum``, for two reasons:
the v1 contract only changes additively (a new ``maximum`` would make events that v1 accepts
invalid against v1's own files), and money needs the same check after conversion to the program
currency, which only ingest knows. The schema descriptions and the contract's README state each
bound, so producers see it where they read the contract. Every bound is far beyond any real
retail event: only a broken or hostile producer meets one. Without them a schema-valid number
could make the state or an output unencodable (orjson, Redis and the state codec hold integers
up to 2**64) and so stop the pipeline; with them the worst sums the state keeps stay below
2**63. An event out of bounds is a ``schema_violation`` naming the field.
"""

from __future__ import annotations

from typing import Any

from touchstream.errors import SchemaViolation

# The largest money amount, in minor units, as sent and after conversion to the program currency.
# 10**15 is 10 trillion in a 2-decimal currency (about 6 trillion EUR in yen): no real amount comes
# near it. Without a bound an amount near 2**64 converted at a rate above 1, or two such amounts
# summed into a customer's spend, exceed the 64-bit integers orjson, Redis and the state can hold.
# Below 2**53 every amount is also exact for a consumer that reads JSON numbers as doubles, and
# sums of up to about 9,000 maximal amounts still fit a signed 64-bit integer.
MAX_MONEY_MINOR = 10**15
# The largest ``quantity`` of a cart change or an order or return line.
MAX_QUANTITY = 10_000
# The largest value of one line, ``quantity * unit_price_minor``: a cart's value and an order's
# gross are sums of lines, so each line obeys the money bound too.
MAX_LINE_MINOR = MAX_MONEY_MINOR
# The most points one redemption spends.
MAX_POINTS = 10**12

CART_TYPES = frozenset({"add_to_cart", "remove_from_cart"})
TYPES_WITH_LINES = frozenset({"purchase", "return"})


def _at_most(field: str, value: int, bound: int, unit: str = "") -> None:
    if value > bound:
        raise SchemaViolation(f"{field} must be at most {bound}{unit}, got {value}")


def check_line(field: str, line: dict[str, Any], currency: str) -> None:
    """``field`` is ``properties`` or ``properties.items[i]``: a quantity and a unit price."""
    quantity = line["quantity"]
    if quantity > MAX_QUANTITY:  # (the message built only on the way out: once per line)
        _at_most(f"{field}.quantity", quantity, MAX_QUANTITY)
    value = quantity * line["unit_price_minor"]
    if value > MAX_LINE_MINOR:
        raise SchemaViolation(
            f"{field}: quantity x unit_price_minor must be at most {MAX_LINE_MINOR} minor units "
            f"({currency}), got {line['quantity']} x {line['unit_price_minor']} = {value}"
        )


def check(event_type: str, props: dict[str, Any]) -> None:
    """Refuse a schema-valid event's ``properties`` that exceed a bound, naming the field. The
    money amounts themselves are bounded where ingest converts them (``domain.ingest``)."""
    if event_type in CART_TYPES:
        check_line("properties", props, str(props.get("currency", "")))
    elif event_type in TYPES_WITH_LINES:
        currency = str(props.get("currency", ""))
        for i, line in enumerate(props.get("items", ())):
            if (
                line["quantity"] > MAX_QUANTITY
                or line["quantity"] * line["unit_price_minor"] > MAX_LINE_MINOR
            ):
                check_line(f"properties.items[{i}]", line, currency)
    elif event_type == "redemption":
        _at_most("properties.points", props["points"], MAX_POINTS)
