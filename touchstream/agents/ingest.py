"""Ingest: decode and validate inbound records, send poison to the DLQ, re-key by customer."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from touchstream import metrics
from touchstream.errors import PoisonEvent
from touchstream.schemas.decode import decode
from touchstream.schemas.dlq import dlq_record

if TYPE_CHECKING:
    from touchstream.streams.topology import Topology

log = logging.getLogger(__name__)


def make_ingest_agent(t: Topology) -> Any:
    max_bytes = t.settings.max_event_bytes
    ingest = t.ingest
    source_name = t.touchpoints.get_topic_name()

    async def ingest_agent(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            now_ms = int(time.time() * 1000)
            try:
                decoded = decode(message.value, max_bytes)
                internal = ingest.normalise(decoded, now_ms, message.partition, message.offset)
            except PoisonEvent as exc:
                await _dead_letter(t, exc.reason, exc.message, source_name, message)
                continue
            except Exception as exc:  # a bug must not stop the stream: park the record, say why
                log.exception(
                    "ingest failed on %s[%d]@%d", source_name, message.partition, message.offset
                )
                await _dead_letter(t, "internal_error", repr(exc)[:300], source_name, message)
                continue
            internal["rt"] = int(message.timestamp * 1000) if message.timestamp else now_ms
            metrics.EVENTS_IN.labels(internal["type"], internal["ch"]).inc()
            await t.customer_events.send(key=internal["cid"].encode(), value=orjson.dumps(internal))

    return ingest_agent


async def _dead_letter(t: Topology, reason: str, text: str, topic: str, message: Any) -> None:
    timestamp = int(message.timestamp * 1000) if message.timestamp else None
    record = dlq_record(
        reason,
        text,
        topic,
        message.partition,
        message.offset,
        timestamp,
        message.key,
        message.value,
    )
    metrics.DLQ.labels(reason).inc()
    await t.dlq.send(key=message.key, value=record)
