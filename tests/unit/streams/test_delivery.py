"""A fetch's states reach the table only once its output is delivered, each in its partition."""

from __future__ import annotations

import asyncio
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


class InFlightOutbox:
    """An outbox whose output the broker acknowledges only once the test says so."""

    def __init__(self, log: list[str], refuse: bool = False) -> None:
        self.log = log
        self.refuse = refuse
        self.acknowledge = asyncio.Event()

    async def flush(self, delivered: bool = False) -> None:
        if not delivered:
            self.log.append("queued")
            return
        self.log.append("output sent")
        await self.acknowledge.wait()
        if self.refuse:
            raise OutputLost("the broker refused output records")
        self.log.append("delivered")


class EncodingStates:
    """A finisher that encodes its states while the output is in flight (``prepare``)."""

    def __init__(self, log: list[str], partition: int, outbox: InFlightOutbox) -> None:
        self.log, self.partition, self.outbox = log, partition, outbox

    def prepare(self) -> None:
        self.log.append(f"states {self.partition} encoded")
        self.outbox.acknowledge.set()  # the broker answers while the states are encoded

    def __call__(self, delivered: bool) -> None:
        self.log.append(f"states {self.partition} {'written' if delivered else 'dropped'}")


def _encoding(log: list[str], outbox: InFlightOutbox):  # type: ignore[no-untyped-def]
    async def handle(tp: TP, messages: list[Message]) -> Finisher:
        log.append(f"handled {tp.topic}[{tp.partition}]")
        return EncodingStates(log, tp.partition, outbox)

    return handle


@pytest.mark.parametrize("refused", [False, True])
async def test_states_are_encoded_while_the_output_is_in_flight_and_written_only_after(
    refused: bool,
) -> None:
    log: list[str] = []
    outbox = InFlightOutbox(log, refuse=refused)
    handler = _encoding(log, outbox)
    work: list[tuple[Any, Any, list[Any]]] = [
        (handler, TP("customer-events", 1), _batch("customer-events", 1, 2)),
        (handler, TP("customer-events", 4), _batch("customer-events", 4, 1)),
    ]
    fetch = asyncio.wait_for(run_fetch(work, outbox), 5)  # type: ignore[arg-type]
    if refused:
        with pytest.raises(OutputLost):
            await fetch
    else:
        await fetch
    outcome = (
        ["states 1 dropped", "states 4 dropped"]
        if refused
        else ["delivered", "states 1 written", "states 4 written", "queued"]
    )
    assert log == [
        "handled customer-events[1]",
        "handled customer-events[4]",
        "output sent",
        "states 1 encoded",
        "states 4 encoded",
        *outcome,
    ]


class FetchedMessage(NamedTuple):
    tp: TP
    offset: int
    generation_id: int


class App:
    def __init__(self) -> None:
        self.consumer_generation_id = 1
        self.rebalancing_count = 1  # the first join counts as a rebalance
        self.rebalancing = False


class Consumer:
    """The parts of Faust's consumer ``_deliver`` uses. ``acquire`` (Faust's flow control)
    returns after what the test scripts: a rebalance begun (another assignment, a new
    generation) and the seek it ends with, to ``seek_to``."""

    def __init__(
        self,
        assigned: set[TP],
        rebalance: set[TP] | None = None,
        seek_to: int | None = None,
        begun: bool = False,
    ) -> None:
        import asyncio
        from collections import defaultdict

        self.app = App()
        self.app.flow_control = self  # type: ignore[attr-defined]
        self.rebalance, self.seek_to, self.begun = rebalance, seek_to, begun
        self.assigned = assigned
        self.suspend_flow = asyncio.Event()
        self.flow_active = True
        self._read_offset: dict[TP, int | None] = defaultdict(lambda: None)
        self._commit_every = None
        self.acked: list[tuple[int, int]] = []
        self.seeks = 0
        self.sought_generation: int | None = 1
        self.sought_rebalances = 1
        self.positions = dict.fromkeys(assigned, 2003)  # past the fetch, as after any fetch
        self.asked: dict[TP, int] = {}  # offsets the drain asked to seek back to
        self.should_stop = False

    async def acquire(self) -> None:
        if self.begun:  # a revocation begun in the consumer's thread, nothing else yet
            self.app.rebalancing_count += 1
        if self.rebalance is not None:  # Faust's App.on_rebalance_start, then the assignment
            self.app.rebalancing_count += 1
            self.app.consumer_generation_id += 1
            self.assigned = self.rebalance
        if self.seek_to is not None:  # Consumer.perform_seek, to the committed offsets
            self.seeks += 2
            self.sought_generation = self.app.consumer_generation_id
            self.sought_rebalances = self.app.rebalancing_count
            self.positions = dict.fromkeys(self.assigned, self.seek_to)

    def position_now(self, tp: TP) -> int | None:
        return self.positions.get(tp)

    async def rewind(self, offsets: dict[TP, int]) -> int:
        # what the drain asks; transport.rewind_consumer moves a position only where it is
        # past the offset (tests/integration/test_transport_rewind.py)
        self.asked.update(offsets)
        moved = 0
        for tp, offset in offsets.items():
            position = self.positions.get(tp)
            if tp in self.assigned and position is not None and position > offset:
                self.positions[tp] = offset
                moved += 1
        return moved

    def assignment(self) -> set[TP]:
        return self.assigned

    def ack(self, message: FetchedMessage) -> None:
        self.acked.append((message.tp.partition, message.offset))


