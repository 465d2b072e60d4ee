"""The per-customer state table: bytes keys (customer id), values the domain state as
``tables.state_codec`` stores it (orjson, compressed)."""

from __future__ import annotations

from typing import Any

import faust
import orjson

from touchstream.tables import state_codec

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


def decode_state(raw: bytes | None) -> dict[str, Any] | None:
    """A state from the table (stored form) or from a cache (plain orjson): either reads."""
    return None if raw is None else state_codec.decode(raw)


class StateCache:
    """The states a batch of records reads and writes, written back to the table once per key.

    Kafka Streams' record cache: a customer touched by many records of one batch costs one
    changelog record, not one per record. The table (and its changelog) only ever holds states
    as of the end of a batch, whose input offsets are acknowledged after ``flush``; a crash
    before then replays the whole batch, and idempotent updates make that harmless. States are
    held as orjson bytes, so each read is a fresh copy the pure core may change at will, and
    compressed once, when the batch writes them.
    """

    def __init__(self, table: Any) -> None:
        self._table = table
        self._dirty: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> dict[str, Any] | None:
        raw = self._dirty[key] if key in self._dirty else self._table.get(key)
        return decode_state(raw)

    def put(self, key: bytes, state: dict[str, Any]) -> None:
        self._dirty[key] = orjson.dumps(state)

    def delete(self, key: bytes) -> None:
        self._dirty[key] = None

    def unwritten(self) -> dict[bytes, bytes | None]:
        """States changed since the last flush as orjson bytes (None: deleted)."""
        return self._dirty

    def flush(self) -> None:
        """Write what changed (inside the batch: the table needs its partition's event)."""
        table = self._table
        for key, raw in self._dirty.items():
            if raw is not None:
                table[key] = state_codec.pack(raw)
            elif key in table:
                del table[key]
        self._dirty.clear()
