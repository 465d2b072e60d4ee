"""The per-customer stage: identity resolution and customer state, through the pure core.

The handler only moves bytes: it reads each record, lets ``domain.linking`` decide, keeps the
new state, queues the records the decision asks for and the profile that changed. The records
go to the outbox; the states go to the table once the fetch's output is delivered
(``streams.delivery.run_fetch``). It reaches the worker only through its ports
(``agents.ports.CustomerPorts``), which ``streams.topology`` wires.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from touchstream import metrics
from touchstream.agents.ports import CustomerPorts, ProfileSync
from touchstream.agents.publishers import publish
from touchstream.domain.linking import Step, handle
from touchstream.domain.privacy import unconfirmed
from touchstream.domain.profile import aliases
from touchstream.domain.records import Erased
from touchstream.domain.state import Stored
from touchstream.domain.timers import fire, next_due, stale_due
from touchstream.errors import TouchstreamError
from touchstream.streams import topics
from touchstream.streams.delivery import Finisher, Handler
from touchstream.streams.isolation import (
    EXTERNAL_KINDS,
    REASON,
    Failure,
    RecordFailed,
    TimerFailed,
    quarantine_record,
    timer_quarantine_record,
)
from touchstream.streams.timer_index import partition_for, resume_clock
from touchstream.tables.customers import StateCache, decode_state

log = logging.getLogger(__name__)


def make_customer_handler(p: CustomerPorts) -> Handler:
    """One partition's records of a fetch, in offset order; its states are written by the
    finisher it returns, once the fetch's output is delivered. A record that raises is parked
    on the quarantine topic, or halts its partition if internal (streams.isolation)."""
    unwritten: list[StateCache] = []  # states of this fetch not in the table yet
    undo = p.journal
    stage = Stage()  # the stage the record being handled is in, for its quarantine record
    source = p.source

    async def handle_batch(tp: Any, messages: list[Any]) -> Finisher:
        partition: int = tp.partition
        if p.timers.stale or p.timers.unbuilt():
            _rebuild_index(p, unwritten, partition)
        skip: dict[int, Failure] = {}
        timer_faults: dict[int, set[str]] = {}  # per record: customers whose timers raised
        parked_timers: list[tuple[Any, Failure]] = []
        # customers whose coalesced update raised or was over its limit: one update per record
        per_record: set[bytes] = set()
        while True:
            cache = StateCache(p.customers, p.live_states)
            unwritten.append(cache)
            mark, clock = p.mark(), p.timers.checkpoint(partition)
            undo.begin()
            try:
                coalescing = Coalescing(per_record)
                _apply_batch(p, cache, stage, partition, messages, skip, timer_faults, coalescing)
            except BaseException as error:
                # nothing of this run survives; the table still holds the batch's start
                undo.rollback()
                p.take_back(mark)
                p.timers.restore(partition, clock)
                unwritten.remove(cache)
                if isinstance(error, Recheck):
                    # customers whose last state of the batch raised in its projection or
                    # output, or whose update is over the limit only for standing for several
                    # records: the batch again, those customers with one update per record,
                    # which names the record at fault
                    per_record.update(error.keys)
                    continue
                if not isinstance(error, RecordFailed):
                    raise
                failure = error.failure
                # the record is named: its customer's updates coalesced again, without it
                per_record.discard(messages[failure.index].key)
                if failure.timer is not None:
                    per_record.discard(failure.timer.encode())
                    timer_faults.setdefault(failure.index, set()).add(failure.timer)
                    parked_timers.append((messages[failure.index], failure))
                elif failure.internal:
                    p.halt(tp, messages[failure.index].offset, failure.describe())
                    messages = messages[: failure.index]  # applied; nothing from it on
                else:
                    skip[failure.index] = failure
                continue
            undo.commit()
            break
        for index, failure in skip.items():
            _quarantine(p, source, messages[index], failure)
        for message, failure in parked_timers:
            if message.offset in {m.offset for m in messages}:  # not cut off by a halt
                _quarantine(p, source, message, failure)

        return WriteStates(cache, unwritten)

    return handle_batch


class WriteStates:
    """A batch's finisher: its states encoded while the broker acknowledges the fetch's output
    (``prepare``, streams.delivery), written to the table once it did."""

    __slots__ = ("cache", "unwritten")

    def __init__(self, cache: StateCache, unwritten: list[StateCache]) -> None:
        self.cache = cache
        self.unwritten = unwritten

    def prepare(self) -> None:
        self.cache.prepare()

    def __call__(self, delivered: bool) -> None:
        self.unwritten.remove(self.cache)
        if delivered:
            self.cache.flush()


def _quarantine(p: CustomerPorts, source: str, message: Any, failure: Failure) -> None:
    log.error(
        "record %s[%d]@%d raised in stage %s (%s): quarantined",
        source,
        message.partition,
        message.offset,
        failure.stage,
        failure.describe(),
        exc_info=failure.error,
    )
    metrics.QUARANTINED.labels(failure.stage, REASON).inc()
    if failure.timer is not None:
        record = timer_quarantine_record(message, source, failure.timer, failure.error)
        key = failure.timer.encode()
    else:
        record = quarantine_record(message, source, failure.stage, failure.error)
        key = message.key
    p.output.add(p.output.topic(topics.QUARANTINE), key, record)


class Stage:
    """Which stage the record being handled is in, for its quarantine record."""

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = "codec"


def _apply_batch(
    p: CustomerPorts,
    cache: StateCache,
    stage: Stage,
    partition: int,
    messages: list[Any],
    skip: dict[int, Any],
    timer_faults: dict[int, set[str]],
    coalescing: Coalescing | None = None,
) -> None:
    """Each record through the pure core, in offset order: its states into ``cache``, its
    output into the outbox. A record that raises stops the run with ``RecordFailed``.

    With ``coalescing``, each customer's profile is projected once, from its last state of
    the batch (``Coalesced``): one Redis write and one ``profiles.updates`` record naming every
    event it covers, not one per record. A customer whose projection then raises stops the run
    with ``Recheck``, and the batch runs again with that customer's updates per record."""
    rules = p.rules
    index = p.timers
    faults = p.faults
    tally = metrics.Tally()
    for position, message in enumerate(messages):
        if position in skip:
            continue
        kind: str | None = None
        stage.now = "codec"
        try:
            key: bytes = message.key
            msg = orjson.loads(message.value)
            kind = msg.get("k", "ev")
            if faults:
                faults.check("codec", msg.get("id"))
            wall = 0.0
            clock: int | None = None
            own: list[str] | None = None  # a command's: its own customer's timers only
            if kind == "tick":
                # an idle partition's clock moving on (docs/domain.md, "Idle fallback")
                clock = index.advance(partition, msg["at"])
            else:
                wall = time.time()
                if kind == "ev":  # timers due by the event's time fire before it is applied
                    clock = index.advance_event(partition, msg, int(wall * 1000))  # skew past rt
                    if clock is None:  # a command: docs/domain.md, "Event time and timers"
                        clock, own = index.command_time(msg, cache.get(key)), [key.decode()]
                    if clock is not None and clock < msg["at"]:  # a command's too: its timers
                        tally.inc(metrics.EVENT_TIME_CAPPED)
            if clock is not None:
                failed = timer_faults.get(position)
                _fire_due(p, cache, stage, tally, partition, clock, msg, coalescing, failed, own)
            if kind == "tick":
                continue
            stage.now = "codec"
            state = cache.get(key)
            stage.now = "core"
            step = handle(key.decode(), state, msg, rules)
            if faults:  # after the core changed the state in place: that must not survive
                faults.check("core" if kind in EXTERNAL_KINDS else "internal", msg.get("id"))
            _execute(p, cache, stage, tally, key, partition, step, msg, state, coalescing)
        except TimerFailed as exc:
            failure = Failure(position, "timer", exc.error, False, exc.customer_id)
            raise RecordFailed(failure) from exc.error
        except Exception as exc:
            internal = kind not in EXTERNAL_KINDS
            raise RecordFailed(Failure(position, stage.now, exc, internal)) from exc
        if "rt" in msg and not (step.forwarded or step.duplicate or step.dropped):
            tally.inc(metrics.EVENTS_APPLIED, msg["type"])
            tally.observe(metrics.DECISION_LATENCY, max(wall - msg["rt"] / 1000, 0.0))
            tally.observe(metrics.EVENT_TIME_LAG, max(wall - msg["at"] / 1000, 0.0))
    if coalescing is not None:
        unsent: set[bytes] = set()  # all of them at once: one re-run, however many they are
        for key, last in coalescing.states.items():  # in the order of their last change
            try:
                _project(p, stage, tally, key, last)
            except Exception:  # (what it did is undone with the run)
                unsent.add(key)
        if unsent:
            raise Recheck(unsent)
    tally.apply()


