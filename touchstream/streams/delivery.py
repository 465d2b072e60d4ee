"""Batch delivery: each fetch of the routed topics handled as one unit.

Faust delivers record by record: per record the consumer awaits the conductor, which decodes
an event, puts it on the agent's queue, and the stream wakes, sets the current event, awaits
the agent body and acknowledges. Measured here, that machinery alone stops a worker near 10k
events/s whatever the agent does (issue 10). The topics registered in ``Routes`` skip it: this
drain loop (``Consumer._drain_messages``, a method of Faust's own consumer, replaced through
the transport's consumer class) gives each partition's records of one fetch to the handler,
then acknowledges them through ``Consumer.ack`` so that Faust's offset tracking, commits,
group membership, rebalances and table recovery stay Faust's. Every other topic (table
changelogs during recovery, anything unregistered) goes through Faust's per-record path.

A handler may return a finisher: what must wait until the batch's output is delivered (the
customer stage's states). The fetch's output is awaited once for all its partitions, then the
finishers run with ``True``: one broker round trip per fetch, not one per partition, which had
been over a third of the worker's wall time at moderate load (each of 8 partitions waiting in
turn). If the fetch fails first, they run with ``False`` and write nothing.

Handlers and finishers run with a current event set to their partition's record, so Faust
tables write their changelog to that partition, as they do inside an agent.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol, runtime_checkable

from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError
from faust.streams import _current_event

from touchstream import metrics
from touchstream.streams.outbox import Outbox

log = logging.getLogger(__name__)
Finisher = Callable[[bool], None]  # called with whether the fetch's output was delivered


@runtime_checkable
class Preparing(Protocol):
    """A finisher with work that does not wait for the delivery (encoding states): done while
    the broker acknowledges the fetch's output, which the event loop's thread would otherwise
    sit out. It must raise nothing; what it could not do, the finisher does."""

    def __call__(self, delivered: bool) -> None: ...

    def prepare(self) -> None: ...


Handler = Callable[[Any, list[Any]], Awaitable[Finisher | None]]
AUTHORIZATION_ERRORS = (GroupAuthorizationFailedError, TopicAuthorizationFailedError)
DENIED_BACKOFF_S = (0.5, 5.0)  # first and longest wait after the broker refused a fetch
SEND_TURNS = 4  # event loop turns given to the producer before a fetch's finishers prepare
SEEK_PENDING_PAUSE_S = 0.05  # after a fetch dropped whole because a seek is still to come
# True in the drain's task: a seek made there is the one Faust's ``getmany`` makes when it finds
# flow stopped (a rebalance began), not the seek that ends an assignment (streams/transport.py)
IN_DRAIN: ContextVar[bool] = ContextVar("touchstream_in_drain", default=False)


class BatchEvent:
    """The current event Faust tables read while a handler runs: only ``message`` is used."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, message: Any) -> None:
        self.message = message


class Routes:
    """Topic name -> batch handler, filled in once the topology built its agents."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.outbox: Outbox | None = None
        self.in_flight: asyncio.Future[bool] | None = None
        # told of each authorization error the consumer backs off from (streams.access_watch)
        self.refused: Callable[[str, BaseException], None] | None = None
        # asked when a routed partition hands back offsets below those already read: whether
        # its topic is another topic now (deleted and created again: streams.topic_identity)
        self.restarted: Callable[[Any], Awaitable[bool]] | None = None
        # partitions stopped on an internal record that raised (streams.isolation): the
        # offset of that record, nothing from it on is handled or acknowledged
        self.halted: dict[Any, int] = {}

    def halt(self, tp: Any, offset: int, why: str) -> None:
        """Stop ``tp`` at ``offset``: an internal record failed and must never be parked."""
        if tp in self.halted:
            return
        self.halted[tp] = offset
        metrics.PARTITION_HALTED.labels(tp.topic, str(tp.partition)).set(1)
        log.critical(
            "HALTED %s[%d] at offset %d: an internal record failed (%s). It is not parked "
            "(that would lose points or undo an erasure); the partition waits, not ready, "
            "until it is assigned again (docs/operations.md, TouchstreamPartitionHalted)",
            tp.topic,
            tp.partition,
            offset,
            why,
        )

    def resume_all(self, consumer: Any) -> None:
        """A new assignment: halted partitions are read again from their committed offset."""
        if self.halted and consumer is not None:
            consumer.resume_partitions(list(self.halted))
        for tp in self.halted:
            metrics.PARTITION_HALTED.labels(tp.topic, str(tp.partition)).set(0)
        self.halted.clear()

    def add(self, topic: str, handler: Handler) -> None:
        self.handlers[topic] = handler

    async def settled(self) -> None:
        """Returns once no batch is being handled (a revocation waits for it)."""
        batch = self.in_flight
        if batch is not None and not batch.done():
            await asyncio.wait([batch])


def stream_agent(handler: Handler, routes: Routes) -> Callable[[Any], Awaitable[None]]:
    """The Faust agent of a routed topic: it subscribes the topic (group membership, table
    co-partitioning); its records reach ``handler`` through ``drain`` and would only fall
    through to this stream if the consumer were not ours."""

    async def agent(stream: Any) -> None:
        async for event in stream.events():
            assert routes.outbox is not None
            await run_fetch([(handler, event.message.tp, [event.message])], routes.outbox)

    return agent


@contextmanager
def partition_event(message: Any) -> Iterator[None]:
    """Faust tables write to the changelog partition of the current event's record."""
    event = BatchEvent(message)
    token = _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        yield
    finally:
        _current_event.reset(token)


