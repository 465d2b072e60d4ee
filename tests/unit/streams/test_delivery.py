"""A fetch's states reach the table only once its output is delivered, each in its partition."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest
from faust.streams import current_event

from touchstream.errors import OutputLost
from touchstream.streams.delivery import Finisher, run_fetch


class TP(NamedTuple):
    topic: str
    partition: int


class Message(NamedTuple):
    tp: TP
    offset: int


class RecordingOutbox:
    """Stands in for ``streams.outbox.Outbox``: records what was asked of it, in order."""

    def __init__(self, log: list[str], refuse: bool = False) -> None:
        self.log = log
        self.refuse = refuse

    async def flush(self, delivered: bool = False) -> None:
        if delivered and self.refuse:
            raise OutputLost("the broker refused output records")
        self.log.append("delivered" if delivered else "queued")


def _handler(log: list[str], with_state: bool):  # type: ignore[no-untyped-def]
    async def handle(tp: TP, messages: list[Message]) -> Finisher | None:
        log.append(f"handled {tp.topic}[{tp.partition}] x{len(messages)}")
        if not with_state:
            return None

        def write_states(delivered: bool) -> None:
            if not delivered:
                log.append(f"states {tp.partition} dropped")
                return
            event = current_event()
            assert event is not None
            log.append(f"state {tp.partition} in event of partition {event.message.tp.partition}")

        return write_states

    return handle


def _batch(topic: str, partition: int, count: int) -> list[Message]:
    return [Message(TP(topic, partition), offset) for offset in range(count)]


async def test_every_partition_is_handled_before_one_delivery_and_then_its_states() -> None:
    log: list[str] = []
    customer = _handler(log, with_state=True)
    ingest = _handler(log, with_state=False)
    work: list[tuple[Any, Any, list[Any]]] = [
        (customer, TP("customer-events", 3), _batch("customer-events", 3, 2)),
        (ingest, TP("touchpoints", 0), _batch("touchpoints", 0, 5)),
        (customer, TP("customer-events", 5), _batch("customer-events", 5, 1)),
    ]
    await run_fetch(work, RecordingOutbox(log))  # type: ignore[arg-type]
    assert log == [
        "handled customer-events[3] x2",
        "handled touchpoints[0] x5",
        "handled customer-events[5] x1",
        "delivered",
        "state 3 in event of partition 3",
        "state 5 in event of partition 5",
        "queued",
    ]


async def test_a_fetch_without_states_only_queues_its_output() -> None:
    log: list[str] = []
    ingest = _handler(log, with_state=False)
    work: list[tuple[Any, Any, list[Any]]] = [
        (ingest, TP("touchpoints", 1), _batch("touchpoints", 1, 3))
    ]
    await run_fetch(work, RecordingOutbox(log))  # type: ignore[arg-type]
    assert log == ["handled touchpoints[1] x3", "queued", "queued"]


async def test_a_failing_partition_writes_no_state_of_the_fetch() -> None:
    log: list[str] = []
    customer = _handler(log, with_state=True)

    async def broken(tp: TP, messages: list[Message]) -> Finisher | None:
        raise RuntimeError("bug")

    work: list[tuple[Any, Any, list[Any]]] = [
        (customer, TP("customer-events", 0), _batch("customer-events", 0, 1)),
        (broken, TP("customer-events", 1), _batch("customer-events", 1, 1)),
    ]
    with pytest.raises(RuntimeError):
        await run_fetch(work, RecordingOutbox(log))  # type: ignore[arg-type]
    assert log == ["handled customer-events[0] x1", "states 0 dropped"]


async def test_output_the_broker_refused_writes_no_state_of_the_fetch() -> None:
    log: list[str] = []
    customer = _handler(log, with_state=True)
    work: list[tuple[Any, Any, list[Any]]] = [
        (customer, TP("customer-events", 2), _batch("customer-events", 2, 4)),
        (customer, TP("customer-events", 6), _batch("customer-events", 6, 1)),
    ]
    with pytest.raises(OutputLost):
        await run_fetch(work, RecordingOutbox(log, refuse=True))  # type: ignore[arg-type]
    assert log == [
        "handled customer-events[2] x4",
        "handled customer-events[6] x1",
        "states 2 dropped",
        "states 6 dropped",
    ]
