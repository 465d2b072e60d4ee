"""The per-customer state table: bytes keys (customer id), orjson values (domain state)."""

from __future__ import annotations

from typing import Any

import faust
import orjson

CUSTOMERS_TABLE = "customers"


def customers_table(app: faust.App, partitions: int) -> Any:
    return app.Table(
        CUSTOMERS_TABLE,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=partitions,
        help="Per-customer state (domain.customer), one record per customer id",
    )


def encode_state(state: dict[str, Any]) -> bytes:
    return orjson.dumps(state)


def decode_state(raw: bytes | None) -> dict[str, Any] | None:
    return None if raw is None else orjson.loads(raw)
