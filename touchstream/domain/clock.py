"""Event time: parsing ``occurred_at`` and formatting epoch milliseconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from touchstream.errors import SchemaViolation

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

MS_PER_DAY = 86_400_000
MS_PER_HOUR = 3_600_000
MS_PER_MINUTE = 60_000


def parse_occurred_at(value: object, now_ms: int, future_tolerance_ms: int) -> int:
    """Epoch milliseconds of an RFC 3339 string with offset or an epoch-ms integer."""
    if isinstance(value, bool):
        raise SchemaViolation("occurred_at must be an RFC 3339 string or epoch milliseconds")
    if isinstance(value, int):
        ms = value
    elif isinstance(value, str):
        try:
            # RFC 3339 allows lower-case 't' and 'z'; Python 3.11's parser does not
            parsed = datetime.fromisoformat(value.upper())
        except ValueError:
            raise SchemaViolation(
                f"occurred_at is not an RFC 3339 timestamp: {value[:40]!r}"
            ) from None
        if parsed.tzinfo is None:
            raise SchemaViolation("occurred_at needs a UTC offset (e.g. 'Z' or '+02:00')")
        ms = (parsed - EPOCH) // timedelta(milliseconds=1)  # exact, no float rounding
    else:
        raise SchemaViolation("occurred_at must be an RFC 3339 string or epoch milliseconds")
    if ms < 0:
        raise SchemaViolation("occurred_at is before 1970-01-01")
    if ms > now_ms + future_tolerance_ms:
        raise SchemaViolation(
            f"occurred_at is {(ms - now_ms) // 1000} s in the future "
            f"(more than {future_tolerance_ms // 1000} s ahead of the wall clock)"
        )
    return ms


def iso(ms: int) -> str:
    """RFC 3339 UTC with millisecond precision (integer arithmetic: a float of the seconds
    rounds the milliseconds of far-future times)."""
    seconds, millis = divmod(ms, 1000)
    return f"{_second(seconds)}.{millis:03d}Z"


@lru_cache(maxsize=1 << 16)  # events of the same second share it; most timestamps are new
def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def clock_time(at: int, rt: int | None, max_skew_ms: int) -> int:
    """The time an event moves its partition's event-time clock to: its claimed time ``at``,
    but never more than ``max_skew_ms`` past ``rt``, the time its record reached the broker.

    A timestamp of the record, never the processing wall clock: the offline replay of the
    same records makes the same decision. An event without ``rt`` (written before ingest
    recorded it) moves the clock to its claimed time, as before.
    """
    if rt is None:
        return at
    return min(at, rt + max_skew_ms)
