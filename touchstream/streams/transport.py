"""Faust's aiokafka transport: configurable fetch wait, optional end-offset probe.

faust-streaming 0.15 hard-codes ``fetch_max_wait_ms=1500`` for the worker's consumer
(faust/transport/drivers/aiokafka.py, ``_create_worker_consumer``). A broker that does not
answer a waiting fetch as soon as data arrives (the embedded tansu broker) then adds up to
1.5 s per hop, and the pipeline has two hops; Apache Kafka answers early and barely notices.

The embedded tansu 0.6 broker reports a partition's end offset as the base offset of its last
record batch + 1. Faust recovers a table by reading its changelog up to that end offset, so it
would stop short of the tail of the last batch and forget state. With ``probe_end_offsets`` the
worker reads the last batch once per recovered partition and takes its true end. Production
brokers report end offsets correctly and leave the probe off.

After an assignment, Faust seeks stream partitions to their committed offsets once the tables
are recovered, but aiokafka's ``seek_to_committed`` only moves when the committed offset is
> 0. A partition with nothing committed yet (a worker killed before its first commit) keeps
the position the fetcher reached while Faust discarded records of still-paused partitions,
and those records are never processed (faust-streaming#216, #221). Such partitions are sought
to their beginning explicitly.

The consumer's drain loop is ``streams.delivery.drain``: the topics of ``routes`` are handed to
their handlers a fetch at a time; before a commit, output not yet acknowledged by the broker holds it back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, GroupAuthorizationFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata
from faust.transport.drivers import aiokafka as faust_aiokafka

from touchstream.streams.delivery import AUTHORIZATION_ERRORS, IN_DRAIN, Routes, drain
from touchstream.streams.isolation import Faults

log = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 5.0


async def probe_end_offsets(bootstrap: str, reported: Mapping[Any, int]) -> dict[Any, int]:
    """True end offsets: one past the last record of the batch at ``reported - 1``."""
    todo = {tp: end for tp, end in reported.items() if end > 0}
    result = dict(reported)
    if not todo:
        return result
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await probe.start()
    try:
        tps = {TopicPartition(tp.topic, tp.partition): tp for tp in todo}
        probe.assign(list(tps))
        for ktp, tp in tps.items():
            probe.seek(ktp, todo[tp] - 1)
        waiting = set(tps)
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while waiting and time.monotonic() < deadline:
            batches = await probe.getmany(*waiting, timeout_ms=200)
            for ktp, records in batches.items():
                if records:
                    tp = tps[ktp]
                    result[tp] = max(result[tp], records[-1].offset + 1)
                    waiting.discard(ktp)
    finally:
        await probe.stop()
    return result


def _position(consumer: AIOKafkaConsumer | None, tp: Any) -> int | None:
    """aiokafka's position in ``tp``: None when not assigned, or when being reset."""
    subscription = consumer._subscription.subscription if consumer is not None else None
    assignment = subscription.assignment if subscription is not None else None
    if assignment is None:
        return None
    state = assignment.state_value(faust_aiokafka.ensure_aiokafka_TP(tp))
    if state is None or not state.has_valid_position:
        return None
    return int(state.position)


def rewind_consumer(consumer: AIOKafkaConsumer, offsets: Mapping[Any, int]) -> int:
    """Seek each partition of ``offsets`` that ``consumer`` holds back to its offset, where its
    position is past it; returns how many were. aiokafka drops what it had fetched ahead for a
    partition it seeks, so the next records of each are read from there."""
    rewound = 0
    for tp, offset in offsets.items():
        # no position: being reset from the committed offset, or, with none, from the earliest
        # (``consumer_auto_offset_reset``, streams/topology.py), so at or before the records
        position = _position(consumer, tp)
        if position is not None and position > offset:
            consumer.seek(faust_aiokafka.ensure_aiokafka_TP(tp), offset)
            rewound += 1
    return rewound


def _rejoin(coordinator: Any) -> None:
    """After a refused heartbeat aiokafka's coordinator re-raises the dead heartbeat task's
    error for ever and never joins again; a rejoin restarts the membership (and joining
    keeps being refused, and retried, until the group ACL is back)."""
    coordinator.request_rejoin()