async def run_fetch(
    work: list[tuple[Handler, Any, list[Any]]],
    outbox: Outbox,
    current: Callable[[], bool] | None = None,
) -> bool:
    """Every partition's batch, then their output delivered at once, then their finishers.

    ``current`` is asked once the output is delivered: False (a rebalance began meanwhile)
    and the finishers write nothing, as if the output had failed. A worker whose session was
    lost while the broker was away finishes its fetch only once the broker is back, and by
    then another worker may own the partition and have written newer states: states written
    now would land after them on the changelog (docs/design/late-writes.md). The input is not
    acknowledged either, so the partition's owner reads it again. Returns whether the
    output was delivered and the finishers wrote their states."""
    finishers: list[tuple[Any, Finisher]] = []
    delivered = False
    try:
        for handler, tp, messages in work:
            with partition_event(messages[-1]):
                finish = await handler(tp, messages)
            if finish is not None:
                finishers.append((messages[-1], finish))
        # output first, state second: a crash in between replays the batch and sends the
        # output again (same ids); state written first would mark as done what never left
        delivering = asyncio.ensure_future(outbox.flush(delivered=bool(finishers)))
        try:
            if any(isinstance(finish, Preparing) for _, finish in finishers):
                # the output handed to the producer, then its sender task woken and its
                # request written (aiokafka 0.14: a turn each), so that the finishers' own
                # work overlaps the broker's round trip rather than delaying the request. A
                # request to a broker with one still in flight waits for it: no number of
                # turns can promise "sent", only make it likely.
                for _ in range(SEND_TURNS):
                    await asyncio.sleep(0)
                for _, finish in finishers:
                    if isinstance(finish, Preparing):
                        finish.prepare()
            await delivering
        except BaseException:
            delivering.cancel()  # (nothing if it is what raised)
            raise
        delivered = current is None or current()
        if not delivered:
            log.info(
                "a rebalance began while the output of a fetch was delivered: its states are"
                " not written, and its input is read again from the committed offset"
            )
    finally:
        for last, finish in finishers:
            with partition_event(last):
                finish(delivered)
    await outbox.flush()  # the states' changelog: Faust's commit waits for it
    return delivered


async def drain(consumer: Any, fetcher: Any, routes: Routes) -> None:
    """Faust's ``Consumer._drain_messages`` with registered topics handled a fetch at a time
    (faust/transport/consumer.py; its per-record path is kept for every other topic)."""
    callback = consumer.callback
    consumer_should_stop = consumer._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    read_offset = consumer._read_offset
    acks_enabled_for = consumer.app.topics.acks_enabled_for
    handlers = routes.handlers
    backoff = DENIED_BACKOFF_S[0]
    # in this task's context (Faust's Fetcher runs the drain in a task of its own) and in the
    # tasks it starts: recovery's seeks, in the Recovery service's tasks, do not see it
    IN_DRAIN.set(True)
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            await consumer.sleep(0)
            if consumer.should_stop:
                break
            batches: dict[Any, list[Any]] = defaultdict(list)
            # before the fetch: a seek after it makes it suspect (_current)
            seeks = consumer.seeks
            try:
                async for tp, message in consumer.getmany(timeout=1.0):
                    if tp.topic in handlers:
                        batches[tp].append(message)
                        continue
                    if not _fresh(consumer, tp, message.offset):
                        continue
                    await _mind_gap(consumer, tp, message.offset, acks_enabled_for)
                    await consumer.wait_first(callback(message), consumer.suspend_flow.wait())
                    read_offset[tp] = message.offset
            except AUTHORIZATION_ERRORS as exc:
                # Faust's fetcher would die with it (and the worker with it): wait and
                # fetch again, the ACL may come back; records handled so far are kept
                if routes.refused is not None:
                    routes.refused("fetch", exc)
                await consumer.sleep(backoff)
                backoff = min(backoff * 2, DENIED_BACKOFF_S[1])
            else:
                backoff = DENIED_BACKOFF_S[0]
            if batches:
                await _deliver(consumer, batches, routes, acks_enabled_for, seeks)
                await asyncio.sleep(0)  # let the web server, timers and Redis sync run
    except consumer.consumer_stopped_errors:
        if consumer.transport.app.should_stop:
            return
        raise
    except asyncio.CancelledError:
        if consumer.transport.app.should_stop:
            return
        raise


