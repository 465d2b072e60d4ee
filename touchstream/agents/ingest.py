"""Ingest: decode and validate inbound records, send poison to the DLQ, re-key by customer.

A record whose handling raises (a bug, not the contract) goes to the quarantine topic
(streams.isolation) with the exception and its original bytes."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from touchstream import metrics
from touchstream.agents.ports import IngestPorts, Output
from touchstream.domain.privileged import refusal, requires_privilege
from touchstream.errors import PoisonEvent, PrivilegedOnPublicInput
from touchstream.schemas.decode import decode
from touchstream.schemas.dlq import message_record
from touchstream.streams import topics
from touchstream.streams.delivery import Finisher, Handler
from touchstream.streams.isolation import REASON, quarantine_record

log = logging.getLogger(__name__)


def make_ingest_handler(p: IngestPorts) -> Handler:
    """``p.privileged``: the handler of the privileged input (domain.privileged); on the
    ordinary input erasure, access, redemption and consent grants go to the DLQ."""
    max_bytes = p.max_event_bytes
    ingest = p.ingest
    privileged = p.privileged
    source_name = p.source
    output = p.output
    target = output.topic(topics.CUSTOMER_EVENTS)
    identities = p.identities
    last_offsets: dict[Any, int] = {}
    faults = p.faults
    quarantine = output.topic(topics.QUARANTINE)

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
                _dead_letter(output, tally, exc.reason, exc.message, source_name, message)
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
                output.add(quarantine, message.key, record)
                continue
            tally.inc(metrics.EVENTS_IN, internal["type"], internal["ch"])
            output.add(target, internal["cid"].encode(), value)
        tally.apply()
        return None  # the fetch's output leaves together (streams.delivery.run_fetch)

    return handle_batch


def _dead_letter(
    output: Output, tally: metrics.Tally, reason: str, text: str, topic: str, message: Any
) -> None:
    record = message_record(reason, text, topic, message)
    tally.inc(metrics.DLQ, reason)
    output.add(output.topic(topics.DLQ), message.key, record)
