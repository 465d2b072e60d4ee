"""One profile update per customer per batch: Redis and ``profiles.updates`` get the customer's
last state of the batch once, naming every event it covers (agents/customer.py, README "Topics").
The customer stage runs on in-memory fakes of its ports (tests/unit/agents/fakes.py)."""

from __future__ import annotations

from typing import Any

import orjson

from tests.unit.agents.fakes import CUSTOMER, CustomerStage, Message, ingested, shop
from touchstream.streams import topics

IDENTITY_FIELDS = ("event_id", "event_ids", "events_covered")


def served(update: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in update.items() if k not in IDENTITY_FIELDS}


async def one_at_a_time(messages: list[Message]) -> list[dict[str, Any]]:
    """The updates of a worker that read the same records one fetch each."""
    stage = CustomerStage()
    for message in messages:
        await stage.run([message])
    return [v for _k, v in stage.of(topics.PROFILES_UPDATES)]


async def test_a_batch_sends_one_update_per_customer_naming_every_event() -> None:
    messages = await ingested(shop(3))
    stage = CustomerStage()
    await stage.run(messages)

    updates = stage.of(topics.PROFILES_UPDATES)
    assert [k for k, _v in updates] == [CUSTOMER]
    (update,) = (v for _k, v in updates)
    assert update["event_ids"] == ["e0", "e1", "e2"] and update["events_covered"] == 3
    assert update["event_id"] == "e2"
    # the profile after the last event, as one record at a time would have ended
    singles = await one_at_a_time(messages)
    assert [u["event_ids"] for u in singles] == [["e0"], ["e1"], ["e2"]]
    assert served(update) == served(singles[-1]) and update["orders"] == 3
    assert stage.redis.written == [CUSTOMER.decode()]  # one Redis write for the batch
    assert stage.redis.profiles[CUSTOMER.decode()] == served(update)


async def test_an_update_over_the_topic_limit_with_every_event_named_goes_one_per_record() -> None:
    messages = await ingested(shop(3))
    single = orjson.dumps((await one_at_a_time(messages))[-1])
    stage = CustomerStage()
    # the topic takes an update naming one event, not one naming all three
    stage.records.room = len(CUSTOMER) + len(single) + 8
    await stage.run(messages)

    updates = [v for _k, v in stage.of(topics.PROFILES_UPDATES)]
    assert [u["event_ids"] for u in updates] == [["e0"], ["e1"], ["e2"]]
    assert stage.records.oversized == []  # nothing set aside for the DLQ
    assert stage.of(topics.QUARANTINE) == []


async def test_an_erasure_in_the_batch_leaves_only_its_notice() -> None:
    """Purchases then an erasure of the same customer in one batch: no profile update of the
    erased data leaves, before or after the ``erased`` notice, and Redis gets no write of it."""
    messages = await ingested(shop(2))
    erasure = dict(orjson.loads(messages[0].value), type="erasure_requested", id="er-1")
    erasure.update(props={"request_id": "R-1"}, at=erasure["at"] + 10)
    erasure["in"] = [0, 2, *erasure["in"][2:]]
    batch = [*messages, messages[0]._replace(offset=2, value=orjson.dumps(erasure))]
    stage = CustomerStage()
    await stage.run(batch)

    updates = [v for _k, v in stage.of(topics.PROFILES_UPDATES)]
    assert [u.get("erased") for u in updates] == [True]
    assert stage.redis.written == []
    assert CUSTOMER.decode() not in stage.redis.profiles
