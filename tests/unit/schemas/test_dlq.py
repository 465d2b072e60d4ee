"""Dead-letter records stay within the broker's limit whatever they describe."""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest

from touchstream.schemas.dlq import (
    KEPT_WHOLE_BYTES,
    PREFIX_BYTES,
    dlq_record,
    original_bytes,
    replayable,
)

KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588


def record_for(key: bytes | None, value: bytes | None, **extra: object) -> dict[str, object]:
    raw = dlq_record("too_large", "x", "touchpoints", 1, 2, None, key, value, **extra)
    assert len(raw) < KAFKA_DEFAULT_MAX_MESSAGE_BYTES // 4
    return orjson.loads(raw)


def test_the_largest_record_kafka_accepts_leaves_a_bounded_prefix_size_and_digest() -> None:
    value = bytes(range(256)) * (KAFKA_DEFAULT_MAX_MESSAGE_BYTES // 256)

    record = record_for(b"huge", value)

    assert record["value_b64"] is None
    assert record["value_truncated"] is True
    assert record["value_size"] == len(value)
    assert record["value_sha256"] == hashlib.sha256(value).hexdigest()
    assert base64.b64decode(record["value_prefix_b64"]) == value[:PREFIX_BYTES]
    assert base64.b64decode(record["key_b64"]) == b"huge"


def test_an_oversized_key_is_bounded_too() -> None:
    key = b"k" * (KEPT_WHOLE_BYTES + 1)

    record = record_for(key, b"{}")

    assert record["key_truncated"] is True and record["key_b64"] is None
    assert record["key_size"] == len(key)
    assert not replayable(record)
    with pytest.raises(ValueError, match="prefix"):
        original_bytes(record)


def test_a_value_at_the_kept_whole_bound_is_replayable_byte_for_byte() -> None:
    value = b"v" * KEPT_WHOLE_BYTES

    record = record_for(b"k", value)

    assert replayable(record)
    assert original_bytes(record) == (b"k", value)
    assert "value_truncated" not in record


def test_a_truncated_value_is_not_replayable() -> None:
    assert not replayable(record_for(b"k", b"v" * (KEPT_WHOLE_BYTES + 1)))


def test_refused_output_is_never_replayed_to_touchpoints() -> None:
    record = record_for(b"k", b"{}", output_topic="profiles.updates")

    assert not replayable(record)


def test_a_long_message_is_cut() -> None:
    raw = dlq_record("internal_error", "m" * 100_000, "t", 0, 0, None, None, b"")

    assert len(orjson.loads(raw)["message"]) == 2000
