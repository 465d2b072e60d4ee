"""The per-customer stage: state in the customers table, updated through the pure core."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from touchstream import metrics
from touchstream.domain.customer import apply
from touchstream.domain.profile import project
from touchstream.tables.customers import decode_state, encode_state

if TYPE_CHECKING:
    from touchstream.streams.topology import Topology


def make_customer_agent(t: Topology) -> Any:
    rules = t.rules
    table = t.customers

    async def customer_agent(stream: Any) -> None:
        async for event in stream.events():
            key: bytes = event.key
            internal = orjson.loads(event.value)
            state = decode_state(table.get(key))
            outcome = apply(state, internal, rules)
            if outcome.duplicate:
                metrics.DUPLICATES.labels("customer").inc()
                if outcome.state is not state:  # only the dedup bookkeeping moved
                    table[key] = encode_state(outcome.state)
                continue
            table[key] = encode_state(outcome.state)
            metrics.EVENTS_APPLIED.labels(internal["type"]).inc()
            profile = project(outcome.state, rules)
            customer_id = profile["customer_id"]
            t.redis_sync.submit(customer_id, profile)
            update = dict(profile, event_id=internal["id"])
            await t.profiles_updates.send(key=key, value=orjson.dumps(update))
            metrics.PROFILE_UPDATES.inc()
            metrics.DECISION_LATENCY.observe(max(time.time() - internal["rt"] / 1000, 0.0))

    return customer_agent
