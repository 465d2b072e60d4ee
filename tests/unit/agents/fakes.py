"""In-memory fakes of the agents' ports (touchstream/agents/ports.py): the customer and ingest
stages run on them with no Kafka, Redis or Faust app, and a test reads what a user would see
from them (records per topic, Redis writes, the table, halted partitions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from touchstream.agents.customer import make_customer_handler
from touchstream.agents.ingest import make_ingest_handler
from touchstream.agents.ports import CustomerPorts, IngestPorts, Output, Publishing
from touchstream.config.rules import Rules, load_rules
from touchstream.config.settings import DEV_HMAC_SECRET, Settings
from touchstream.domain.identity import IdentityNormaliser
from touchstream.domain.ingest import Ingest
from touchstream.domain.profile import view
from touchstream.domain.state import State
from touchstream.schemas.decode import load_validators
from touchstream.simulator.factory import purchase
from touchstream.streams import topics
from touchstream.streams.isolation import Faults, Undo
from touchstream.streams.timer_index import TimerIndex
from touchstream.tables.customers import LiveStates, decode_state

DEFAULTS = Settings()
NOW = 1_795_000_000_000
CUSTOMER = b"crm-1"
SHOPPER = {"customer_id": CUSTOMER.decode()}
TOPIC_ID = "AAAAAAAAAAAAAAAAAAAAAA"  # the input topic's identity (streams.topic_identity)


class TP(NamedTuple):
    topic: str
    partition: int


class Message(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: float | None


@dataclass
class Records:
    """The outbox: records in the order added, by topic name (no prefix here); one over
    ``room`` is set aside for the DLQ (``oversized``), as the outbox does."""

    added: list[tuple[str, bytes | None, bytes | None]] = field(default_factory=list)
    oversized: list[tuple[str, bytes | None, bytes | None]] = field(default_factory=list)
    room: int | None = None  # the largest record (key and value) a topic takes; None: any

    def add(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if self.fits(topic, key, value):
            self.added.append((topic, key, value))
        else:
            self.oversized.append((topic, key, value))

    def fits(self, topic: str, key: bytes | None, value: bytes | None) -> bool:
        return self.room is None or len(key or b"") + len(value or b"") <= self.room

    def mark(self) -> tuple[int, int]:
        return len(self.added), len(self.oversized)

    def take_back(self, mark: tuple[int, int]) -> None:
        del self.added[mark[0] :]
        del self.oversized[mark[1] :]

    def of(self, name: str) -> list[tuple[bytes | None, Any]]:
        """(key, decoded value) of each record queued for topic ``name``."""
        return [(k, orjson.loads(v) if v else v) for t, k, v in self.added if t == name]

    def output(self) -> Output:
        return Output(self.add, lambda name: name)


@dataclass
class Redis:
    """The Redis sync's queue: the latest profile written per customer, every write (customer
    ids, in order) and the removals."""

    journal: Undo
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    removed: list[tuple[str, int | None, int | None]] = field(default_factory=list)

    def submit(
        self, customer_id: str, profile: dict[str, Any], aliases: list[tuple[str, str]] | None
    ) -> None:
        self._journal((self._put_back, customer_id, self.profiles.get(customer_id)))
        self._journal((self.written.pop,))
        self.profiles[customer_id] = profile
        self.written.append(customer_id)

    def remove(
        self,
        customer_id: str,
        aliases: list[tuple[str, str]],
        version: int = -1,
        homes: list[str] | None = None,
        erased_at: int | None = None,
    ) -> None:
        self._journal((self._put_back, customer_id, self.profiles.pop(customer_id, None)))
        self._journal((self.removed.pop,))
        self.removed.append((customer_id, version, erased_at))

    def _journal(self, entry: tuple[Any, ...]) -> None:
        if self.journal.entries is not None:
            self.journal.entries.append(entry)

    def _put_back(self, customer_id: str, profile: dict[str, Any] | None) -> None:
        if profile is None:
            self.profiles.pop(customer_id, None)
        else:
            self.profiles[customer_id] = profile


@dataclass
class Windows:
    recorded: list[Any] = field(default_factory=list)
    erased: list[str] = field(default_factory=list)

    def record(self, entry: Any) -> None:
        self.recorded.append(entry)

    def erase(self, customer_id: str) -> int:
        self.erased.append(customer_id)
        return 0


def shop(n: int) -> list[dict[str, Any]]:
    """``n`` purchases of one shopper: orders o-0.., events e0.., a millisecond apart."""
    return [
        purchase(SHOPPER, f"o-{i}", 1000 * (i + 1), event_id=f"e{i}", occurred_at=NOW + i)
        for i in range(n)
    ]


class CustomerStage:
    """The customer stage on fakes of its ports; ``run`` hands it one fetch of a partition."""

    def __init__(self, faults: str = "", rules: Rules | None = None, partitions: int = 1) -> None:
        self.rules = rules or load_rules(None)
        self.table: dict[bytes, bytes] = {}
        self.records = Records()
        journal = Undo()
        self.redis = Redis(journal)
        self.activity, self.ledger = Windows(), Windows()
        self.halted: dict[Any, int] = {}
        self.timers = TimerIndex(DEFAULTS.max_clock_skew_s * 1000)
        self.timers.undo = journal
        self.timers.stale = False  # nothing to rebuild: the table starts empty
        output = self.records.output()
        self.ports = CustomerPorts(
            customers=self.table,
            live_states=LiveStates(0),
            rules=self.rules,
            partitions=partitions,
            owned_partitions=lambda: set(range(partitions)),
            profile_of=lambda state: view(state, self.rules),
            source=topics.CUSTOMER_EVENTS,
            faults=Faults.parse(faults),
            timers=self.timers,
            output=output,
            fits=self.records.fits,
            publishing=Publishing(output, self.activity, self.ledger, lambda key: 1 << 20),
            redis=self.redis,
            halt=lambda tp, offset, why: self.halted.setdefault(tp, offset),
            journal=journal,
            mark=self.records.mark,
            take_back=self.records.take_back,
        )
        self.handle = make_customer_handler(self.ports)

    async def run(self, messages: list[Message], partition: int = 0) -> None:
        """One fetch of ``partition``: handled, its output delivered, its states written."""
        finish = await self.handle(TP(topics.CUSTOMER_EVENTS, partition), messages)
        assert finish is not None
        finish(True)

    def state(self, key: bytes) -> State | None:
        """The customer's state as the table holds it."""
        return decode_state(self.table.get(key))

    def of(self, name: str) -> list[tuple[bytes | None, Any]]:
        return self.records.of(name)


