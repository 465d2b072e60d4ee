"""From a schema-valid inbound event to the internal event the per-customer stage applies."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, localcontext
from typing import Any, NoReturn

from touchstream.config.rules import ProgramRules
from touchstream.domain import bounds
from touchstream.domain.bounds import MAX_MONEY_MINOR, TYPES_WITH_LINES
from touchstream.domain.clock import parse_occurred_at
from touchstream.domain.identity import IdentityNormaliser, mint_customer_id
from touchstream.errors import SchemaViolation, UnsupportedCurrency

# every money field name of the contract
MONEY_FIELDS = (
    "total_minor",
    "discount_minor",
    "refund_minor",
    "value_minor",
    "unit_price_minor",
    "price_minor",
)
# The money each type carries by contract (schemas/events/v1): its top-level money fields, and
# for the types in TYPES_WITH_LINES the unit_price_minor of every ``items`` line. Only these are
# bounded and converted; the schema has checked their types. Any other key of ``properties``
# (a "currency" on a page_view, a "value_minor" on a purchase) is unknown: accepted, ignored and
# passed through untouched, whatever its type, and a type without money has no currency to refuse.
MONEY_BY_TYPE: dict[str, tuple[str, ...]] = {
    "product_view": ("price_minor",),
    "add_to_cart": ("unit_price_minor",),
    "remove_from_cart": ("unit_price_minor",),
    "checkout_started": ("value_minor",),
    "purchase": ("total_minor", "discount_minor"),
    "return": ("refund_minor",),
}
# Money amounts are bounded by MAX_MONEY_MINOR (domain/bounds.py says why and why there, not as
# a "maximum" in the v1 schemas), as sent and after conversion; a refused amount is a
# ``schema_violation`` naming the field.
# enough digits for any amount up to 2**64 times any factor a float rate and an exponent
# difference of up to 4 give, so converting never rounds before the final rounding
EXACT = Context(prec=80)


class Ingest:
    """Normalises identity, time and money; pure apart from the ``now_ms`` it is given."""

    def __init__(
        self, program: ProgramRules, normaliser: IdentityNormaliser, future_tolerance_ms: int
    ):
        self._program = program
        # exact factors from each foreign currency's minor units to the program's
        self._rates = program.minor_rates()
        self._ids = normaliser
        self._future_ms = future_tolerance_ms

    def normalise(
        self,
        event: dict[str, Any],
        now_ms: int,
        partition: int,
        offset: int,
        topic: str | None = None,
    ) -> dict[str, Any]:
        """``topic`` is the inbound topic's identity (``streams.topic_identity``), carried
        with the partition and offset so offsets of different topics are never compared."""
        ids = self._ids.normalise(event["identity"])
        props = self._money(event["type"], event.get("properties") or {})
        # after conversion: a line's value is bounded in the program currency
        bounds.check(event["type"], props)
        return {
            "id": event["event_id"],
            "type": event["type"],
            "at": parse_occurred_at(event["occurred_at"], now_ms, self._future_ms),
            "ch": event["channel"],
            "src": event["source"],
            "ids": ids,
            "cid": mint_customer_id(ids),
            "props": props,
            # inbound partition/offset/topic identity: the per-customer stage skips anything
            # at or below the highest offset it applied from that partition of that topic
            # (redelivery, rewinds); a re-created or second input topic has its own offsets
            "in": [partition, offset] if topic is None else [partition, offset, topic],
            "ts": now_ms,
        }

    def _money(self, event_type: str, props: dict[str, Any]) -> dict[str, Any]:
        names = MONEY_BY_TYPE.get(event_type)
        if names is None:
            return props
        lines = props.get("items", []) if event_type in TYPES_WITH_LINES else []
        # every amount as sent, in field order (a field's name is written only for the refusal)
        for name in names:
            if name in props and props[name] > MAX_MONEY_MINOR:
                _over_money(f"properties.{name}", props[name])
        for i, line in enumerate(lines):
            if line["unit_price_minor"] > MAX_MONEY_MINOR:
                _over_money(f"properties.items[{i}].unit_price_minor", line["unit_price_minor"])
        currency = props.get("currency")
        if currency is None or currency == self._program.currency:
            return props
        factor = self._rates.get(currency)
        if factor is None:
            raise UnsupportedCurrency(
                f"properties.currency {currency!r} is not the program currency "
                f"{self._program.currency!r} and has no configured exchange rate"
            )

        def convert(field: str, minor: int) -> int:
            # exact (the context holds every digit of factor x amount), then banker's rounding
            # to the nearest minor unit: no systematic drift over many orders
            with localcontext(EXACT):
                value = int((factor * minor).to_integral_value(rounding=ROUND_HALF_EVEN))
            if value > MAX_MONEY_MINOR:
                raise SchemaViolation(
                    f"{field} {minor} {currency} is {value} {self._program.currency} minor units "
                    f"at the configured exchange rate, "
                    f"more than the maximum {MAX_MONEY_MINOR}"
                )
            return value

        converted = dict(props, currency=self._program.currency, original_currency=currency)
        for name in names:
            if name in converted:
                converted[name] = convert(f"properties.{name}", converted[name])
        if lines:
            converted["items"] = [
                dict(
                    line,
                    unit_price_minor=convert(
                        f"properties.items[{i}].unit_price_minor", line["unit_price_minor"]
                    ),
                )
                for i, line in enumerate(lines)
            ]
        return converted


def _over_money(field: str, minor: int) -> NoReturn:
    raise SchemaViolation(f"{field} must be at most {MAX_MONEY_MINOR} minor units, got {minor}")