def transport_for(
    app: faust.App,
    fetch_max_wait_ms: int,
    bootstrap: str,
    probe_end: bool,
    routes: Routes,
    faults: Faults | None = None,
) -> Any:
    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read once, in consumer.start()
            return consumer

        async def seek_to_committed(self) -> Any:
            return await self.call_thread(self._seek_to_committed_exactly)

        async def _seek_to_committed_exactly(self) -> Any:
            consumer = self._ensure_consumer()
            committed = await consumer.seek_to_committed()
            uncommitted = [tp for tp, offset in committed.items() if not offset]
            if uncommitted:
                await consumer.seek_to_beginning(*uncommitted)
            return committed

        async def rewind(self, offsets: Mapping[Any, int]) -> int:
            return int(await self.call_thread(self._rewind_now, offsets))

        async def _rewind_now(self, offsets: Mapping[Any, int]) -> int:
            # in the consumer's thread, so no seek of Faust's can come between the position
            # read and this seek: whichever comes second sees where the first left it
            return 0 if self._consumer is None else rewind_consumer(self._consumer, offsets)

        def take_group_errors(self) -> None:
            """aiokafka parks a group error (a refused heartbeat or join) until the
            consumer's ``getmany`` or ``commit`` raises it (``check_errors``,
            aio-libs/aiokafka#294), and its coordinator waits for that before it tries again. Faust reads records past ``getmany`` and stops
            fetching during a rebalance, so nothing took them: a refused join left the
            worker out of its group for good. Taken here, once per call: the retry pace."""
            if self._consumer is None:
                return
            coordinator = self._consumer._coordinator
            try:
                coordinator.check_errors()
            except AUTHORIZATION_ERRORS as exc:
                if isinstance(exc, GroupAuthorizationFailedError):
                    _rejoin(coordinator)
                if routes.refused is not None:
                    routes.refused("group", exc)
            except KafkaError as exc:  # what Faust never saw before either; the group retries
                self.log.warning("Consumer group error: %r", exc)

        async def _commit(self, offsets: Any) -> bool:
            """Faust's ``AIOKafkaConsumerThread._commit``, except that a refused group or
            topic does not crash the worker (Faust crashes on any commit error): the offsets
            stay where they were and the next commit tries again."""
            consumer = self._ensure_consumer()
            now = time.monotonic()
            committable = {tp: o for tp, o in offsets.items() if tp in self.assignment()}
            try:
                self.tp_last_committed_at.update({tp: now for tp in committable})
                await consumer.commit(
                    {
                        faust_aiokafka.ensure_aiokafka_TP(tp): OffsetAndMetadata(offset, "")
                        for tp, offset in committable.items()
                    }
                )
            except AUTHORIZATION_ERRORS as exc:
                return self._refused_commit(consumer, exc)
            except CommitFailedError as exc:
                if "already rebalanced" in str(exc):
                    return False
                self.log.exception("Committing raised exception: %r", exc)
                await self.crash(exc)
                return False
            except Exception as exc:
                self.log.exception("Got exception: %r", exc)
                await self.crash(exc)
                return False
            return True

        def _refused_commit(self, consumer: Any, exc: BaseException) -> bool:
            if isinstance(exc, GroupAuthorizationFailedError):
                _rejoin(consumer._coordinator)
            if routes.refused is not None:
                routes.refused("commit", exc)
            return False

        async def _highwaters(self, partitions: Any) -> Any:
            reported = await super()._highwaters(partitions)
            if not probe_end or self.consumer.in_transaction:
                return reported
            return await probe_end_offsets(bootstrap, reported)

    class Consumer(faust_aiokafka.Consumer):
        # counts each seek's start and end (streams.delivery: a fetch taken before a seek is
        # stale); Faust's recovery seeks every partition to its committed offset at each
        # assignment, and ``sought_generation`` says for which generation it last did
        seeks = 0
        sought_generation: int | None = None
        # ``app.rebalancing_count`` when the last seek began: another count, and a rebalance
        # began since, whose seek is still to come
        sought_rebalances = 0
        # recovery's perform_seek calls begun: one sets the above only if begun after the
        # one that last did
        _seeks_begun = 0
        _seek_recorded = 0

        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        async def perform_seek(self) -> None:
            generation = self.app.consumer_generation_id
            rebalances = self.app.rebalancing_count
            # Faust's getmany seeks too, in the drain's task, when a fetch comes back with
            # flow stopped: a rebalance began, and the seek that ends it (recovery's, once
            # the tables are read) is still to come. Recorded, a getmany seek made after the
            # new generation was assigned let the drain handle the fetches taken while
            # recovery resumed the partitions and sought them one by one (the joining/leaving
            # failure, docs/design/late-writes.md)
            recorded = not IN_DRAIN.get()
            if recorded:
                self._seeks_begun += 1
            begun = self._seeks_begun
            self.seeks += 1
            try:
                if recorded and faults is not None and faults.holds("seek", str(generation)):
                    log.warning("TOUCHSTREAM_FAULTS: generation %s's seek never ends", generation)
                    await asyncio.Event().wait()  # until recovery gives up and cancels it
                await super().perform_seek()
            finally:
                self.seeks += 1
            if not recorded:
                log.info(
                    "a fetch came back with flow stopped (generation %s, rebalance %s): sought "
                    "to the committed offsets; the drain waits for recovery's seek",
                    generation,
                    rebalances,
                )
            elif begun > self._seek_recorded:
                # a recovery seek still waiting for committed offsets can end after a newer
                # one, and must not record its older generation over the newer one
                self._seek_recorded = begun
                self.sought_generation = generation
                self.sought_rebalances = rebalances

        async def seek(self, partition: Any, offset: int) -> None:
            self.seeks += 1
            try:
                await super().seek(partition, offset)
            finally:
                self.seeks += 1

        def position_now(self, tp: Any) -> int | None:
            """The consumer's position in ``tp`` as it is now, without waiting (the consumer
            thread moves it; reading it is a few attribute reads): None when there is none,
            because ``tp`` is not assigned or its position is being reset."""
            return _position(getattr(self._thread, "_consumer", None), tp)

        async def rewind(self, offsets: Mapping[Any, int]) -> int:
            """Each partition of ``offsets`` still assigned sought back to its offset, where
            its position is past it (streams.delivery: records dropped unhandled); returns
            how many were."""
            thread: Any = self._thread
            if thread.should_stop:  # a call queued to a stopping thread is never run
                return 0
            return int(await thread.rewind(offsets))

        async def take_group_errors(self) -> None:
            thread: Any = self._thread
            await thread.call_thread(thread.take_group_errors)

        async def _drain_messages(self, fetcher: Any) -> None:
            await drain(self, fetcher, routes)

        async def wait_empty(self) -> None:
            await routes.settled()
            await super().wait_empty()

        async def _commit_offsets(self, offsets: Any, start_new_transaction: bool = True) -> bool:
            await self.app.producer.flush()
            if routes.outbox is not None:
                await routes.outbox.settled()
            return await super()._commit_offsets(offsets, start_new_transaction)

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport(app.conf.broker_consumer, app)
