"""Faust's table recovery with a wait that times out (streams/recovery.py): it stops the worker
instead of ending the recovery loop for good; a real stop and a new rebalance read as before.
A never-started App: no broker is contacted. tests/integration/test_worker_lifecycle.py runs
the whole path on Apache Kafka."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import faust
import pytest
from faust.tables.recovery import RebalanceAgain, ServiceStopped

from touchstream.streams.recovery import Recovery, RecoveryTimedOut, TableManager


@pytest.fixture
async def recovery() -> AsyncIterator[Recovery]:
    # made in the test's event loop: a service waits on events of the loop it was made in
    app = faust.App(
        "recovery-test",
        broker="kafka://127.0.0.1:9",
        store="memory://",
        autodiscover=False,
        TableManager=TableManager,
    )
    built = app.tables.recovery
    assert isinstance(built, Recovery)  # the App setting reaches Faust's table manager
    yield built


async def test_a_wait_that_times_out_raises_what_stops_the_worker(recovery: Recovery) -> None:
    with pytest.raises(RecoveryTimedOut, match=r"waited 0\.05 s"):
        await recovery._wait(asyncio.sleep(5), timeout=0.05)


async def test_a_wait_that_ends_in_time_returns(recovery: Recovery) -> None:
    await recovery._wait(asyncio.sleep(0), timeout=5)


async def test_a_stopping_service_still_ends_the_loop_quietly(recovery: Recovery) -> None:
    recovery._stopped.set()  # mode's flag: the worker is shutting down
    with pytest.raises(ServiceStopped):
        await recovery._wait(asyncio.sleep(5), timeout=0.05)


async def test_a_new_rebalance_still_restarts_recovery(recovery: Recovery) -> None:
    recovery.signal_recovery_start.set()
    with pytest.raises(RebalanceAgain):
        await recovery._wait(asyncio.sleep(5), timeout=5)


class SeekingConsumer:
    def __init__(self) -> None:
        self.sought: dict[Any, int] = {}

    async def seek_wait(self, offsets: dict[Any, int]) -> None:
        for offset in offsets.values():
            if not isinstance(offset, int) or offset < 0:  # aiokafka's ``seek`` refuses it
                raise ValueError("Offset must be a positive integer")
        self.sought.update(offsets)


async def test_a_seek_offset_below_zero_reads_the_changelog_from_its_start(
    recovery: Recovery,
) -> None:
    # a worker crashed at start on this (Faust's -1 is "nothing read"; it computed -2)
    consumer = SeekingConsumer()
    offsets: Counter[str] = Counter({"a": -2, "b": -1, "c": 41})
    offsets["d"] = None  # type: ignore[assignment]
    await recovery._seek_offsets(consumer, {"a", "b", "c", "d"}, offsets, "standby")
    assert consumer.sought == {"a": 0, "b": 0, "c": 41, "d": 0}
    # and Faust's own record of where it reads from says so: it counts what is left to read
    # from it (a -2 left there kept an empty partition's recovery waiting for ever)
    assert offsets["a"] == -1 and offsets["d"] == -1 and offsets["c"] == 41