class Recheck(TouchstreamError):
    """Customers' coalesced profile updates raised or are over their limit: the batch runs
    again with one update per record for those customers (``keys``)."""

    def __init__(self, keys: set[bytes]) -> None:
        super().__init__(f"coalesced profile updates of {len(keys)} customers")
        self.keys = keys


class Coalesced:
    """A customer's last state of the batch, how many records changed it and the events its
    profile update is after (ids, oldest first, each once; a timer's record has none)."""

    __slots__ = ("events", "identifiers_changed", "records", "state")

    def __init__(self, state: Stored, identifiers_changed: bool, event_id: str) -> None:
        self.state = state
        self.identifiers_changed = identifiers_changed
        self.events = [event_id] if event_id else []
        self.records = 1

    def add(self, state: Stored, identifiers_changed: bool, event_id: str) -> None:
        self.state = state
        self.identifiers_changed = self.identifiers_changed or identifiers_changed
        if event_id and event_id not in self.events:
            self.events.append(event_id)
        self.records += 1


class Coalescing:
    """The batch run's ``Coalesced`` per customer, in the order of their last change; the
    customers of ``per_record`` get one update per record instead."""

    __slots__ = ("per_record", "states")

    def __init__(self, per_record: set[bytes]) -> None:
        self.states: dict[bytes, Coalesced] = {}
        self.per_record = per_record


