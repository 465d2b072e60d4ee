"""The per-customer stage: identity resolution and customer state, through the pure core.

The handler only moves bytes: it reads each record, lets ``domain.linking`` decide, keeps the
new state, queues the records the decision asks for and the profile that changed. The records
go to the outbox; the states go to the table once the fetch's output is delivered
(``streams.delivery.run_fetch``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from touchstream import metrics
from touchstream.domain import loyalty, privacy
from touchstream.domain.clock import iso
from touchstream.domain.customer import Decision
from touchstream.domain.linking import Step, handle, is_erased
from touchstream.domain.profile import aliases
from touchstream.domain.sessions import published
from touchstream.domain.timers import fire, next_due, pending
from touchstream.serving.keys import alias_key, profile_key
from touchstream.streams import topics
from touchstream.streams.delivery import Finisher, Handler
from touchstream.streams.timer_index import partition_for, resume_clock
from touchstream.tables.customers import StateCache, decode_state

if TYPE_CHECKING:
    from touchstream.streams.topology import Topology


def make_customer_handler(t: Topology) -> Handler:
    """One partition's records of a fetch, in offset order; its states are written by the
    finisher it returns, once the fetch's output is delivered."""
    unwritten: list[StateCache] = []  # states of this fetch not in the table yet

    async def handle_batch(tp: Any, messages: list[Any]) -> Finisher:
        partition: int = tp.partition
        cache = StateCache(t.customers, t.live_states)
        unwritten.append(cache)
        try:
            _apply_batch(t, cache, unwritten, partition, messages)
        except BaseException:
            unwritten.remove(cache)
            raise

        def write_states(delivered: bool) -> None:
            unwritten.remove(cache)
            if delivered:
                cache.flush()

        return write_states

    return handle_batch


def _apply_batch(
    t: Topology, cache: StateCache, unwritten: list[StateCache], partition: int, messages: list[Any]
) -> None:
    """Each record through the pure core, in offset order: its states into ``cache``, its
    output into the outbox."""
    rules = t.rules
    index = t.timers
    tally = metrics.Tally()
    if index.stale or index.unbuilt():
        _rebuild_index(t, unwritten, partition)
    for message in messages:
        key: bytes = message.key
        msg = orjson.loads(message.value)
        kind = msg.get("k", "ev")
        if kind == "tick":  # an idle partition's clock moving on (PRODUCT.md section 5)
            clock = index.advance(partition, msg["at"])
            _fire_due(t, cache, tally, partition, clock, msg)
            continue
        wall = time.time()
        if kind == "ev":  # timers due by the event's time fire before it is applied
            clock = index.advance_event(partition, msg, int(wall * 1000))  # at most skew past rt
            if clock < msg["at"]:
                tally.inc(metrics.EVENT_TIME_CAPPED)
            _fire_due(t, cache, tally, partition, clock, msg)
        state = cache.get(key)
        step = handle(key.decode(), state, msg, rules)
        _execute(t, cache, tally, key, partition, step, msg, state)
        if "rt" in msg and not (step.forwarded or step.duplicate or step.dropped):
            tally.inc(metrics.EVENTS_APPLIED, msg["type"])
            tally.observe(metrics.DECISION_LATENCY, max(wall - msg["rt"] / 1000, 0.0))
            tally.observe(metrics.EVENT_TIME_LAG, max(wall - msg["at"] / 1000, 0.0))
    tally.apply()


def _fire_due(
    t: Topology,
    cache: StateCache,
    tally: metrics.Tally,
    partition: int,
    clock: int,
    msg: dict[str, Any],
) -> None:
    now = int(msg.get("ts", 0))
    for customer_id in t.timers.due(partition):
        ckey = customer_id.encode()
        old = cache.get(ckey)
        step = fire(customer_id, old, clock, now, t.rules)
        if step.store is not None or step.delete:
            tally.inc(metrics.TIMERS_FIRED)
        _execute(t, cache, tally, ckey, partition, step, msg, old)