async def _deliver_fetch(
    consumer: Consumer, outbox: Any = None, generation: int = 1, routes: Any = None
) -> list[str]:
    from touchstream.streams.delivery import Routes, _deliver

    log: list[str] = []
    routes = routes or Routes()
    routes.outbox = (outbox or RecordingOutbox)(log)
    routes.add("touchpoints", _handler(log, with_state=True))
    fetched = [FetchedMessage(TP("touchpoints", 0), o, generation) for o in range(2000, 2003)]
    seeks = consumer.seeks  # as the drain takes it, before the fetch
    await _deliver(consumer, {TP("touchpoints", 0): fetched}, routes, lambda topic: True, seeks)
    return log


HANDLED = ["handled touchpoints[0] x3", "delivered", "state 0 in event of partition 0", "queued"]
ALL_ACKED = [(0, 2000), (0, 2001), (0, 2002)]


@pytest.mark.parametrize("rebalance_ending", [False, True])
async def test_a_fetch_is_handled_and_acknowledged_when_no_rebalance_began_since(
    rebalance_ending: bool,
) -> None:
    # Faust keeps app.rebalancing set until recovery is over, while fetches already flow
    # after its seek: dropping their states then, with no seek to follow, would leave a
    # hole that the next fetch makes permanent
    consumer = Consumer({TP("touchpoints", 0)})
    consumer.app.rebalancing = rebalance_ending
    assert await _deliver_fetch(consumer) == HANDLED
    assert consumer.acked == ALL_ACKED


@pytest.mark.parametrize("stays", [True, False])
async def test_a_fetch_taken_before_a_rebalance_not_yet_sought_is_dropped(stays: bool) -> None:
    # the partition stays ours or goes; if it stays it is sought back to the dropped
    # records, so they are read again whatever Faust's seek does
    after = {TP("touchpoints", 0)} if stays else {TP("touchpoints", 1)}
    consumer = Consumer({TP("touchpoints", 0)}, rebalance=after)
    from touchstream import metrics

    before = metrics.STALE_FETCHES_DROPPED._value.get()
    assert await _deliver_fetch(consumer) == []  # no output forwarded, no state written
    assert consumer.acked == []
    assert metrics.STALE_FETCHES_DROPPED._value.get() == before + 1
    assert consumer.asked == {TP("touchpoints", 0): 2000}  # the first dropped record


async def test_a_fetch_is_dropped_once_a_revocation_began_in_the_consumers_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # aiokafka's thread calls App.on_rebalance_start before the worker stops its flow: the
    # fetch would otherwise be handled, its states written while the partition may be
    # another worker's already
    consumer = Consumer({TP("touchpoints", 0)}, begun=True)
    with caplog.at_level("INFO", logger="touchstream.streams.delivery"):
        assert await _deliver_fetch(consumer) == []
    assert consumer.acked == []
    assert consumer.asked == {TP("touchpoints", 0): 2000}
    # the operator sees which records, and that they are read again
    assert "fetched before a rebalance: they are read again (touchpoints[0] 2000..2002)" in (
        caplog.text
    )
    assert "sought 1 partition(s) back to the records dropped" in caplog.text


async def test_a_fetch_of_another_generation_is_dropped_after_the_seek_too() -> None:
    consumer = Consumer({TP("touchpoints", 0)}, rebalance={TP("touchpoints", 0)}, seek_to=2003)
    assert await _deliver_fetch(consumer) == []
    assert consumer.acked == []
    assert consumer.asked == {TP("touchpoints", 0): 2000}  # read again, as duplicates