def _fire_due(
    p: CustomerPorts,
    cache: StateCache,
    stage: Stage,
    tally: metrics.Tally,
    partition: int,
    clock: int,
    msg: dict[str, Any],
    coalescing: Coalescing | None,
    failed: set[str] | None = None,
    customers: list[str] | None = None,
) -> None:
    """Each customer's due timers (of the customers the index names, or of ``customers``);
    one whose timers raise is reported as ``TimerFailed`` (the batch runs again leaving it
    out: ``failed``), not as the record's fault."""
    now = int(msg.get("ts", 0))
    faults = p.faults
    for customer_id in p.timers.due(partition) if customers is None else customers:
        if failed and customer_id in failed:
            continue  # its state unchanged; its entry is gone (or, if a command's, kept)
        try:
            ckey = customer_id.encode()
            old = cache.get(ckey)
            step = fire(customer_id, old, clock, now, p.rules)
            if faults:
                faults.check("timer", customer_id)
            if step.store is not None or step.delete:
                tally.inc(metrics.TIMERS_FIRED)
            p.timers.track(partition, stale_due(step, old, p.rules), customer_id)
            _execute(p, cache, stage, tally, ckey, partition, step, msg, old, coalescing)
        except Exception as exc:
            raise TimerFailed(customer_id, exc) from exc


def _execute(
    p: CustomerPorts,
    cache: StateCache,
    stage: Stage,
    tally: metrics.Tally,
    key: bytes,
    partition: int,
    step: Step,
    msg: dict[str, Any],
    before: Stored | None,
    coalescing: Coalescing | None = None,
) -> None:
    if step.dropped:
        tally.inc(metrics.ERASED_DROPPED, msg.get("k", "ev"))
        tally.inc(metrics.ERASURE_DROPS, step.dropped_reason or "in_flight")
        return
    marker = step.store if isinstance(step.store, Erased) else None
    erased = marker is not None
    if marker is not None and msg.get("k") == "confirm":  # Redis confirmed an erasure: its receipt
        cache.put(key, marker)
        for decision in step.decisions:
            publish(p.publishing, tally, decision)
        return
    if step.delete or erased:
        if coalescing is not None:  # its update would come after the removal: it never leaves
            coalescing.states.pop(key, None)
        gone = aliases(before) if before else []
        if msg.get("k") in ("drop", "forget"):  # a stale alias may still name this home
            gone.append((msg["via"][0], msg["via"][1]))
        if marker is not None:
            if marker.unconfirmed is not None:  # its receipt waits for Redis (privacy.confirm)
                bury(p.redis, key.decode(), marker, gone)
            else:
                p.redis.remove(key.decode(), gone, marker.version)
        else:  # an anonymous profile dropped: deleted, no tombstone (seen again, it starts anew)
            p.redis.remove(key.decode(), gone)
    stage.now = "core"
    if step.delete:
        cache.delete(key)
    elif step.store is not None:
        cache.put(key, step.store)
        p.timers.track(partition, next_due(step.store, p.rules), key.decode())
    stage.now = "output"
    for target, out in step.sends:
        if out.get("k") == "merge" and msg.get("k", "ev") == "ev":
            tally.inc(metrics.IDENTITY_LINKS)
        p.output.send(topics.CUSTOMER_EVENTS, target, out)
    if step.forwarded:
        tally.inc(metrics.FORWARDED, msg.get("k", "ev"))
        return
    if step.duplicate:
        tally.inc(metrics.DUPLICATES, "customer")
        return
    for _ in range(step.seen_evicted):
        tally.inc(metrics.SEEN_EVICTED)
    for decision in step.decisions:
        publish(p.publishing, tally, decision)
    if step.store is None or step.delete or step.profile_unchanged:
        return
    event_id = msg.get("id", "")
    # (an erasure's notice leaves at once)
    if coalescing is not None and not erased and key not in coalescing.per_record:
        last = coalescing.states.pop(key, None)  # put back last: flushed in order of last change
        if last is None:
            last = Coalesced(step.store, step.identifiers_changed, event_id)
        else:
            last.add(step.store, step.identifiers_changed, event_id)
        coalescing.states[key] = last
        return
    _project(p, stage, tally, key, Coalesced(step.store, step.identifiers_changed, event_id))


