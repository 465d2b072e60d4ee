"""From a schema-valid inbound event to the internal event the per-customer stage applies."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from touchstream.config.rules import ProgramRules
from touchstream.domain.clock import parse_occurred_at
from touchstream.domain.identity import IdentityNormaliser, mint_customer_id
from touchstream.errors import UnsupportedCurrency

MONEY_FIELDS = (
    "total_minor",
    "discount_minor",
    "refund_minor",
    "value_minor",
    "unit_price_minor",
    "price_minor",
)


class Ingest:
    """Normalises identity, time and money; pure apart from the ``now_ms`` it is given."""

    def __init__(
        self, program: ProgramRules, normaliser: IdentityNormaliser, future_tolerance_ms: int
    ):
        self._program = program
        self._ids = normaliser
        self._future_ms = future_tolerance_ms

    def normalise(
        self, event: dict[str, Any], now_ms: int, partition: int, offset: int
    ) -> dict[str, Any]:
        ids = self._ids.normalise(event["identity"])
        props = self._money(event.get("properties") or {})
        return {
            "id": event["event_id"],
            "type": event["type"],
            "at": parse_occurred_at(event["occurred_at"], now_ms, self._future_ms),
            "ch": event["channel"],
            "src": event["source"],
            "ids": ids,
            "cid": mint_customer_id(ids),
            "props": props,
            # inbound partition/offset: the per-customer stage skips anything at or below
            # the highest offset it applied from that partition (redelivery, rewinds)
            "in": [partition, offset],
            "ts": now_ms,
        }

    def _money(self, props: dict[str, Any]) -> dict[str, Any]:
        currency = props.get("currency")
        if currency is None or currency == self._program.currency:
            return props
        rate = self._program.exchange_rates.get(currency)
        if rate is None:
            raise UnsupportedCurrency(
                f"properties.currency {currency!r} is not the program currency "
                f"{self._program.currency!r} and has no configured exchange rate"
            )
        exact = Decimal(str(rate))

        def convert(minor: int) -> int:
            # banker's rounding to the nearest minor unit: no systematic drift over many orders
            return int((exact * minor).to_integral_value(rounding=ROUND_HALF_EVEN))

        converted = dict(props, currency=self._program.currency, original_currency=currency)
        for name in MONEY_FIELDS:
            if name in converted:
                converted[name] = convert(converted[name])
        if "items" in converted:
            converted["items"] = [
                dict(item, unit_price_minor=convert(item["unit_price_minor"]))
                for item in converted["items"]
            ]
        return converted
