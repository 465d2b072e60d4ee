"""What each agent reads and writes, and nothing more: its ports.

An agent receives its ports, never the whole worker; ``streams/topology.py`` is the one module
that builds them from Faust's app, tables, outbox and services and wires the agents. A unit
test hands an agent in-memory fakes of the same ports (tests/unit/agents/fakes.py) and runs it
without Kafka, Redis or a Faust app.

- ``Output``: records sent to a topic, through the fetch's outbox (every agent).
- ``Publishing``: what the customer stage's publishers write (``agents/publishers.py``).
- ``CustomerPorts``: the per-customer stage (``agents/customer.py``).
- ``IngestPorts``: one ingest stage (``agents/ingest.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from touchstream.config.rules import Rules
from touchstream.domain.ingest import Ingest
from touchstream.domain.records import json_default
from touchstream.domain.state import Stored
from touchstream.streams.isolation import Faults, Undo
from touchstream.streams.timer_index import TimerIndex
from touchstream.tables.customers import LiveStates


@dataclass(frozen=True, slots=True)
class Output:
    """Records queued for a topic; they leave together once the fetch is handled
    (``streams.delivery.run_fetch``). ``add`` sets a record over its topic's limit aside for
    the DLQ instead (``streams.outbox``)."""

    add: Callable[[str, bytes | None, bytes | None], None]
    topic: Callable[[str], str]  # a topic's name in this deployment (its prefix)

    def send(self, name: str, key: str, record: dict[str, Any]) -> None:
        """``record`` as JSON to the topic ``name`` (without the deployment's prefix)."""
        self.add(self.topic(name), key.encode(), orjson.dumps(record, default=json_default))


class Windows(Protocol):
    """A windowed table a decision adds to (today's activity, the month's points and spend)."""

    def record(self, entry: Any, /) -> None: ...

    def erase(self, customer_id: str, /) -> object: ...  # (how many windows it removed)


@dataclass(frozen=True, slots=True)
class Publishing:
    """What the customer stage's publishers write: records, the activity and ledger windows,
    and how many bytes an access export's part may take (``privacy.exports``'s limit)."""

    output: Output
    activity: Windows
    ledger: Windows
    export_budget: Callable[[bytes], int]  # by the customer's key


class ProfileSync(Protocol):
    """The queue of Redis writes of served profiles (``serving.redis_sync.RedisSync``); each
    write journals its own undo on the batch's ``Undo``."""

    def submit(
        self, customer_id: str, profile: dict[str, Any], aliases: list[tuple[str, str]] | None
    ) -> None: ...

    def remove(
        self,
        customer_id: str,
        aliases: list[tuple[str, str]],
        version: int = ...,
        homes: list[str] | None = None,
        erased_at: int | None = None,
    ) -> None: ...


class StateTable(Protocol):
    """The customers table as the stage reads it: stored bytes by key, every key."""

    def get(self, key: bytes) -> Any: ...

    def __iter__(self) -> Iterator[bytes]: ...


@dataclass(frozen=True, slots=True)
class CustomerPorts:
    """The per-customer stage's ports. It reads the customers table (through ``live_states``,
    the states it wrote last), the rules, the timer index and which partitions this worker
    owns; it writes states (through the ``StateCache`` its finisher flushes), records
    (``output``: outputs, profile updates, records forwarded to ``customer-events``,
    quarantined records), Redis writes (``redis``), and halts a partition whose internal
    record raised (``halt``). A batch that raises is undone with ``journal``, ``mark`` and
    ``take_back``."""

    # what it reads
    customers: StateTable
    live_states: LiveStates
    rules: Rules
    partitions: int
    owned_partitions: Callable[[], set[int]]
    profile_of: Callable[[Stored], dict[str, Any] | None]  # the served profile of a state
    source: str  # the customer-events topic's name, for quarantine records
    faults: Faults | None  # the test-only fault plan (streams.isolation)
    # what it reads and writes
    timers: TimerIndex
    # what it writes
    output: Output
    fits: Callable[[str, bytes, bytes], bool]  # ``output.add`` would queue it, not set it aside
    publishing: Publishing
    redis: ProfileSync
    halt: Callable[[Any, int, str], None]  # (partition, offset, why)
    # undoing a batch that raised (streams.isolation)
    journal: Undo  # the table's, Redis's and the timers' changes
    mark: Callable[[], Any]  # where the output ends now
    take_back: Callable[[Any], None]  # the output added since a mark


class TopicIdentity(Protocol):
    """Input topics' identities (``streams.topic_identity.TopicIdentities``)."""

    def forget(self, topic: str | None = None) -> None: ...

    def cached(self, topic: str) -> str | None: ...

    def get(self, topic: str, keep: bool = True) -> Awaitable[str]: ...

    def stamp(self, tp: Any, identity: str) -> None: ...


@dataclass(frozen=True, slots=True)
class IngestPorts:
    """One ingest stage's ports: it reads records of ``source`` and the topic's identity, and
    writes normalised events to ``customer-events``, poison to the DLQ and records that raise
    to the quarantine topic, all through ``output``."""

    source: str  # the input topic's name
    privileged: bool  # the privileged input (domain.privileged)
    max_event_bytes: int
    ingest: Ingest
    identities: TopicIdentity
    output: Output
    faults: Faults | None  # the test-only fault plan (streams.isolation)