def _project(
    p: CustomerPorts,
    stage: Stage,
    tally: metrics.Tally,
    key: bytes,
    last: Coalesced,
) -> None:
    """The served profile of a customer's last state to Redis and ``profiles.updates``, saying
    which events it is the profile after (README, "Topics"). An update that stands for several
    records goes back to one per record (``Recheck``) if it is over the topic's limit only for
    that."""
    state, events = last.state, last.events
    stage.now = "projection"
    profile = p.profile_of(state)
    customer_id = key.decode()
    if profile is None:  # erased: downstream copies must go too
        assert isinstance(state, Erased)  # (domain.profile.view serves nothing else as None)
        notice = {"customer_id": customer_id, "erased": True, "version": state.version}
        p.output.send(topics.PROFILES_UPDATES, customer_id, notice)
        return
    new_aliases = aliases(state) if last.identifiers_changed else None
    p.redis.submit(profile["customer_id"], profile, new_aliases)
    faults = p.faults
    if faults:  # after the Redis write was queued: it must not survive
        for event_id in events:
            faults.check("projection", event_id)
    stage.now = "output"
    update = dict(
        profile,
        event_id=events[-1] if events else "",
        event_ids=events,
        events_covered=len(events),
    )
    name, value = p.output.topic(topics.PROFILES_UPDATES), orjson.dumps(update)
    if last.records > 1 and not p.fits(name, key, value):
        # over the topic's limit for standing for several records: one update per record
        # instead, so only one too large on its own goes to the DLQ (as without coalescing)
        raise Recheck({key})
    p.output.add(name, key, value)
    if faults:  # after the profile update was queued: it must not leave
        for event_id in events:
            faults.check("output", event_id)
    tally.inc(metrics.PROFILE_UPDATES)


def bury(redis: ProfileSync, customer_id: str, marker: Erased, gone: Any = ()) -> None:
    """Queue an erasure's Redis deletion (versioned tombstones of the profile and its
    identifiers' homes, its alias keys), its confirmation asked for (privacy.confirm)."""
    waiting = unconfirmed(marker)
    assert waiting is not None
    names = [(kind, value) for kind, value in waiting["aliases"]]
    names.extend(a for a in gone if a not in names)
    version, erased_at = marker.version, marker.erased_at
    redis.remove(customer_id, names, version, waiting["homes"], erased_at)


def _rebuild_index(p: CustomerPorts, unwritten: list[StateCache], partition: int) -> None:
    """The timer index from the table, as the fetch's states not written yet amend it: after
    an assignment, this batch's partition and one more of this worker's, each read key by key,
    never the whole table decoded at once (idle partitions get theirs before their ticks)."""
    index = p.timers
    partitions = p.partitions
    if index.stale:  # the first batch after an assignment: recovery changed the table
        p.live_states.clear()
        owned = p.owned_partitions() | {partition}
        planned: dict[int, list[bytes]] = {q: [] for q in owned}
        for key in p.customers:
            keys = planned.get(partition_for(key, partitions))
            if keys is not None:
                keys.append(key)
        index.plan(planned)
    todo = [q for q in index.unbuilt() if q != partition][:1]
    if not index.built(partition):
        todo.insert(0, partition)
    for q in todo:
        _load_partition(p, unwritten, q)


def _load_partition(p: CustomerPorts, unwritten: list[StateCache], partition: int) -> None:
    partitions = p.partitions
    amended: dict[bytes, Any] = {}
    for cache in unwritten:
        for key, state in cache.unwritten().items():  # None if deleted in this fetch
            if partition_for(key, partitions) == partition:
                amended[key] = state
    entries: list[tuple[int, str]] = []
    clock: int | None = None
    wall_ms = int(time.time() * 1000)

    def add(key: bytes, state: Stored | None) -> None:
        nonlocal clock
        if state is None:
            return
        if isinstance(state, Erased):
            if state.unconfirmed is not None:  # an erasure Redis has not confirmed: ask again
                bury(p.redis, key.decode(), state)
            return
        due = next_due(state, p.rules)
        if due is not None:
            entries.append((due, key.decode()))
        seen = resume_clock(state, p.timers.max_skew_ms, wall_ms)
        if seen is not None and (clock is None or seen > clock):
            clock = seen

    for key in p.timers.keys_of(partition):
        if key not in amended:
            add(key, decode_state(p.customers.get(key)))
    for key, state in amended.items():
        add(key, state)
    p.timers.load(partition, entries, clock, wall_ms)