def _execute(
    t: Topology,
    cache: StateCache,
    tally: metrics.Tally,
    key: bytes,
    partition: int,
    step: Step,
    msg: dict[str, Any],
    before: dict[str, Any] | None,
) -> None:
    if step.dropped:
        tally.inc(metrics.ERASED_DROPPED, msg.get("k", "ev"))
        return
    erased = step.store is not None and is_erased(step.store)
    if step.delete or erased:
        gone = aliases(before) if before else []
        if msg.get("k") in ("drop", "forget"):  # a stale alias may still name this home
            gone.append((msg["via"][0], msg["via"][1]))
        t.redis_sync.remove(key.decode(), gone)
    if step.delete:
        cache.delete(key)
    elif step.store is not None:
        cache.put(key, step.store)
        due = next_due(step.store, t.rules)
        if due is not None:
            t.timers.track(partition, due, key.decode())
    for target, out in step.sends:
        if out.get("k") == "merge" and msg.get("k", "ev") == "ev":
            tally.inc(metrics.IDENTITY_LINKS)
        _send(t, topics.CUSTOMER_EVENTS, target, out)
    if step.forwarded:
        tally.inc(metrics.FORWARDED, msg.get("k", "ev"))
        return
    if step.duplicate:
        tally.inc(metrics.DUPLICATES, "customer")
        return
    for _ in range(step.seen_evicted):
        tally.inc(metrics.SEEN_EVICTED)
    for decision in step.decisions:
        _publish(t, tally, decision, before)
    if step.store is None or step.delete:
        return
    profile = t.profile_of(step.store)
    customer_id = key.decode()
    if profile is None:  # erased: downstream copies must go too
        notice = {"customer_id": customer_id, "erased": True, "version": step.store["version"]}
        _send(t, topics.PROFILES_UPDATES, customer_id, notice)
        return
    new_aliases = aliases(step.store) if step.identifiers_changed else None
    t.redis_sync.submit(profile["customer_id"], profile, new_aliases)
    update = dict(profile, event_id=msg.get("id", ""))
    _send(t, topics.PROFILES_UPDATES, customer_id, update)
    tally.inc(metrics.PROFILE_UPDATES)


def _rebuild_index(t: Topology, unwritten: list[StateCache], partition: int) -> None:
    """The timer index from the table, as the fetch's states not written yet amend it: after
    an assignment, this batch's partition and one more of this worker's, each read key by key,
    never the whole table decoded at once (idle partitions get theirs before their ticks)."""
    index = t.timers
    partitions = t.settings.partitions
    if index.stale:  # the first batch after an assignment: recovery changed the table
        t.live_states.clear()
        owned = t._owned_partitions() | {partition}
        planned: dict[int, list[bytes]] = {p: [] for p in owned}
        for key in t.customers:
            keys = planned.get(partition_for(key, partitions))
            if keys is not None:
                keys.append(key)
        index.plan(planned)
    todo = [p for p in index.unbuilt() if p != partition][:1]
    if not index.built(partition):
        todo.insert(0, partition)
    for p in todo:
        _load_partition(t, unwritten, p)


def _load_partition(t: Topology, unwritten: list[StateCache], partition: int) -> None:
    partitions = t.settings.partitions
    amended: dict[bytes, Any] = {}
    for cache in unwritten:
        for key, state in cache.unwritten().items():  # None if deleted in this fetch
            if partition_for(key, partitions) == partition:
                amended[key] = state
    entries: list[tuple[int, str]] = []
    clock: int | None = None
    wall_ms = int(time.time() * 1000)

    def add(key: bytes, state: dict[str, Any] | None) -> None:
        nonlocal clock
        if state is None:
            return
        due = next_due(state, t.rules)
        if due is not None:
            entries.append((due, key.decode()))
        seen = resume_clock(state, t.timers.max_skew_ms, wall_ms)
        if seen is not None and (clock is None or seen > clock):
            clock = seen

    for key in t.timers.keys_of(partition):
        if key not in amended:
            add(key, decode_state(t.customers.get(key)))
    for key, state in amended.items():
        add(key, state)
    t.timers.load(partition, entries, clock, wall_ms)


def _send(t: Topology, name: str, key: str, record: dict[str, Any]) -> None:
    t.outbox.add(t.settings.topic(name), key.encode(), orjson.dumps(record))


