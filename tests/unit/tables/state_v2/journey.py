"""The bench's shoppers through the per-customer stage, shared by the format-2 fixture script
(``make_fixture.py``, run once with the code of state format 2, the flat dict stored with
codec byte 0x01) and the test that later workers keep reading it.

``before()`` is the first 200 of 300 events of the bench's data set (30 customers, the
generator of ``touchstream.bench.replay`` at a fixed clock): profiles with orders, returns,
carts, sessions, consents, merges and their redirects. ``after()`` is the other 100, fed to a
stage recovered from the stored table, then the clock moving on by two days (sessions close,
carts are reminded, tiers and RFM re-evaluated).
"""

from __future__ import annotations

import functools
from typing import Any

from tests.unit.tables import state_fixture
from touchstream.bench.replay import bench_events
from touchstream.config.rules import load_rules
from touchstream.offline import OfflineStage

RULES = load_rules(None)
NOW_MS = 1_795_400_000_000  # fixed, as bench/core_speed.py: the data must not depend on the day
DAY = 86_400_000
PARTITIONS = 8  # as touchstream.bench.replay
SPLIT = 200


@functools.cache
def _events() -> tuple[dict[str, Any], ...]:
    return tuple(bench_events(300, 30, NOW_MS))


def before() -> list[dict[str, Any]]:
    return list(_events()[:SPLIT])


def after() -> list[dict[str, Any]]:
    return list(_events()[SPLIT:])


def written() -> OfflineStage:
    """The stage whose table the fixture stores: ``before()``, as the bench replays it."""
    stage = OfflineStage(RULES, partitions=PARTITIONS)
    stage.submit(before())
    stage.drain()
    return stage


def stage_with(table: dict[str, dict[str, Any]]) -> OfflineStage:
    """An offline stage holding ``table``, its timers indexed as a worker's recovery does."""
    return state_fixture.stage_holding(table, RULES, PARTITIONS)


def replay_after(stage: OfflineStage) -> None:
    """Feed ``after()`` and move the clock on by two days."""
    stage.submit(after())
    stage.drain()
    last = max(e["at"] for e in after())
    stage.tick(last + 2 * DAY, last + 2 * DAY)
