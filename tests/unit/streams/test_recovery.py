"""Faust's table recovery with a wait that times out (streams/recovery.py): it stops the worker
instead of ending the recovery loop for good; a real stop and a new rebalance read as before.
A never-started App: no broker is contacted. tests/integration/test_worker_lifecycle.py runs
the whole path on Apache Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

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
