"""The customer stage (agents/customer.py) on in-memory fakes of its ports (agents/ports.py):
what it stores, serves, sends and parks for the records of a fetch, with no Kafka, Redis or
Faust app (tests/unit/agents/fakes.py)."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from tests.unit.agents.fakes import NOW, SHOPPER, CustomerStage, Message, ingested, shop
from touchstream import metrics
from touchstream.domain.clock import iso
from touchstream.domain.customer import new_state
from touchstream.domain.linking import redirect
from touchstream.domain.records import Erased, json_default
from touchstream.simulator.factory import event
from touchstream.streams import topics
from touchstream.tables import state_codec

KEY = b"crm-1"
IDENTITY_FIELDS = ("event_id", "event_ids", "events_covered")


def served(update: dict[str, Any]) -> dict[str, Any]:
    """A profile update as Redis serves it: without the events it names."""
    return {k: v for k, v in update.items() if k not in IDENTITY_FIELDS}


async def test_events_applied_are_stored_served_in_redis_and_sent_as_one_profile_update() -> None:
    stage = CustomerStage()
    await stage.run(await ingested(shop(2)))

    state = stage.state(KEY)
    assert state is not None and sorted(state["orders"]) == ["o-0", "o-1"]
    ((key, update),) = stage.of(topics.PROFILES_UPDATES)
    assert key == KEY
    assert (update["customer_id"], update["orders"], update["points"]) == ("crm-1", 2, 30)
    assert (update["event_ids"], update["events_covered"]) == (["e0", "e1"], 2)
    assert stage.redis.profiles == {"crm-1": served(update)}
    outcomes = [v["order_id"] for _k, v in stage.of(topics.LOYALTY_OUTCOMES)]
    assert outcomes == ["o-0", "o-1"]
    assert stage.ledger.recorded  # the month's points and spend counted
    assert stage.halted == {} and stage.of(topics.QUARANTINE) == []


async def test_a_poison_record_is_quarantined_and_the_next_record_of_its_partition_applies() -> (
    None
):
    messages = await ingested(shop(3))
    poison = orjson.loads(messages[1].value)
    poison["props"]["total_minor"] = "a lot"  # passed ingest somehow: the core raises on it
    batch = [messages[0], messages[1]._replace(value=orjson.dumps(poison)), messages[2]]
    stage = CustomerStage()
    await stage.run(batch)

    ((key, parked),) = stage.of(topics.QUARANTINE)
    assert key == KEY
    assert (parked["topic"], parked["offset"], parked["reason"]) == (
        topics.CUSTOMER_EVENTS,
        1,
        "processing_failed",
    )
    assert base64.b64decode(parked["value_b64"]) == batch[1].value  # replayable as it was
    # the records around it applied, once, and nothing of the poison survived
    state = stage.state(KEY)
    assert state is not None and sorted(state["orders"]) == ["o-0", "o-2"]
    ((_k, update),) = stage.of(topics.PROFILES_UPDATES)
    assert update["event_ids"] == ["e0", "e2"] and update["orders"] == 2
    assert stage.redis.profiles["crm-1"]["orders"] == 2
    assert [v["order_id"] for _k, v in stage.of(topics.LOYALTY_OUTCOMES)] == ["o-0", "o-2"]
    assert stage.halted == {}


async def test_an_event_for_a_merged_home_is_forwarded_to_its_survivor() -> None:
    stage = CustomerStage()
    merged = redirect(new_state("crm-1", at=NOW - 1000), "crm-9")
    stage.table[KEY] = state_codec.encode(merged)
    (message,) = await ingested(shop(1))
    await stage.run([message])

    ((key, forwarded),) = stage.of(topics.CUSTOMER_EVENTS)
    assert key == b"crm-9"
    assert (forwarded["id"], forwarded["props"]["order_id"]) == ("e0", "o-0")
    # nothing applied where it arrived: no state change, no profile, no output
    assert stage.state(KEY) == merged
    assert stage.of(topics.PROFILES_UPDATES) == [] and stage.redis.profiles == {}
    assert stage.of(topics.LOYALTY_OUTCOMES) == []


async def test_an_erasure_sends_its_notice_and_removes_the_profile_from_redis() -> None:
    stage = CustomerStage()
    await stage.run(await ingested(shop(2)))
    stage.records.added.clear()
    assert stage.redis.written == ["crm-1"] and "crm-1" in stage.redis.profiles
    stage.redis.written.clear()
    erasure = event("erasure_requested", SHOPPER, {"request_id": "R-1"}, occurred_at=NOW + 10)
    (message,) = await ingested([erasure], privileged=True)
    await stage.run([message._replace(offset=2)])

    assert stage.of(topics.PROFILES_UPDATES) == [
        (KEY, {"customer_id": "crm-1", "erased": True, "version": 3})
    ]
    assert stage.redis.written == []  # no data of the customer written again
    assert "crm-1" not in stage.redis.profiles
    ((customer_id, _version, erased_at),) = stage.redis.removed
    assert customer_id == "crm-1" and erased_at is not None
    state = stage.state(KEY)
    assert isinstance(state, Erased)  # the marker: nothing of the customer
    assert stage.activity.erased == ["crm-1"] and stage.ledger.erased == ["crm-1"]
    assert stage.of(topics.PRIVACY_RECEIPTS) == []  # the receipt waits for Redis's confirmation


async def test_a_halted_partition_keeps_what_came_before_the_failed_internal_record() -> None:
    messages = await ingested(shop(2))
    # a fold whose state is not a state: an internal record the core raises on
    fold = {"k": "fold", "state": {"bogus": 1}, "at": NOW, "id": "x", "ts": NOW}
    topic = messages[0].topic
    batch = [
        messages[0],
        Message(topic, 0, 1, KEY, orjson.dumps(fold), None),
        messages[1]._replace(offset=2),
    ]
    stage = CustomerStage()
    await stage.run(batch)

    assert [(tp.partition, offset) for tp, offset in stage.halted.items()] == [(0, 1)]
    assert stage.of(topics.QUARANTINE) == []  # an internal record is never parked
    state = stage.state(KEY)
    assert state is not None and sorted(state["orders"]) == ["o-0"]


async def test_a_link_reserved_sends_no_profile_update_and_its_fold_sends_one() -> None:
    """A merge from a weaker profile only reserves its identifiers until its fold arrives: the
    reservation is stored, but the served profile is the same, so nothing goes to Redis or to
    profiles.updates for it (each such update repeated the last one). The fold is served."""
    stage = CustomerStage()
    await stage.run(await ingested(shop(2)))
    before = stage.state(KEY)
    assert before is not None
    stage.records.added.clear()
    stage.redis.written.clear()
    cause = {"at": NOW + 5, "id": "e9", "ts": NOW + 5}
    weaker = [before["rank"][0] + 1, NOW, "dev-1"]  # a weaker kind of identifier
    pids = {"device_id": ["d-1"]}
    merge = {"k": "merge", "peer": "dev-1", "prank": weaker, "pids": pids, "via": None, **cause}
    await stage.run([Message(topics.CUSTOMER_EVENTS, 0, 2, KEY, orjson.dumps(merge), 0.0)])

    reserved = stage.state(KEY)
    assert reserved is not None and reserved["pending"] == {"dev-1": pids}  # stored
    ((peer, absorb),) = stage.of(topics.CUSTOMER_EVENTS)
    assert (peer, absorb["k"], absorb["into"]) == (b"dev-1", "absorb", "crm-1")
    assert stage.of(topics.PROFILES_UPDATES) == [] and stage.redis.written == []

    loser = dict(new_state("dev-1", "device_id", "d-1", NOW), version=1)
    fold = {"k": "fold", "state": loser, **cause}
    await stage.run(
        [Message(topics.CUSTOMER_EVENTS, 0, 3, KEY, orjson.dumps(fold, default=json_default), 0.0)]
    )
    ((_k, update),) = stage.of(topics.PROFILES_UPDATES)
    assert update["customer_id"] == "crm-1" and update["version"] > before["version"]
    assert stage.redis.written == ["crm-1"]
    folded = stage.state(KEY)
    assert folded is not None and folded["pending"] == {}
    assert "d-1" in folded["identifiers"]["device_id"]


async def test_a_privileged_command_leaves_its_partition_s_clock_alone() -> None:
    """docs/domain.md, "Event time and timers": a consent grant from the privileged input is
    applied, and the partition's clock stays where the ordinary events put it."""
    (ordinary,) = await ingested(shop(1))
    later = NOW + 2 * 3_600_000
    grant = event(
        "consent_updated",
        {"customer_id": "crm-2"},
        {"purposes": {"email_marketing": True}},
        occurred_at=later,
    )
    (command,) = await ingested([grant], privileged=True)

    stage = CustomerStage()
    await stage.run([ordinary, command._replace(offset=1)])

    assert stage.timers.clock(0) == NOW  # the purchase's time, not the grant's
    assert stage.state(b"crm-2")["consent"]["email_marketing"].granted  # the grant applied
    assert stage.of(topics.SESSIONS) == []  # the buyer's visit is still open