async def _deliver(
    consumer: Any,
    batches: dict[Any, list[Any]],
    routes: Routes,
    acks_enabled_for: Any,
    seeks: int,
) -> None:
    """Handle a fetch taken when the consumer had made ``seeks`` seeks (``Consumer.seeks``)."""
    dropped: list[tuple[Any, Any, list[Any]]] = []
    try:
        await _handle(consumer, batches, routes, acks_enabled_for, seeks, dropped)
    finally:
        if dropped and not consumer.should_stop:  # stopping: its thread may be gone
            # Every record dropped here is read again: its partition is sought back to it
            # (where still assigned and its position is past it; otherwise the next
            # assignment reads it from the committed offset). No seek of Faust's can be
            # counted on for that: at an assignment Faust resumes the partitions before it
            # seeks them, one after the other as their committed offsets come back, so a
            # partition sought already is fetched, and its records dropped, while the seek of
            # the others is still under way (a broker-kill run lost offsets 901..1029 so).
            rewound = await consumer.rewind({tp: m[0].offset for _, tp, m in dropped})
            if rewound:
                log.info("sought %d partition(s) back to the records dropped", rewound)
    if dropped and _seek_pending(consumer):
        # the seek is under way (recovery resumes flow to read the changelogs, before it
        # resumes the stream partitions and seeks them): fetching again at once would only
        # drop again
        await asyncio.sleep(SEEK_PENDING_PAUSE_S)


async def _handle(
    consumer: Any,
    batches: dict[Any, list[Any]],
    routes: Routes,
    acks_enabled_for: Any,
    seeks: int,
    dropped: list[tuple[Any, Any, list[Any]]],
) -> None:
    assigned = consumer.assignment()
    work = []
    halted = routes.halted
    for tp, messages in batches.items():
        if not _fresh(consumer, tp, messages[0].offset) and await _log_restarted(
            consumer, tp, routes
        ):
            _forget_log(consumer, tp)
        fresh = [m for m in messages if _fresh(consumer, tp, m.offset)]
        if tp in halted:
            fresh = []  # what was fetched before the pause took effect
        if fresh and tp in assigned:
            work.append((routes.handlers[tp.topic], tp, fresh))
    if not work:
        return
    assert routes.outbox is not None
    if not _stopped(consumer):  # else no need to wait: it is all dropped
        await consumer.app.flow_control.acquire()
    # From here to ``routes.in_flight`` nothing awaits: a revocation waits for the fetch in
    # flight (``wait_empty``), so what is checked here can change before the fetch is
    # registered only by a rebalance beginning in the consumer's thread, which ``current``
    # sees. The fetch itself always finishes (its output must not be cut in half).
    work, stale = _current(consumer, work, seeks)
    dropped.extend(stale)
    if not work:
        return
    app = consumer.app
    generation = app.consumer_generation_id

    def current() -> bool:
        # A rebalance begun and not sought yet drops the fetch's states and leaves its
        # records unacknowledged, to be read again. A worker whose session expired while the
        # broker was away finishes its fetch during its revocation, when the partition's
        # next owner may have recovered the table already: states written then land after
        # the owner's.
        return app.consumer_generation_id == generation and not _rebalance_pending(consumer)

    fetch = asyncio.ensure_future(run_fetch(work, routes.outbox, current))
    routes.in_flight = fetch
    if not await asyncio.shield(fetch) or not current() or not consumer.flow_active:
        dropped.extend(work)  # reassigned meanwhile: read again, as duplicates
        return
    assigned = consumer.assignment()
    for _handler, tp, fresh in work:
        if tp not in assigned:
            continue
        stop = halted.get(tp)
        if stop is not None:
            consumer.pause_partitions([tp])
            fresh = [m for m in fresh if m.offset < stop]
        for message in fresh:
            await _mind_gap(consumer, tp, message.offset, acks_enabled_for)
            consumer._read_offset[tp] = message.offset
            consumer.ack(message)
    commit_every = consumer._commit_every
    if commit_every is not None and consumer._n_acked >= commit_every:
        consumer._n_acked = 0
        await consumer.commit()


