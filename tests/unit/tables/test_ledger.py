"""The windowed loyalty tables: each outcome counted once, old months dropped in event time."""

from __future__ import annotations

from typing import Any

import faust
import pytest

from touchstream.domain.clock import MS_PER_DAY
from touchstream.tables.ledger import MONTHS_KEPT, Ledger

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture
def ledger(table_app: faust.App, request: pytest.FixtureRequest) -> Any:
    ledger = Ledger(table_app, partitions=1, timezone="UTC")
    request.getfixturevalue("outbox")  # its changelog collected, inside a record
    return ledger


def earned(outcome_id: str, at: int, points: int) -> dict[str, Any]:
    return {"customer_id": "c1", "outcome_id": outcome_id, "at": at, "points": points}


def test_an_outcome_recorded_twice_counts_once_in_its_day_and_month(ledger: Ledger) -> None:
    ledger.record(earned("o1", T0 + 1_000, 500))
    ledger.record(earned("o1", T0 + 1_000, 500))  # redelivered after a crash
    ledger.record(earned("o2", T0 + 2 * MS_PER_DAY, 200))

    first_day = ledger.totals("c1", T0 + 5_000)
    assert (first_day["points_today"], first_day["points_this_month"]) == (500, 700)
    third_day = ledger.totals("c1", T0 + 2 * MS_PER_DAY)
    assert (third_day["points_today"], third_day["points_this_month"]) == (200, 700)


def test_a_new_month_drops_the_months_kept_and_more_before_it(ledger: Ledger) -> None:
    ledger.record(earned("o1", T0, 100))  # 2026-01
    ledger.record(earned("o2", T0 + 40 * MS_PER_DAY, 50))  # 2026-02
    assert ledger.month(T0 + 40 * MS_PER_DAY) == "2026-02"

    later = T0 + (MONTHS_KEPT * 31 + 5) * MS_PER_DAY
    assert ledger.month(later) == "2028-02"  # MONTHS_KEPT (25) months after January 2026
    ledger.record(earned("o3", later, 10))

    assert ledger.totals("c1", T0)["points_this_month"] == 0  # January 2026 is gone
    assert ledger.totals("c1", T0 + 40 * MS_PER_DAY)["points_this_month"] == 50  # 24 back: kept
    assert ledger.totals("c1", later)["points_this_month"] == 10
    assert sorted(ledger.monthly.keys()) == ["c1|2026-02", "c1|2028-02"]
