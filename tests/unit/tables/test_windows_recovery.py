"""Recovery of the ledger and activity windows: a value with no entry the held one lacks is a
late write (a worker whose group session expired while the broker was away delivers its last
batch after another worker added entries) and is left out, so no session, points or spend
counted since is taken back."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import faust

from touchstream.tables.activity import Activity
from touchstream.tables.ledger import Ledger
from touchstream.tables.windows import SupersededEntries

WINDOW = ["crm-1", [1_767_225_600.0, 1_767_311_999.9]]  # a day's window key, as JSON has it


def record(value: dict[str, Any] | None, offset: int, key: Any = None) -> Any:
    key = WINDOW if key is None else key
    message = SimpleNamespace(key=key, value=value, partition=0, offset=offset, tp=("cl", 0))
    return SimpleNamespace(key=key, value=value, message=message)


def as_stored(key: Any) -> Any:  # Faust's Collection._to_key: a JSON list back to a tuple
    return tuple(tuple(v) if isinstance(v, list) else v for v in key)


def offsets(kept: list[Any]) -> list[int]:
    return [r.message.offset for r in kept]


def test_a_late_value_without_the_entries_added_since_is_left_out() -> None:
    keep = SupersededEntries()
    batch = [
        record({"s1": [1, 0, 0, 0]}, 1),
        record({"s1": [1, 0, 0, 0], "s2": [3, 1, 0, 1]}, 2),
        record({"s1": [1, 0, 0, 0]}, 3),  # the late write
    ]
    assert offsets(keep(batch, as_stored, {}.get)) == [1, 2]
    held = {as_stored(WINDOW): {"s1": [1, 0, 0, 0], "s2": [3, 1, 0, 1]}}
    assert keep([record({"s2": [3, 1, 0, 1]}, 4)], as_stored, held.get) == []


def test_a_newer_value_applies_even_when_keeping_the_newest_dropped_the_oldest() -> None:
    held = {as_stored(WINDOW): {"s1": [1, 0, 0, 0], "s2": [2, 0, 0, 0]}}
    newer = record({"s2": [2, 0, 0, 0], "s3": [5, 0, 0, 0]}, 5)  # kept 2: s1 went, s3 came
    assert offsets(SupersededEntries()([newer], as_stored, held.get)) == [5]


def test_a_deletion_applies_and_a_window_started_again_after_it_too() -> None:
    held = {as_stored(WINDOW): {"s1": [1, 0, 0, 0]}}
    batch = [record(None, 6), record({"s1": [1, 0, 0, 0]}, 7)]
    assert offsets(SupersededEntries()(batch, as_stored, held.get)) == [6, 7]


def test_the_ledger_and_activity_tables_recover_without_the_late_window(
    table_app: faust.App,
) -> None:
    ledger = Ledger(table_app, partitions=1, timezone="UTC")
    activity = Activity(table_app, partitions=1)
    for table in (ledger.daily.table, activity.daily.table, activity.hourly.table):
        table.apply_changelog_batch([record({"o1": [10, 100], "o2": [20, 200]}, 1)])
        table.apply_changelog_batch([record({"o1": [10, 100]}, 2)])  # late, a batch later
        assert table.data[as_stored(WINDOW)] == {"o1": [10, 100], "o2": [20, 200]}
    month = "crm-1|2026-01"
    ledger.monthly.apply_changelog_batch([record({"o1": [1, 1], "o2": [2, 2]}, 1, month)])
    ledger.monthly.apply_changelog_batch([record({"o2": [2, 2]}, 2, month)])
    assert ledger.monthly.data[month] == {"o1": [1, 1], "o2": [2, 2]}