def _stopped(consumer: Any) -> bool:
    return bool(consumer.suspend_flow.is_set() or not consumer.flow_active)


def _seek_pending(consumer: Any) -> bool:
    """Flow stopped, or a rebalance not yet ended by its seek to the committed offsets."""
    return bool(
        _stopped(consumer)
        or consumer.sought_generation != consumer.app.consumer_generation_id
        or _rebalance_pending(consumer)
    )


def _rebalance_pending(consumer: Any) -> bool:
    """A rebalance began since the last seek: the seek it ends with is still to come."""
    return bool(consumer.app.rebalancing_count != consumer.sought_rebalances)


def _current(
    consumer: Any, work: list[tuple[Handler, Any, list[Any]]], seeks: int
) -> tuple[list[Any], list[Any]]:
    """The partitions of ``work`` still to handle once flow control let the fetch through,
    and those to drop (``_deliver`` seeks them back, so they are read again).

    A fetch taken before a rebalance and handled after it would forward a later run of an
    input partition before the earlier run that the seek to the committed offset replays (the
    customer stage's offset guard then drops the earlier one as duplicates), and write states
    to a table partition that may be another worker's by now. So nothing is handled:
    - while flow is stopped, or a rebalance began and its seek to the committed offsets is
      not done yet (Faust resumes an assignment's partitions before it seeks them:
      ``Recovery.on_recovery_completed``): Faust's own stream drops such records by their
      generation (faust-streaming#221, fixed in #223);
    - of a partition no longer assigned, or records of another generation;
    - of a fetch taken before a seek, where the partition's position is not past its records
      (the seek moved it back: they are read again from there). Records the position is
      past are handled, because nothing would read them again.
    """
    generation = consumer.app.consumer_generation_id
    if _seek_pending(consumer):
        _count_stale(work, "fetched before a rebalance")
        return [], work
    assigned = consumer.assignment()
    current: list[Any] = []
    stale: list[Any] = []
    for item in work:
        _, tp, messages = item
        ok = tp in assigned and messages[0].generation_id == generation
        (current if ok else stale).append(item)
    _count_stale(stale, "fetched before a rebalance")
    if consumer.seeks == seeks:
        return current, stale
    passed: list[Any] = []
    behind: list[Any] = []
    for item in current:
        _, tp, messages = item
        position = consumer.position_now(tp)
        ok = position is not None and position > messages[-1].offset
        (passed if ok else behind).append(item)
    _count_stale(behind, "fetched before a seek")
    return passed, stale + behind


def _count_stale(dropped: list[tuple[Any, Any, list[Any]]], why: str) -> None:
    if dropped:
        metrics.STALE_FETCHES_DROPPED.inc(len(dropped))
        log.info(
            "dropped the records of %d partition(s) %s: they are read again (%s)",
            len(dropped),
            why,
            ", ".join(
                f"{tp.topic}[{tp.partition}] {m[0].offset}..{m[-1].offset}" for _, tp, m in dropped
            ),
        )


async def _log_restarted(consumer: Any, tp: Any, routes: Routes) -> bool:
    """Offsets below those read: a stale fetch (dropped, as Faust does), or the first records
    of a topic deleted and created again under the same name, which the consumer reads from
    its start once its old position is out of range (they must be handled, not dropped)."""
    return routes.restarted is not None and await routes.restarted(tp)


def _forget_log(consumer: Any, tp: Any) -> None:
    """Faust's bookkeeping of the partition's old log dropped (what a revocation drops): the
    new log's records are read, acknowledged and committed from its first offset."""
    log.warning("%s[%d] is a new log (its topic was created again): reading it", *tp)
    consumer._read_offset.pop(tp, None)
    consumer._committed_offset.pop(tp, None)
    consumer._acked.pop(tp, None)
    consumer._acked_index.pop(tp, None)
    consumer._gap.pop(tp, None)


def _fresh(consumer: Any, tp: Any, offset: int) -> bool:
    seen = consumer._read_offset[tp]
    return seen is None or offset >= seen


async def _mind_gap(consumer: Any, tp: Any, offset: int, acks_enabled_for: Any) -> None:
    """Offsets Kafka skipped (compaction, transaction markers) count as acknowledged, or the
    committed offset would wait for them for ever (as Faust's own loop does)."""
    seen = consumer._read_offset[tp]
    if seen and offset - seen > 1 and acks_enabled_for(tp.topic):
        await consumer._add_gap(tp, seen + 1, offset)