async def test_a_privileged_command_first_fires_its_own_customer_s_timers_due_by_its_time() -> None:
    """docs/domain.md, "Event time and timers": the shopper's own grant, two hours after the
    purchase, closes the shopper's visit first (it ended 30 minutes after the purchase), as any
    event of theirs would, and still moves no clock."""
    (ordinary,) = await ingested(shop(1))
    later = NOW + 2 * 3_600_000
    grant = event(
        "consent_updated", SHOPPER, {"purposes": {"email_marketing": True}}, occurred_at=later
    )
    # its own inbound record, sent when it happened (the clock cap allows no more)
    (command,) = await ingested([grant], privileged=True, first=1, broker_ms=later)

    stage = CustomerStage()
    await stage.run([ordinary, command._replace(offset=1)])

    ((key, summary),) = stage.of(topics.SESSIONS)
    assert key == KEY and summary["converted"] is True
    assert (summary["start"], summary["end"]) == (iso(NOW), iso(NOW))  # its one event
    assert stage.timers.clock(0) == NOW
    assert stage.state(KEY)["consent"]["email_marketing"].granted


async def test_a_command_delivered_again_fires_no_timer() -> None:
    """At-least-once: the grant comes again after a late visit of the shopper opened a session
    that is due before the grant's time. The core skips the grant as applied, and its own
    customer's timers are not brought up to its time again: that session stays open."""
    later = NOW + 2 * 3_600_000
    (ordinary,) = await ingested(shop(1))
    grant = event(
        "consent_updated", SHOPPER, {"purposes": {"email_marketing": True}}, occurred_at=later
    )
    (command,) = await ingested([grant], privileged=True, first=1, broker_ms=later)
    visit = event("page_view", SHOPPER, {"url": "https://x.example/"}, occurred_at=NOW + 600_000)
    (late,) = await ingested([visit], first=2, broker_ms=later)

    stage = CustomerStage()
    await stage.run([ordinary, command._replace(offset=1), late._replace(offset=2)])
    assert len(stage.of(topics.SESSIONS)) == 1  # the purchase's visit, closed by the grant
    await stage.run([command._replace(offset=3)])

    assert len(stage.of(topics.SESSIONS)) == 1
    state = stage.state(KEY)
    assert state is not None and state["session"].page_views == 1  # the late visit, still open


