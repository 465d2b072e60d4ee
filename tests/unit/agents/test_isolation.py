"""A record whose processing raises is quarantined, or halts its partition if internal; nothing
of it survives and the rest of its batch is applied once (the agents' handlers on a Topology
that is built but not started: tables in memory, output collected in the outbox)."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from tests.unit.agents.fakes import TP, Message
from touchstream.config.rules import load_rules
from touchstream.config.settings import load_settings
from touchstream.errors import ConfigError
from touchstream.schemas.dlq import replayable
from touchstream.simulator.factory import purchase
from touchstream.streams import topics
from touchstream.streams.delivery import partition_event
from touchstream.streams.topology import Topology
from touchstream.tables.customers import decode_state

NOW = 1_795_000_000_000
CUSTOMER = b"crm-1"


def topology(faults: str = "") -> Topology:
    settings = load_settings(
        {
            "TOUCHSTREAM_ENV": "development",
            "TOUCHSTREAM_FAULTS": faults,
            "TOUCHSTREAM_PARTITIONS": "1",
        }
    )
    t = Topology(settings, load_rules(None))
    # no broker here: the input topic's identity (streams.topic_identity) as if already asked
    t.topic_identities.known(t.touchpoints.get_topic_name(), "AAAAAAAAAAAAAAAAAAAAAA")
    return t


def taken(t: Topology, name: str) -> list[tuple[bytes | None, Any]]:
    """The records queued for topic ``name`` (taken out of the outbox)."""
    out = []
    for (topic, _partition), records in list(t.outbox._records.items()):
        if topic == t.settings.topic(name):
            out += [(k, orjson.loads(v) if v is not None else None) for k, v in records]
            del t.outbox._records[(topic, _partition)]
    return out


async def ingested(events: list[dict[str, Any]]) -> list[Message]:
    """The customer-events records ingest makes of ``events`` (offsets 0..n-1)."""
    t = topology()
    source = t.touchpoints.get_topic_name()
    inbound = [
        Message(source, 0, i, CUSTOMER, orjson.dumps(e), NOW / 1000) for i, e in enumerate(events)
    ]
    with partition_event(inbound[-1]):
        await t.routes.handlers[source](TP(source, 0), inbound)
    target = t.customer_events.get_topic_name()
    return [
        Message(target, 0, i, key, orjson.dumps(value), NOW / 1000)
        for i, (key, value) in enumerate(taken(t, topics.CUSTOMER_EVENTS))
    ]


async def run_customer(t: Topology, messages: list[Message]) -> None:
    topic = t.customer_events.get_topic_name()
    t.timers.stale = False
    with partition_event(messages[-1]):
        finish = await t.routes.handlers[topic](TP(topic, 0), messages)
        assert finish is not None
        finish(True)


def shop(n: int) -> list[dict[str, Any]]:
    identity = {"customer_id": CUSTOMER.decode()}
    return [
        purchase(identity, f"o-{i}", 1000 * (i + 1), event_id=f"e{i}", occurred_at=NOW + i)
        for i in range(n)
    ]


def observable(t: Topology) -> dict[str, Any]:
    """What a user of the worker sees: the state, the Redis writes queued, the outputs."""
    return {
        "state": decode_state(t.customers.get(CUSTOMER)),
        "redis": {k: v[:2] for k, v in t.redis_sync._pending.items()},
        "updates": [v for _k, v in taken(t, topics.PROFILES_UPDATES)],
        "loyalty": [v for _k, v in taken(t, topics.LOYALTY_OUTCOMES)],
        "ledger": sorted(map(repr, t.ledger.monthly.items())),
        "timers": len(t.timers),
    }


@pytest.mark.parametrize("stage", ["codec", "core", "projection", "output"])
async def test_a_record_raising_in_any_stage_is_quarantined_and_leaves_nothing(
    stage: str,
) -> None:
    messages = await ingested(shop(3))
    faulty = topology(f"{stage}:e1")
    await run_customer(faulty, messages)
    quarantined = taken(faulty, topics.QUARANTINE)
    # the same records without e1, at the same offsets, in a worker without faults
    oracle = topology()
    await run_customer(oracle, [messages[0], messages[2]])

    expected = observable(oracle)
    assert expected["state"]["orders"] and expected["redis"]
    # one profile update for the batch, after both events (coalesced per customer)
    assert [(u["event_ids"], u["events_covered"]) for u in expected["updates"]] == [
        (["e0", "e2"], 2)
    ]
    assert expected["loyalty"] and expected["ledger"]
    assert observable(faulty) == expected
    assert [
        (k, q["topic"], q["partition"], q["offset"], q["reason"], q["stage"])
        for k, q in quarantined
    ] == [(CUSTOMER, "touchstream.customer-events", 0, 1, "processing_failed", stage)]
    assert quarantined[0][1]["exception_type"] == "InjectedFault"
    assert base64.b64decode(quarantined[0][1]["value_b64"]) == messages[1].value


async def test_a_core_fault_after_the_state_changed_in_place_leaves_no_trace() -> None:
    """Each record of the batch touches the same state, the faulty one in the middle."""
    messages = await ingested(shop(5))
    faulty = topology("core:e2")
    await run_customer(faulty, messages)
    state = decode_state(faulty.customers.get(CUSTOMER))
    assert state is not None
    assert sorted(state["orders"]) == ["o-0", "o-1", "o-3", "o-4"]
    assert len(taken(faulty, topics.QUARANTINE)) == 1


async def test_ingest_raising_quarantines_instead_of_dead_lettering() -> None:
    t = topology("ingest:e1")
    source = t.touchpoints.get_topic_name()
    inbound = [
        Message(source, 0, i, CUSTOMER, orjson.dumps(e), NOW / 1000) for i, e in enumerate(shop(3))
    ]
    with partition_event(inbound[-1]):
        await t.routes.handlers[source](TP(source, 0), inbound)
    assert taken(t, topics.DLQ) == []
    quarantined = taken(t, topics.QUARANTINE)
    assert [(q["offset"], q["stage"], q["reason"]) for _k, q in quarantined] == [
        (1, "ingest", "processing_failed")
    ]
    assert [v["id"] for _k, v in taken(t, topics.CUSTOMER_EVENTS)] == ["e0", "e2"]


async def test_an_internal_record_that_raises_halts_its_partition_not_parked() -> None:
    messages = await ingested(shop(3))
    # a fold whose state is not a state: the core raises on it
    fold = orjson.dumps({"k": "fold", "state": {"bogus": 1}, "at": NOW, "id": "x", "ts": NOW})
    topic = messages[0].topic
    batch = [messages[0], Message(topic, 0, 1, CUSTOMER, fold, None)]
    batch += [m._replace(offset=m.offset + 1) for m in messages[1:]]
    t = topology()
    await run_customer(t, batch)
    assert taken(t, topics.QUARANTINE) == []
    assert t.routes.halted == {TP(topic, 0): 1}
    assert not t.ready()
    state = decode_state(t.customers.get(CUSTOMER))
    assert state is not None
    assert sorted(state["orders"]) == ["o-0"]  # before the failed record only


def test_a_fault_plan_naming_no_known_stage_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="TOUCHSTREAM_FAULTS"):
        load_settings({"TOUCHSTREAM_ENV": "development", "TOUCHSTREAM_FAULTS": "kore:e1"})


async def test_timers_that_raise_are_parked_without_blaming_the_record_that_fired_them() -> None:
    messages = await ingested(shop(2))
    t = topology("timer:crm-1")
    await run_customer(t, messages)
    before = t.customers.get(CUSTOMER)
    assert len(t.timers) > 0  # the shopper has timers pending (tiers, RFM, ...)
    taken(t, topics.PROFILES_UPDATES)
    later = NOW + 400 * 24 * 3600 * 1000  # past every timer
    tick = orjson.dumps({"k": "tick", "at": later, "ts": later})
    topic = messages[0].topic
    await run_customer(t, [Message(topic, 0, 2, b"~tick", tick, None)])

    (parked,) = [q for _k, q in taken(t, topics.QUARANTINE)]
    assert (parked["stage"], parked["customer_id"], parked["offset"]) == ("timer", "crm-1", 2)
    assert parked["replayable"] is False and not replayable(parked)
    assert t.customers.get(CUSTOMER) == before  # nothing of the firing survived
    assert t.timers.clock(0) == later  # the tick itself was applied
    assert taken(t, topics.PROFILES_UPDATES) == []
    assert not t.routes.halted
