"""Ingest: decode and validate inbound records, send poison to the DLQ, re-key by customer.

A record whose handling raises (a bug, not the contract) goes to the quarantine topic
(streams.isolation) with the exception and its original bytes."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from touchstream import metrics
from touchstream.domain.privileged import refusal, requires_privilege
from touchstream.errors import PoisonEvent, PrivilegedOnPublicInput
from touchstream.schemas.decode import decode
from touchstream.schemas.dlq import message_record
from touchstream.streams import topics
from touchstream.streams.delivery import Finisher, Handler
from touchstream.streams.isolation import REASON, quarantine_record

if TYPE_CHECKING:
    from touchstream.streams.topology import Topology

log = logging.getLogger(__name__)


def make_ingest_handler(t: Topology, privileged: bool = False) -> Handler:
    """``privileged``: the handler of the privileged input (domain.privileged); on the
    ordinary input erasure, access, redemption and consent grants go to the DLQ."""
    max_bytes = t.settings.max_event_bytes
    ingest = t.ingest
    source_name = (t.privileged if privileged else t.touchpoints).get_topic_name()
    target = t.settings.topic(topics.CUSTOMER_EVENTS)
    outbox = t.outbox
    identities = t.topic_identities
    last_offsets: dict[Any, int] = {}
    faults = t.faults
    quarantine = t.settings.topic(topics.QUARANTINE)

    async def handle_batch(tp: Any, messages: list[Any]) -> Finisher | None:
        # the inbound topic's identity (streams.topic_identity), asked again when the
        # partition's offsets went backwards: a topic created again reads from 0
        if last_offsets.get(tp, -1) >= messages[0].offset:
            identities.forget(tp.topic)
        last_offsets[tp] = messages[-1].offset
        topic_id = identities.cached(tp.topic) or await identities.get(tp.topic)
        identities.stamp(tp, topic_id)
        now_ms = int(time.time() * 1000)
        tally = metrics.Tally()
        for message in messages:
            try:
                decoded = decode(message.value, max_bytes)
                if faults:
                    faults.check("ingest", decoded.get("event_id"))
                if not privileged and requires_privilege(decoded):
                    raise PrivilegedOnPublicInput(refusal(decoded))
                internal = ingest.normalise(
                    decoded, now_ms, message.partition, message.offset, topic_id
                )
                # when the record reached the broker: a producer's CreateTime ahead of this
                # worker's clock is not believed (it would let a future-dated event move the
                # partition clock, see streams.timer_index)
                stamp = int(message.timestamp * 1000) if message.timestamp else now_ms
                internal["rt"] = min(stamp, now_ms)
                value = orjson.dumps(internal)
            except PoisonEvent as exc:
                _dead_letter(t, tally, exc.reason, exc.message, source_name, message)
                continue
            except Exception as exc:  # a bug must not stop the stream: quarantine the record
                log.exception(
                    "ingest raised on %s[%d]@%d: quarantined",
                    source_name,
                    message.partition,
                    message.offset,
                )
                tally.inc(metrics.QUARANTINED, "ingest", REASON)
                record = quarantine_record(message, source_name, "ingest", exc)
                outbox.add(quarantine, message.key, record)
                continue
            tally.inc(metrics.EVENTS_IN, internal["type"], internal["ch"])
            outbox.add(target, internal["cid"].encode(), value)
        tally.apply()
        return None  # the fetch's output leaves together (streams.delivery.run_fetch)

    return handle_batch


def _dead_letter(
    t: Topology, tally: metrics.Tally, reason: str, text: str, topic: str, message: Any
) -> None:
    record = message_record(reason, text, topic, message)
    tally.inc(metrics.DLQ, reason)
    t.outbox.add(t.settings.topic(topics.DLQ), message.key, record)