async def test_a_command_dated_ahead_fires_its_own_timers_only_up_to_the_clock_cap() -> None:
    """docs/domain.md, "Event time and timers": a command's time counts for at most
    TOUCHSTREAM_MAX_CLOCK_SKEW_S (300 s) past its record's broker time, like an event's. A
    grant claiming to be two hours on, written to the broker a minute after the purchase, does
    not end the shopper's visit (due 30 minutes after the purchase)."""
    (ordinary,) = await ingested(shop(1))
    grant = event(
        "consent_updated",
        SHOPPER,
        {"purposes": {"email_marketing": True}},
        occurred_at=NOW + 2 * 3_600_000,
    )
    (command,) = await ingested([grant], privileged=True, first=1, broker_ms=NOW + 60_000)

    stage = CustomerStage()
    capped = metrics.EVENT_TIME_CAPPED._value.get()
    await stage.run([ordinary, command._replace(offset=1)])

    assert stage.of(topics.SESSIONS) == []
    state = stage.state(KEY)
    assert state is not None and state["consent"]["email_marketing"].granted
    assert state["session"].start == NOW  # the visit, still open
    # and counted where an SRE sees claimed times cut back (touchstream_event_time_capped_total)
    assert metrics.EVENT_TIME_CAPPED._value.get() == capped + 1
