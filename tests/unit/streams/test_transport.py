"""The consumer records which rebalance its seek to the committed offsets ended: the batch drain
handles nothing of an assignment before that seek (streams/delivery.py, ``_seek_pending``)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka

from touchstream.streams.delivery import IN_DRAIN, Routes
from touchstream.streams.isolation import Faults
from touchstream.streams.transport import transport_for


def _consumer(faults: Faults | None = None) -> Any:
    app = faust.App("transport-test", broker="kafka://127.0.0.1:1")
    transport = transport_for(app, 100, "127.0.0.1:1", False, Routes(), faults)
    consumer = object.__new__(type(transport).Consumer)  # no thread, no broker: seeks only
    consumer.app = SimpleNamespace(consumer_generation_id=1, rebalancing_count=1)
    return consumer


@pytest.fixture
def faust_seeks(monkeypatch: pytest.MonkeyPatch) -> list[asyncio.Event]:
    """Faust's own ``perform_seek``, each call waiting for the event the test sets."""
    releases: list[asyncio.Event] = []

    async def perform_seek(self: Any) -> None:
        release = asyncio.Event()
        releases.append(release)
        await release.wait()

    monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", perform_seek)
    return releases


async def seek(consumer: Any, releases: list[asyncio.Event], in_drain: bool = False) -> None:
    """One ``perform_seek`` of ``consumer`` to its end, Faust's part released at once; made in
    the drain's task (``in_drain``: the seek of Faust's ``getmany``) or in recovery's."""

    async def perform() -> None:
        if in_drain:
            IN_DRAIN.set(True)  # what streams.delivery.drain sets in its task
        await consumer.perform_seek()

    task = asyncio.ensure_future(perform())
    await asyncio.sleep(0)
    releases[-1].set()
    await task


async def test_a_seek_begun_before_a_newer_one_and_ending_after_it_records_nothing(
    faust_seeks: list[asyncio.Event],
) -> None:
    # a recovery seek still waiting for committed offsets when the next generation's recovery
    # has sought must not undo the newer record
    consumer = _consumer()
    older = asyncio.ensure_future(consumer.perform_seek())
    await asyncio.sleep(0)
    consumer.app.consumer_generation_id, consumer.app.rebalancing_count = 2, 2
    newer = asyncio.ensure_future(consumer.perform_seek())
    await asyncio.sleep(0)
    faust_seeks[1].set()
    await newer
    faust_seeks[0].set()
    await older
    assert (consumer.sought_generation, consumer.sought_rebalances) == (2, 2)
    assert consumer.seeks == 4  # each seek counted at its start and its end


async def test_a_rebalance_begun_during_a_seek_is_still_to_be_sought(
    faust_seeks: list[asyncio.Event],
) -> None:
    consumer = _consumer()
    seek = asyncio.ensure_future(consumer.perform_seek())
    await asyncio.sleep(0)
    consumer.app.rebalancing_count = 2  # App.on_rebalance_start, in the consumer's thread
    faust_seeks[0].set()
    await seek
    assert consumer.sought_rebalances == 1  # so the drain keeps waiting for the next seek
    assert consumer.sought_generation == 1


async def test_a_seek_that_fails_records_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    async def perform_seek(self: Any) -> None:
        raise TimeoutError("committed offsets not read")

    monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", perform_seek)
    consumer = _consumer()
    with pytest.raises(TimeoutError):
        await consumer.perform_seek()
    assert consumer.sought_generation is None
    assert consumer.seeks == 2


async def test_the_seek_faust_getmany_makes_in_the_drain_records_nothing(
    faust_seeks: list[asyncio.Event],
) -> None:
    # getmany seeks when a fetch comes back with flow stopped; by then the new generation may
    # be assigned, and recovery's seek, the one that ends the rebalance, is still to come
    consumer = _consumer()
    consumer.app.consumer_generation_id, consumer.app.rebalancing_count = 2, 2
    await seek(consumer, faust_seeks, in_drain=True)
    assert consumer.sought_generation is None  # the drain still waits for recovery's seek
    assert consumer.seeks == 2  # yet a fetch taken before it is suspect
    await seek(consumer, faust_seeks)  # recovery's
    assert (consumer.sought_generation, consumer.sought_rebalances) == (2, 2)


async def test_the_seek_fault_hangs_recovery_s_seek_of_its_generation_only(
    faust_seeks: list[asyncio.Event],
) -> None:
    """``TOUCHSTREAM_FAULTS=seek:1``: generation 1's seek never reaches the broker and never
    ends, as with a broker gone silent, until recovery gives up on it (streams.recovery)."""
    consumer = _consumer(Faults.parse("seek:1"))
    hung = asyncio.ensure_future(consumer.perform_seek())
    await asyncio.sleep(0.01)
    assert not hung.done() and faust_seeks == []  # Faust's seek never began
    hung.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hung
    assert consumer.seeks == 2 and consumer.sought_generation is None
    consumer.app.consumer_generation_id = 2
    await seek(consumer, faust_seeks)
    assert consumer.sought_generation == 2
