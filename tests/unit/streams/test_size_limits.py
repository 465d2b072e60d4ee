"""Sizes of a record alone in a record batch, and the smallest of the limits that wins."""

from __future__ import annotations

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder

from touchstream.streams.size_limits import Limits, SizeLimits, batch_size, largest_value


def built(key: bytes | None, value: bytes | None) -> int:
    builder = BatchBuilder(1 << 30, 0)
    assert builder.append(key=key, value=value, timestamp=None) is not None
    return len(builder._build())


@pytest.mark.parametrize("key", [None, b"", b"k", b"c" * 200])
@pytest.mark.parametrize("length", [0, 1, 63, 64, 127, 128, 8191, 8192, 100_000, 1_048_000])
def test_batch_size_is_what_aiokafka_writes(key: bytes | None, length: int) -> None:
    value = b"v" * length
    assert batch_size(key, value) == built(key, value)


@pytest.mark.parametrize("limit", [200, 2048, 4096, 65_536, 1_048_588])
def test_largest_value_is_the_largest_that_fits(limit: int) -> None:
    key = b"customer-1"
    value = largest_value(limit, key)
    assert batch_size(key, b"x" * value) <= limit
    assert batch_size(key, b"x" * (value + 1)) > limit


def test_the_smallest_of_producer_broker_and_topic_limits_wins() -> None:
    limits = SizeLimits(producer=1_000_000)
    assert limits.limit("t") == 1_000_000
    limits.update(Limits(broker=900_000, topics={"t": 5_000, "u": 2_000_000}))
    assert limits.limit("t") == 5_000
    assert limits.limit("u") == 900_000
    assert limits.limit("other") == 900_000
    assert limits.over("t", b"k", b"x" * 4_900) is None
    size, limit = limits.over("t", b"k", b"x" * 5_000) or (0, 0)
    assert (size, limit) == (batch_size(b"k", b"x" * 5_000), 5_000)


def test_no_limit_known_checks_nothing() -> None:
    assert SizeLimits().over("t", b"k", b"x" * 50_000_000) is None
    assert SizeLimits().value_budget("t", b"k", 1234) == 1234