async def test_a_fetch_from_before_the_seek_of_an_assignment_is_dropped() -> None:
    # Faust resumes the partitions before it seeks them, so a fetch from the old position
    # (2000..) came in the new generation; the seek moved it back to 0, where it stays
    consumer = Consumer({TP("touchpoints", 0)}, seek_to=0)
    assert await _deliver_fetch(consumer) == []
    assert consumer.acked == []
    assert consumer.asked == {TP("touchpoints", 0): 2000}  # left at 0 by rewind_consumer


async def test_a_fetch_the_consumer_is_past_is_handled_even_if_a_seek_came_since() -> None:
    # records fetched after the seek (or below the committed offset): nothing reads them
    # again, so dropping them would lose them
    consumer = Consumer({TP("touchpoints", 0)}, seek_to=2003)
    assert await _deliver_fetch(consumer) == HANDLED
    assert consumer.acked == ALL_ACKED
    assert consumer.asked == {}


async def test_a_rebalance_begun_while_the_output_waited_for_the_broker_drops_the_states() -> None:
    # the late writes of docs/design/late-writes.md: the old owner's output was delivered
    # only once the broker was back, when its revocation had begun and another worker owned
    # the partition; its states would have landed after the new owner's
    consumer = Consumer({TP("touchpoints", 0)})

    class BrokerBackDuringRevocation(RecordingOutbox):
        async def flush(self, delivered: bool = False) -> None:
            if delivered:  # the revocation begins: Faust's App.on_rebalance_start
                consumer.app.rebalancing_count += 1
            await super().flush(delivered)

    log = await _deliver_fetch(consumer, BrokerBackDuringRevocation)
    assert log == ["handled touchpoints[0] x3", "delivered", "states 0 dropped", "queued"]
    assert consumer.acked == []
    assert consumer.asked == {TP("touchpoints", 0): 2000}


async def test_records_fetched_while_the_assignments_seek_is_under_way_are_read_again() -> None:
    # The broker-kill failure: Faust resumes an assignment's partitions, then seeks them one
    # after another as their committed offsets come back. A partition sought already was
    # fetched (901..1029), dropped while the seek of the others went on, and read next from
    # 1030: those records were lost. A drop now seeks the partition back to them.
    consumer = Consumer({TP("touchpoints", 0)})
    consumer.app.consumer_generation_id = 2  # assigned, recovered, its seek not over
    consumer.app.rebalancing_count = 2
    assert await _deliver_fetch(consumer, generation=2) == []
    assert consumer.acked == []
    assert consumer.positions[TP("touchpoints", 0)] == 2000  # the next fetch reads them
    consumer.seeks += 2  # the seek ends
    consumer.sought_generation, consumer.sought_rebalances = 2, 2
    assert await _deliver_fetch(consumer, generation=2) == HANDLED
    assert consumer.acked == ALL_ACKED


async def test_a_seek_faust_getmany_makes_in_the_drain_is_known_as_the_drains() -> None:
    # Faust's getmany seeks when a fetch comes back with flow stopped; that seek must not pass
    # for recovery's (streams/transport.py, Consumer.perform_seek reads IN_DRAIN)
    import asyncio

    from touchstream.streams.delivery import IN_DRAIN, Routes, drain

    seen: list[bool] = []

    class Stopping:
        def __init__(self) -> None:
            self._stopped = asyncio.Event()

    fetcher = Stopping()

    class DrainedConsumer(Stopping):
        callback = None
        should_stop = False
        consumer_stopped_errors = ()
        seeks = 0
        _read_offset: dict[Any, int] = {}

        def __init__(self) -> None:
            super().__init__()
            self.app = App()
            self.app.topics = self  # type: ignore[attr-defined]

        def acks_enabled_for(self, topic: str) -> bool:
            return True

        async def sleep(self, seconds: float) -> None:
            await asyncio.sleep(seconds)

        async def getmany(self, timeout: float) -> Any:
            seen.append(IN_DRAIN.get())  # where Faust's getmany calls perform_seek
            fetcher._stopped.set()
            return
            yield

    # in a task of its own, as Faust's Fetcher service runs it
    await asyncio.ensure_future(drain(DrainedConsumer(), fetcher, Routes()))
    assert seen == [True]
    assert IN_DRAIN.get() is False  # recovery's seeks run in other tasks: not flagged