class Identities:
    """Input topics' identities, known from the start (no broker to ask)."""

    def forget(self, topic: str | None = None) -> None:
        pass

    def cached(self, topic: str) -> str | None:
        return TOPIC_ID

    async def get(self, topic: str, keep: bool = True) -> str:
        return TOPIC_ID

    def stamp(self, tp: Any, identity: str) -> None:
        pass


async def ingested(
    events: list[dict[str, Any]],
    privileged: bool = False,
    rules: Rules | None = None,
    first: int = 0,
    broker_ms: int = NOW,
) -> list[Message]:
    """The customer-events records the ingest stage makes of ``events`` (offsets 0..n-1), on
    fakes of its ports; their inbound records are at offsets ``first``.. of their input, and
    reached the broker at ``broker_ms``."""
    load_validators()
    rules = rules or load_rules(None)
    normaliser = IdentityNormaliser(
        DEV_HMAC_SECRET, rules.identity.blocked_values, rules.identity.default_country_code
    )
    records = Records()
    source = topics.PRIVILEGED if privileged else topics.TOUCHPOINTS
    handle = make_ingest_handler(
        IngestPorts(
            source=source,
            privileged=privileged,
            max_event_bytes=DEFAULTS.max_event_bytes,
            ingest=Ingest(rules.program, normaliser, DEFAULTS.future_tolerance_s * 1000),
            identities=Identities(),
            output=records.output(),
            faults=None,
        )
    )
    inbound = [
        Message(source, 0, first + i, None, orjson.dumps(e), broker_ms / 1000)
        for i, e in enumerate(events)
    ]
    await handle(TP(source, 0), inbound)
    return [
        Message(topics.CUSTOMER_EVENTS, 0, i, key, orjson.dumps(value), NOW / 1000)
        for i, (key, value) in enumerate(records.of(topics.CUSTOMER_EVENTS))
    ]
