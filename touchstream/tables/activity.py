"""Windowed activity tables: sessions, page views, product views and cart adds per customer,
per hour and per day of event time (docs/domain.md, "Sessions and carts").

Faust has no session window, so sessions are cut in the pure core (``domain.sessions``) and
each closed session is written here into Faust tumbling windows, into the window containing
its start time. A window's value holds each session by its id rather than a
running sum, so a session written twice (a redelivery after a crash) counts once.

Where the rules need more than Faust's windows give: Faust expires windows by the wall clock
(``Collection._del_old_keys`` compares with ``time.time()``), not by event time, so these tables
keep the last ``HOURLY_KEPT``/``DAILY_KEPT`` of wall time; a replay of older traffic writes
windows that the next cleanup drops. Decisions never read these tables: every timer and
trigger works from the customer state, which is exact in event time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import faust

from touchstream.tables.store import Readers
from touchstream.tables.windows import add_once, column_sums, window_value

COUNTS = ("page_views", "product_views", "searches", "cart_adds")
HOURLY_KEPT = timedelta(hours=48)
DAILY_KEPT = timedelta(days=35)
# the names ``Activity.add_today`` gives the day's figures in a served profile, in its order
TODAY = ("sessions_today", *(f"{name}_today" for name in COUNTS))
_NONE_TODAY = dict.fromkeys(TODAY, 0)
SESSIONS_KEPT = 64  # sessions held per window and customer: a bot cannot grow one without bound


class Activity:
    def __init__(self, app: faust.App, partitions: int) -> None:
        self.hourly = self._table(app, "activity-hourly", 3600, HOURLY_KEPT, partitions)
        self.daily = self._table(app, "activity-daily", 86400, DAILY_KEPT, partitions)
        self._read = Readers()  # the tables' stores, read without Faust's per-access wrappers

    @staticmethod
    def _table(app: faust.App, name: str, size_s: int, kept: timedelta, partitions: int) -> Any:
        return app.Table(
            name,
            default=dict,
            partitions=partitions,
            # windowed keys are (customer_id, (start, end)) tuples
            schema=faust.Schema(key_serializer="json", value_serializer="json"),
            help=f"Per-customer activity per {size_s // 3600}h window of event time",
        ).tumbling(size_s, expires=kept)

    def record(self, session: dict[str, Any]) -> None:
        """Count a closed session into the windows its start falls in (inside the agent)."""
        customer_id = session["customer_id"]
        entry = [session[c] for c in COUNTS]
        at_s = session["start_ms"] / 1000
        session_id, read = session["session_id"], self._read
        for table in (self.hourly, self.daily):
            add_once(table, customer_id, at_s, session_id, entry, SESSIONS_KEPT, read(table.table))

    def totals(self, customer_id: str, at_ms: int, period: str = "day") -> dict[str, int]:
        """Sessions and counts of the hour or day of event time containing ``at_ms``."""
        table = self.hourly if period == "hour" else self.daily
        held = window_value(table, customer_id, at_ms / 1000, self._read(table.table))
        sums = column_sums(held, len(COUNTS))
        return {"sessions": len(held), **dict(zip(COUNTS, sums, strict=True))}

    def add_today(self, profile: dict[str, Any], customer_id: str, at_ms: int) -> None:
        """``totals`` of the day containing ``at_ms`` into ``profile``, each name with
        ``_today`` after it (``TODAY``): what a served profile shows."""
        daily = self.daily
        held = window_value(daily, customer_id, at_ms / 1000, self._read(daily.table))
        if not held:  # most shoppers' day so far: no closed session
            profile.update(_NONE_TODAY)
            return
        profile.update(zip(TODAY, (len(held), *column_sums(held, len(COUNTS))), strict=True))

    def erase(self, customer_id: str) -> int:
        """Remove every window of an erased customer (tombstones in the changelogs)."""
        removed = 0
        for table in (self.hourly, self.daily):
            inner = table.table
            for key in [k for k in list(inner.keys()) if k[0] == customer_id]:
                del inner[key]
                removed += 1
        return removed
