"""The dead-letter record: why a record was refused, with its original bytes, bounded.

A dead-letter record must itself fit the broker's limit (``message.max.bytes``, 1 MiB by
default), whatever it describes: the largest record the broker accepts on ``touchpoints`` would
not fit again once base64-encoded. So an original key or value of at most ``KEPT_WHOLE_BYTES``
is kept whole (``key_b64``/``value_b64``: ``dlq replay`` re-submits it byte for byte); a larger
one keeps only its first ``PREFIX_BYTES`` (``value_prefix_b64``, ``value_truncated: true``,
``value_b64`` null) and can be told apart and verified by its size and SHA-256, which every
record carries. With the default event limit (64 KiB) every record the ingest agent could
accept is kept whole.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson

KEPT_WHOLE_BYTES = 64 * 1024
PREFIX_BYTES = 4 * 1024
# what a dead-letter record adds to the two kept originals (fields, names, message): the
# record stays under 2 * 4/3 * KEPT_WHOLE_BYTES + this, far below any broker limit
MESSAGE_MAX_CHARS = 2000


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def describe_bytes(name: str, data: bytes | None) -> dict[str, Any]:
    """``{name}_b64`` when small enough to keep, else a prefix; always size and digest."""
    if data is None:
        return {f"{name}_b64": None, f"{name}_size": None}
    out: dict[str, Any] = {
        f"{name}_size": len(data),
        f"{name}_sha256": hashlib.sha256(data).hexdigest(),
    }
    if len(data) <= KEPT_WHOLE_BYTES:
        out[f"{name}_b64"] = _b64(data)
    else:
        out[f"{name}_b64"] = None
        out[f"{name}_prefix_b64"] = _b64(data[:PREFIX_BYTES])
        out[f"{name}_truncated"] = True
    return out


def dlq_record(
    reason: str,
    message: str,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    key: bytes | None,
    value: bytes | None,
    **extra: Any,
) -> bytes:
    record: dict[str, Any] = {
        "reason": reason,
        "message": message[:MESSAGE_MAX_CHARS],
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp_ms,
        **describe_bytes("key", key),
        **describe_bytes("value", value),
        **extra,
    }
    return orjson.dumps(record)


def message_record(reason: str, text: str, topic: str, message: Any, **extra: Any) -> bytes:
    """The record of a consumed ``message`` (an aiokafka/Faust record) read from ``topic``."""
    timestamp = int(message.timestamp * 1000) if message.timestamp else None
    return dlq_record(
        reason,
        text,
        topic,
        message.partition,
        message.offset,
        timestamp,
        message.key,
        message.value,
        **extra,
    )


def is_whole(record: dict[str, Any]) -> bool:
    """Whether the record holds its original key and value whole (so it can be replayed)."""
    return not (record.get("key_truncated") or record.get("value_truncated"))


def replayable(record: dict[str, Any]) -> bool:
    """An inbound record kept whole: ``dlq replay`` can send it to touchpoints again. Output
    the broker refused (``output_topic`` set) was never inbound and is not replayed, nor is a
    quarantined timer firing (``replayable`` false: it has no record of its own)."""
    return is_whole(record) and "output_topic" not in record and record.get("replayable", True)


def original_bytes(record: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    """Key and value of a DLQ record, as they were first produced (for ``dlq replay``).

    Only for records that hold them whole (``is_whole``); a truncated one raises ValueError.
    """
    if not is_whole(record):
        raise ValueError("the dead-letter record keeps only a prefix of the original")
    key = record.get("key_b64")
    value = record.get("value_b64")
    return (
        base64.b64decode(key) if key is not None else None,
        base64.b64decode(value) if value is not None else None,
    )
