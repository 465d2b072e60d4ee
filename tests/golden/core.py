"""The one place the golden tests reach into the core: the offline stage, ingest, and the
customer agent's publishers (what it sends for each decision type).

Issue 29 rewrites the core's state and decisions as typed records and may move the offline
oracle out of ``touchstream/domain``; when it does, only this module (and the projection in
``projection.py``) should need to follow. Everything here replays at fixed times, so a run
never depends on the day, the machine or ``PYTHONHASHSEED``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import orjson

from touchstream.agents.ports import Output, Publishing
from touchstream.agents.publishers import publish as agent_publish
from touchstream.config.rules import Rules
from touchstream.config.settings import DEV_HMAC_SECRET, Settings
from touchstream.domain.identity import IdentityNormaliser
from touchstream.domain.ingest import Ingest
from touchstream.domain.privileged import requires_privilege
from touchstream.errors import PoisonEvent, PrivilegedOnPublicInput
from touchstream.offline import OfflineStage
from touchstream.schemas.decode import decode, load_validators
from touchstream.streams.timer_index import partition_for

__all__ = ["Arrival", "OfflineStage", "ingest", "new_stage", "partition_of_key", "publish"]

DEFAULTS = Settings()


@dataclass(frozen=True)
class Arrival:
    """One inbound record as the ingest stage meets it."""

    value: bytes
    privileged: bool  # read from ``touchpoints.privileged`` rather than ``touchpoints``
    partition: int
    offset: int
    broker_ms: int  # the record's timestamp (CreateTime)
    read_ms: int  # the wall clock when ingest reads it


def partition_of_key(key: bytes | None, partitions: int) -> int:
    """The inbound partition the producer's default partitioner gives a record key."""
    return partition_for(key or b"", partitions)


def new_stage(rules: Rules, partitions: int) -> OfflineStage:
    """The per-customer stage without Kafka, with the worker's default clock-skew cap."""
    return OfflineStage(
        rules, partitions=partitions, max_clock_skew_ms=DEFAULTS.max_clock_skew_s * 1000
    )


def ingest(
    arrivals: Iterable[Arrival], rules: Rules, topic_ids: Sequence[str] | None = None
) -> tuple[list[dict[str, Any]], list[list[Any]]]:
    """The arrivals decoded and normalised as the ingest agent does with default settings and
    the development HMAC secret: the internal events, and ``[index, DLQ reason]`` of each
    arrival refused. ``topic_ids``: the identities of ``touchpoints`` and its privileged
    sibling, which ingest puts on each event (``streams.topic_identity``)."""
    load_validators()
    normaliser = IdentityNormaliser(
        DEV_HMAC_SECRET, rules.identity.blocked_values, rules.identity.default_country_code
    )
    ingest = Ingest(rules.program, normaliser, DEFAULTS.future_tolerance_s * 1000)
    events: list[dict[str, Any]] = []
    refused: list[list[Any]] = []
    for index, arrival in enumerate(arrivals):
        identity = topic_ids[int(arrival.privileged)] if topic_ids else None
        try:
            decoded = decode(arrival.value, DEFAULTS.max_event_bytes)
            if not arrival.privileged and requires_privilege(decoded):
                raise PrivilegedOnPublicInput("touchpoints")
            ev = ingest.normalise(
                decoded, arrival.read_ms, arrival.partition, arrival.offset, identity
            )
        except PoisonEvent as error:
            refused.append([index, error.reason])
            continue
        ev["rt"] = min(arrival.broker_ms, arrival.read_ms)  # a CreateTime ahead: not believed
        events.append(ev)
    return events, refused


# --- what the customer agent sends for a decision --------------------------------------------


class _Sent:
    """The customer agent's publishing ports (``agents.ports.Publishing``), in memory."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, Any]] = []
        self.counted: list[list[str]] = []
        nothing = SimpleNamespace(record=lambda *_: None, erase=lambda *_: None)
        self.ports = Publishing(Output(self._add, lambda name: name), nothing, nothing, _no_limit)

    def _add(self, topic: str, key: bytes, value: bytes) -> None:
        self.records.append((topic, key.decode(), orjson.loads(value)))

    # the metrics tally
    def inc(self, counter: Any, *labels: str) -> None:
        self.counted.append([counter._name, *labels])

    def observe(self, histogram: Any, value: float) -> None:
        pass


def _no_limit(key: bytes) -> int:
    return 1 << 30


def publish(decision: Any) -> tuple[list[tuple[str, str, Any]], list[list[str]]]:
    """(topic, key, record) of each record the customer agent sends for ``decision`` (as the
    consumer decodes it: ``agents/publishers.py``), and [metric, *labels] of each count it
    adds."""
    sent = _Sent()
    agent_publish(sent.ports, sent, decision)  # type: ignore[arg-type]
    return sent.records, sent.counted
