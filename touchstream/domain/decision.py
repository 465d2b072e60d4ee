"""Decisions: what the pure core tells the agent the outside world must hear about.

One frozen record type per kind of decision, each carrying the fields its publisher needs
(``agents/publishers.py`` maps every type to the one function that counts and sends it; a
test fails when a type has none). The core decides and builds the content; the publisher
only counts, picks the topic and sends what the domain formatted (``record()`` here,
``loyalty.published``, ``sessions.published``, ``privacy.published``, ``privacy.export_parts``).

Frozen slotted dataclasses, not msgspec Structs: no new dependency, and a decision is made
for few events (a purchase's outcome, a trigger, a session's close), so its construction is
not where the core's time goes (bench/core_speed.py measures the same).

``kind`` and ``payload`` are a compatibility view for the tests and tools that still read a
decision as the ``(kind, payload dict)`` it was before (the chaos harness, the state-format
fixture, ``bench/core_speed.py``'s digest): ``payload`` rebuilds that dict; the core and the
agent never use it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from touchstream.domain.clock import iso


@dataclass(frozen=True, slots=True)
class Decision:
    """Something the outside world must hear about (the base of every decision type)."""

    # each type also has ``customer_id``: the customer it is about, the key of what it sends
    kind: ClassVar[str]
    # the field holding the document a type carries whole ("": its fields are the document)
    document: ClassVar[str] = ""

    @property
    def payload(self) -> dict[str, Any]:
        """Compatibility: the decision's dict as it was before it was typed."""
        if self.document:
            whole: dict[str, Any] = getattr(self, self.document)
            return whole
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Proposal(Decision):
    """A trigger a capability decided on, before quiet hours and the guard chain
    (``triggers.emit``) make it one of ``TriggerOut``, ``TriggerAudit``, ``TriggerDeferred``
    or ``StateCapped``; never reaches the agent. ``trigger``: type, cause, at, reason,
    evidence, rule (and, released from quiet hours, due and released), as the state keeps
    a deferred one."""

    kind: ClassVar[str] = "trigger"
    document: ClassVar[str] = "trigger"
    trigger: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TriggerDecision(Decision):
    """What ``triggers.emit`` made of a proposal: of which trigger type, for which customer
    (the labels its publisher counts by, and the key of what it sends)."""

    type: str
    customer_id: str


@dataclass(frozen=True, slots=True)
class TriggerOut(TriggerDecision):
    """A trigger delivered: ``envelope`` is the record for its type's topic."""

    kind: ClassVar[str] = "trigger_out"
    document: ClassVar[str] = "envelope"
    envelope: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TriggerAudit(TriggerDecision):
    """A trigger suppressed: ``envelope`` (with its ``suppressed_reason``) is the record for
    ``triggers.audit``, except a duplicate's (delivered already under its id: counted only)."""

    kind: ClassVar[str] = "trigger_audit"
    document: ClassVar[str] = "envelope"
    suppressed_reason: str
    envelope: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TriggerDeferred(TriggerDecision):
    """A trigger held back by quiet hours (counted; ``trigger``: as the state holds it)."""

    kind: ClassVar[str] = "trigger_deferred"
    document: ClassVar[str] = "trigger"
    trigger: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Merged(Decision):
    """Two profiles became one: ``absorbed`` folded into ``survivor``."""

    kind: ClassVar[str] = "merged"
    survivor: str
    absorbed: str
    identifiers: dict[str, list[str]]  # the absorbed profile's
    at: int
    event_id: str

    @property
    def customer_id(self) -> str:
        return self.survivor

    def record(self) -> dict[str, Any]:
        """The record for ``profiles.merges``."""
        return {
            "survivor": self.survivor,
            "absorbed": self.absorbed,
            "identifiers": self.identifiers,
            "occurred_at": iso(self.at),
            "event_id": self.event_id,
        }


@dataclass(frozen=True, slots=True)
class LinkRefused(Decision):
    """A link refused because the union would break an identifier group's ``limit``."""

    kind: ClassVar[str] = "link_refused"
    customer_id: str
    other_customer_id: str
    identifier_kind: str
    identifier: str  # email and phone are keyed hashes by now, never raw
    limit: str
    at: int
    event_id: str

    def record(self) -> dict[str, Any]:
        """The record for ``identity.refusals``."""
        return {
            "customer_id": self.customer_id,
            "other_customer_id": self.other_customer_id,
            "identifier_kind": self.identifier_kind,
            "identifier": self.identifier,
            "limit": self.limit,
            "event_id": self.event_id,
            "occurred_at": iso(self.at),
        }


@dataclass(frozen=True, slots=True)
class SessionClosed(Decision):
    """A session closed: ``summary`` as ``sessions.close`` made it (``sessions.published``
    is its record; the worker's activity table sums it)."""

    kind: ClassVar[str] = "session_closed"
    document: ClassVar[str] = "summary"
    customer_id: str
    channel: str
    summary: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LoyaltyOutcome(Decision):
    """A change of the points ledger: ``entry`` as ``loyalty.outcome`` made it
    (``loyalty.published`` is its record; the worker's ledger table sums it)."""

    kind: ClassVar[str] = "loyalty"
    document: ClassVar[str] = "entry"
    customer_id: str
    outcome: str  # points_earned, tier_changed, state_capped (with "capped": which bound), ...
    entry: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StateCapped(Decision):
    """A bound of the state that publishes nothing was reached (counted)."""

    kind: ClassVar[str] = "state_capped"
    customer_id: str
    capped: str
    at: int


@dataclass(frozen=True, slots=True)
class Expired(Decision):
    """An anonymous-only profile idle past its TTL was dropped (counted)."""

    kind: ClassVar[str] = "expired"
    customer_id: str
    identifiers: dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class Erased(Decision):
    """A customer was erased: what the worker holds of it beside the table goes too. Its
    receipt waits for Redis to confirm the deletion (``Receipt``)."""

    kind: ClassVar[str] = "erased"
    customer_id: str


@dataclass(frozen=True, slots=True)
class Receipt(Decision):
    """An erasure completed (Redis confirmed it): ``privacy.published`` is its record for
    ``privacy.receipts``. Times are epoch ms; counts and kinds only, never an identifier."""

    kind: ClassVar[str] = "receipt"
    request_id: str
    customer_id: str
    requested_at: int
    occurred_at: int
    known_customer: bool
    kinds_removed: list[str]
    removed: dict[str, Any]  # profiles, redis_keys, identifiers (per kind), orders, carts, timers
    completed_at: int


@dataclass(frozen=True, slots=True)
class Export(Decision):
    """An access request answered: ``export`` is everything held about the customer
    (``privacy.export``), sent in numbered parts (``privacy.export_parts``)."""

    kind: ClassVar[str] = "export"
    document: ClassVar[str] = "export"
    customer_id: str
    export: dict[str, Any]
