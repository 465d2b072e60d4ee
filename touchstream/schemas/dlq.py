"""The dead-letter record: why an inbound record was refused, with its original bytes."""

from __future__ import annotations

import base64
from typing import Any

import orjson


def dlq_record(
    reason: str,
    message: str,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    key: bytes | None,
    value: bytes | None,
) -> bytes:
    record: dict[str, Any] = {
        "reason": reason,
        "message": message,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp_ms,
        "key_b64": base64.b64encode(key).decode() if key is not None else None,
        "value_b64": base64.b64encode(value).decode() if value is not None else None,
    }
    return orjson.dumps(record)


def original_bytes(record: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    """Key and value of a DLQ record, as they were first produced (for ``dlq replay``)."""
    key = record.get("key_b64")
    value = record.get("value_b64")
    return (
        base64.b64decode(key) if key is not None else None,
        base64.b64decode(value) if value is not None else None,
    )
