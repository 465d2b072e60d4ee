"""The per-customer stage: identity resolution and customer state, through the pure core.

The agent only moves bytes: it reads the record, lets ``domain.linking.handle`` decide, writes
the table, sends the records the decision asks for, and publishes what changed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from touchstream import metrics
from touchstream.domain.clock import iso
from touchstream.domain.customer import Decision
from touchstream.domain.linking import handle
from touchstream.domain.profile import aliases, view
from touchstream.tables.customers import decode_state, encode_state

if TYPE_CHECKING:
    from touchstream.streams.topology import Topology


def make_customer_agent(t: Topology) -> Any:
    rules = t.rules
    table = t.customers
    send = t.customer_events.send

    async def customer_agent(stream: Any) -> None:
        async for event in stream.events():
            key: bytes = event.key
            msg = orjson.loads(event.value)
            step = handle(key.decode(), decode_state(table.get(key)), msg, rules)
            if step.store is not None:
                table[key] = encode_state(step.store)
            for target, out in step.sends:
                if out.get("k") == "merge" and msg.get("k", "ev") == "ev":
                    metrics.IDENTITY_LINKS.inc()
                await send(key=target.encode(), value=orjson.dumps(out))
            if step.forwarded:
                metrics.FORWARDED.labels(msg.get("k", "ev")).inc()
                continue
            if step.duplicate:
                metrics.DUPLICATES.labels("customer").inc()
                continue
            for decision in step.decisions:
                await _publish(t, decision)
            if step.store is None:
                continue
            profile = view(step.store, rules)
            new_aliases = aliases(step.store) if step.identifiers_changed else None
            t.redis_sync.submit(profile["customer_id"], profile, new_aliases)
            origin = msg.get("id", "")
            await t.profiles_updates.send(
                key=key, value=orjson.dumps(dict(profile, event_id=origin))
            )
            metrics.PROFILE_UPDATES.inc()
            if "rt" in msg:
                metrics.EVENTS_APPLIED.labels(msg["type"]).inc()
                metrics.DECISION_LATENCY.observe(max(time.time() - msg["rt"] / 1000, 0.0))

    return customer_agent


async def _publish(t: Topology, decision: Decision) -> None:
    payload = decision.payload
    if decision.kind == "merged":
        metrics.IDENTITY_MERGES.inc()
        record = {
            "survivor": payload["survivor"],
            "absorbed": payload["absorbed"],
            "identifiers": payload["identifiers"],
            "occurred_at": iso(payload["at"]),
            "event_id": payload["event_id"],
        }
        await t.profiles_merges.send(key=payload["survivor"].encode(), value=orjson.dumps(record))
    elif decision.kind == "link_refused":
        metrics.IDENTITY_REFUSALS.labels(payload["limit"]).inc()
        record = dict(payload, occurred_at=iso(payload.pop("at")))
        await t.identity_refusals.send(
            key=payload["customer_id"].encode(), value=orjson.dumps(record)
        )
