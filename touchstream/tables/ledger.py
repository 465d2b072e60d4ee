"""Windowed loyalty tables: points and qualifying spend per customer, per day and per calendar
month of event time (docs/domain.md, "Loyalty").

Every ledger outcome (``domain.loyalty``) is written into the windows its event time falls in,
held by its ``outcome_id`` rather than added to a running sum, so an outcome written twice (a
redelivery after a crash) counts once.

Where the rules need more than Faust's windows give:
- Faust's windows are fixed-size and aligned to the epoch, so days are UTC days; calendar months
  (in the program's time zone) have no Faust window type. Months are therefore a plain table
  keyed by "customer|YYYY-MM" (a string: JSON would turn a tuple key into an unhashable list
  when the changelog is read back), and the month of an outcome is worked out here.
- Faust expires windows by the wall clock (``Collection._del_old_keys`` compares with
  ``time.time()``), so the daily table keeps ``DAILY_KEPT`` of wall time. The monthly table
  expires in event time: a customer's first outcome of a month drops their months
  ``MONTHS_KEPT`` and more before it.
Decisions never read these tables: tiers, expiry and RFM work from the ledger in the customer
record, which is exact to the millisecond in event time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import faust

from touchstream.tables.store import Readers, table_writer
from touchstream.tables.windows import add_once, window_value, with_entry

DAILY_KEPT = timedelta(days=400)
MONTHS_KEPT = 25
ENTRIES_KEPT = 256  # outcomes held per window and customer


class Ledger:
    def __init__(self, app: faust.App, partitions: int, timezone: str) -> None:
        schema: Any = faust.Schema(key_serializer="json", value_serializer="json")
        self.daily: Any = app.Table(
            "loyalty-daily",
            default=dict,
            partitions=partitions,
            schema=schema,
            help="Points and qualifying spend per customer per day of event time",
        ).tumbling(86400, expires=DAILY_KEPT)
        self.monthly = app.Table(
            "loyalty-monthly",
            default=dict,
            partitions=partitions,
            schema=schema,
            help="Points and qualifying spend per customer per calendar month of event time",
        )
        self.tz = ZoneInfo(timezone)
        self._read = Readers()  # the tables' stores, read without Faust's per-access wrappers

    def month(self, at_ms: int, back: int = 0) -> str:
        return _month_name(self._month_index(at_ms) - back)

    def _month_index(self, at_ms: int) -> int:
        local = datetime.fromtimestamp(at_ms / 1000, self.tz)
        return local.year * 12 + local.month - 1

    def record(self, outcome: dict[str, Any]) -> None:
        """Count one ledger outcome into its day and month (inside the agent)."""
        points, spend = outcome.get("points", 0), outcome.get("spend_minor", 0)
        if not points and not spend:
            return
        customer_id, at, outcome_id = outcome["customer_id"], outcome["at"], outcome["outcome_id"]
        entry = [points, spend]
        daily = self.daily
        add_once(
            daily, customer_id, at / 1000, outcome_id, entry, ENTRIES_KEPT, self._read(daily.table)
        )
        index = self._month_index(at)
        key = f"{customer_id}|{_month_name(index)}"
        read = self._read(self.monthly)  # (a table's store never holds None: a key is there)
        month = read(key)
        if month is None:  # the customer's first outcome of this month
            for back in range(MONTHS_KEPT, MONTHS_KEPT + 12):
                old = f"{customer_id}|{_month_name(index - back)}"
                if read(old) is not None:
                    del self.monthly[old]
            month = {}  # the table's default
        if outcome_id not in month:
            table_writer(self.monthly)(key, with_entry(month, outcome_id, entry, ENTRIES_KEPT))

    def totals(self, customer_id: str, at_ms: int) -> dict[str, int]:
        """Points and qualifying spend of the day and the month containing ``at_ms``."""
        daily = self.daily
        day = window_value(daily, customer_id, at_ms / 1000, self._read(daily.table))
        month: dict[str, list[int]] = (
            self._read(self.monthly)(f"{customer_id}|{self.month(at_ms)}") or {}
        )
        points_day = spend_day = points_month = spend_month = 0
        for points, spend in day.values():
            points_day += points
            spend_day += spend
        for points, spend in month.values():
            points_month += points
            spend_month += spend
        return {
            "points_today": points_day,
            "spend_today_minor": spend_day,
            "points_this_month": points_month,
            "spend_this_month_minor": spend_month,
        }

    def erase(self, customer_id: str) -> int:
        """Remove every window and month of an erased customer (tombstones in the changelogs)."""
        daily, monthly = self.daily.table, self.monthly
        gone = [(daily, k) for k in list(daily.keys()) if k[0] == customer_id]
        gone += [(monthly, k) for k in list(monthly.keys()) if k.startswith(customer_id + "|")]
        for table, key in gone:
            del table[key]
        return len(gone)


def _month_name(index: int) -> str:
    """``YYYY-MM`` of a month counted from year 0 (``year * 12 + month - 1``)."""
    return f"{index // 12:04d}-{index % 12 + 1:02d}"
