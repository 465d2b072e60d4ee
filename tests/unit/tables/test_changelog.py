"""Changelog records of the window tables: the bytes Faust itself writes, so compaction keeps one
record per window and an erasure's tombstones remove what earlier versions wrote."""

from __future__ import annotations

from typing import Any

import faust
import pytest

from touchstream.domain.clock import MS_PER_DAY
from touchstream.tables.activity import Activity
from touchstream.tables.ledger import Ledger

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture
def tables(table_app: faust.App, request: pytest.FixtureRequest) -> Any:
    ledger = Ledger(table_app, partitions=1, timezone="UTC")
    activity = Activity(table_app, partitions=1)
    return table_app, ledger, activity, request.getfixturevalue("outbox")


def faust_bytes(table: Any, key: Any, value: Any) -> tuple[bytes, bytes | None]:
    """What Faust's own ``Table.on_key_set`` would put on the changelog."""
    topic = table.changelog_topic
    raw_key, _ = topic.prepare_key(key, table.key_serializer)
    if value is None:
        return raw_key, None
    raw_value, _ = topic.prepare_value(value, table.value_serializer)
    return raw_key, raw_value


def test_window_records_carry_the_bytes_faust_writes_and_erasure_tombstones_match(
    tables: Any,
) -> None:
    app, ledger, activity, outbox = tables
    ledger.record({"customer_id": "c1", "outcome_id": "o1", "at": T0, "points": 120})
    ledger.record(
        {"customer_id": "c1", "outcome_id": "o2", "at": T0 + MS_PER_DAY, "spend_minor": 4_599}
    )
    session = {"customer_id": "c1", "session_id": "s1", "start_ms": T0 + 60_000}
    activity.record(session | {"page_views": 3, "product_views": 2, "searches": 1, "cart_adds": 0})
    written = {
        (topic, key): value
        for (topic, _), records in outbox._records.items()
        for key, value in records
    }
    assert len(written) == 5  # two days and a month of ledger, an hour and a day of activity

    for table in app.tables.values():
        topic = table.changelog_topic.get_topic_name()
        for key, value in table.data.items():
            raw_key, raw_value = faust_bytes(table, key, value)
            assert written[(topic, raw_key)] == raw_value
    outbox._records.clear()

    assert ledger.erase("c1") + activity.erase("c1") == 5
    tombstones = {
        (topic, key) for (topic, _), records in outbox._records.items() for key, v in records
    }
    assert tombstones == set(written)
    assert all(v is None for records in outbox._records.values() for _, v in records)