def _publish(
    t: Topology, tally: metrics.Tally, decision: Decision, before: dict[str, Any] | None
) -> None:
    payload = decision.payload
    if decision.kind == "merged":
        tally.inc(metrics.IDENTITY_MERGES)
        record = {
            "survivor": payload["survivor"],
            "absorbed": payload["absorbed"],
            "identifiers": payload["identifiers"],
            "occurred_at": iso(payload["at"]),
            "event_id": payload["event_id"],
        }
        _send(t, topics.PROFILES_MERGES, payload["survivor"], record)
    elif decision.kind == "link_refused":
        tally.inc(metrics.IDENTITY_REFUSALS, payload["limit"])
        record = {k: v for k, v in payload.items() if k != "at"}
        record["occurred_at"] = iso(payload["at"])
        _send(t, topics.IDENTITY_REFUSALS, payload["customer_id"], record)
    elif decision.kind == "trigger_out":
        tally.inc(metrics.TRIGGERS_EMITTED, payload["type"])
        _send(t, topics.TRIGGER_TOPICS[payload["type"]], payload["customer_id"], payload)
    elif decision.kind == "trigger_audit":
        tally.inc(metrics.TRIGGERS_SUPPRESSED, payload["type"], payload["suppressed_reason"])
        if payload["suppressed_reason"] != "duplicate":  # already delivered under this id
            _send(t, topics.TRIGGERS_AUDIT, payload["customer_id"], payload)
    elif decision.kind == "session_closed":
        tally.inc(metrics.SESSIONS_CLOSED, payload["channel"])
        _send(t, topics.SESSIONS, payload["customer_id"], published(payload))
        t.activity.record(payload)
    elif decision.kind == "loyalty":
        tally.inc(metrics.LOYALTY_OUTCOMES, payload["outcome"])
        if payload["outcome"] == "state_capped":
            tally.inc(metrics.STATE_CAPPED, payload["capped"])
        _send(t, topics.LOYALTY_OUTCOMES, payload["customer_id"], loyalty.published(payload))
        t.ledger.record(payload)
    elif decision.kind == "trigger_deferred":
        tally.inc(metrics.TRIGGERS_DEFERRED, payload["type"])
    elif decision.kind == "state_capped":  # a bound of the state that publishes nothing
        tally.inc(metrics.STATE_CAPPED, payload["capped"])
    elif decision.kind == "expired":
        tally.inc(metrics.ANONYMOUS_EXPIRED)
    elif decision.kind == "erased":
        tally.inc(metrics.ERASURES)
        customer_id = payload["customer_id"]
        t.activity.erase(customer_id)  # its windows live on this partition, under its id
        t.ledger.erase(customer_id)
        redis_keys = [profile_key(customer_id)]
        redis_keys += [alias_key(k, v) for k, v in (aliases(before) if before else [])]
        redis_keys += [profile_key(home) for home in payload["identifier_homes"]]
        receipt = {
            "request_id": payload["request_id"],
            "customer_id": customer_id,
            "completed_at": iso(int(time.time() * 1000)),
            "occurred_at": iso(payload["at"]),
            "removed": {
                "tables": {"customers": 1 + len(payload["identifier_homes"])},
                "redis_keys": redis_keys,
                "identifiers": payload["identifiers"],
                "orders": payload["orders"],
                "carts": payload["carts"],
                "timers": pending(before, t.rules),
            },
            "known_customer": payload["known"],
        }
        _send(t, topics.PRIVACY_RECEIPTS, customer_id, receipt)
    elif decision.kind == "export":
        tally.inc(metrics.ACCESS_EXPORTS)
        # numbered parts that each fit the topic's limit (README, "Access exports in parts")
        key = payload["customer_id"].encode()
        budget = t.outbox.limits.value_budget(
            t.settings.topic(topics.PRIVACY_EXPORTS), key, t.settings.producer_max_batch_bytes
        )
        for part in privacy.export_parts(payload, budget):
            _send(t, topics.PRIVACY_EXPORTS, payload["customer_id"], part)
