"""One profile update per customer per batch: Redis and ``profiles.updates`` get the customer's
last state of the batch once, naming every event it covers (agents/customer.py, README "Topics")."""

from __future__ import annotations

from typing import Any

import orjson

from tests.unit.agents.test_isolation import (
    CUSTOMER,
    Message,
    ingested,
    run_customer,
    shop,
    taken,
    topology,
)
from touchstream.streams import topics

IDENTITY_FIELDS = ("event_id", "event_ids", "events_covered")


def served(update: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in update.items() if k not in IDENTITY_FIELDS}


async def one_at_a_time(messages: list[Message]) -> list[dict[str, Any]]:
    """The updates of a worker that read the same records one fetch each."""
    t = topology()
    for message in messages:
        await run_customer(t, [message])
    return [v for _k, v in taken(t, topics.PROFILES_UPDATES)]


async def test_a_batch_sends_one_update_per_customer_naming_every_event() -> None:
    messages = await ingested(shop(3))
    t = topology()
    await run_customer(t, messages)

    updates = taken(t, topics.PROFILES_UPDATES)
    assert [k for k, _v in updates] == [CUSTOMER]
    (update,) = (v for _k, v in updates)
    assert update["event_ids"] == ["e0", "e1", "e2"] and update["events_covered"] == 3
    assert update["event_id"] == "e2"
    # the profile after the last event, as one record at a time would have ended
    singles = await one_at_a_time(messages)
    assert [u["event_ids"] for u in singles] == [["e0"], ["e1"], ["e2"]]
    assert served(update) == served(singles[-1]) and update["orders"] == 3
    assert list(t.redis_sync._pending) == [CUSTOMER.decode()]


async def test_an_update_over_the_topic_limit_with_every_event_named_goes_one_per_record() -> None:
    messages = await ingested(shop(3))
    single = orjson.dumps((await one_at_a_time(messages))[-1])
    t = topology()
    name = t.settings.topic(topics.PROFILES_UPDATES)
    # room for an update naming one event, not for one naming all three
    t.outbox.limits.rooms[name] = len(CUSTOMER) + len(single) + 8
    await run_customer(t, messages)

    updates = [v for _k, v in taken(t, topics.PROFILES_UPDATES)]
    assert [u["event_ids"] for u in updates] == [["e0"], ["e1"], ["e2"]]
    assert t.outbox._oversized == []  # nothing set aside for the DLQ
    assert taken(t, topics.QUARANTINE) == []
