"""What the customer agent does with each decision of the core: one publisher per decision
type (``domain/decision.py``), each counting it, picking its topic and sending the record the
domain built. A decision type with no publisher fails its test
(tests/unit/agents/test_publishers.py), not silently at run time.

The only thing looked up here rather than in the domain is what depends on the deployment: the
byte budget of an access export's parts (the outbox's limits of ``privacy.exports``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from touchstream import metrics
from touchstream.domain import loyalty, privacy, sessions
from touchstream.domain.decision import (
    Decision,
    Erased,
    Expired,
    Export,
    LinkRefused,
    LoyaltyOutcome,
    Merged,
    Receipt,
    SessionClosed,
    StateCapped,
    TriggerAudit,
    TriggerDeferred,
    TriggerOut,
)
from touchstream.domain.triggers import DUPLICATE
from touchstream.streams import topics

if TYPE_CHECKING:
    from touchstream.streams.topology import Topology


def send(t: Topology, name: str, key: str, record: dict[str, Any]) -> None:
    t.outbox.add(t.settings.topic(name), key.encode(), orjson.dumps(record))


def publish(t: Topology, tally: metrics.Tally, decision: Decision) -> None:
    """Count and send ``decision`` (KeyError: a type with no publisher, a bug)."""
    PUBLISHERS[type(decision)](t, tally, decision)


def _trigger_out(t: Topology, tally: metrics.Tally, d: TriggerOut) -> None:
    tally.inc(metrics.TRIGGERS_EMITTED, d.type)
    send(t, topics.TRIGGER_TOPICS[d.type], d.customer_id, d.envelope)


def _trigger_audit(t: Topology, tally: metrics.Tally, d: TriggerAudit) -> None:
    tally.inc(metrics.TRIGGERS_SUPPRESSED, d.type, d.suppressed_reason)
    if d.suppressed_reason != DUPLICATE:  # already delivered under this id
        send(t, topics.TRIGGERS_AUDIT, d.customer_id, d.envelope)


def _trigger_deferred(t: Topology, tally: metrics.Tally, d: TriggerDeferred) -> None:
    tally.inc(metrics.TRIGGERS_DEFERRED, d.type)


def _merged(t: Topology, tally: metrics.Tally, d: Merged) -> None:
    tally.inc(metrics.IDENTITY_MERGES)
    send(t, topics.PROFILES_MERGES, d.survivor, d.record())


def _link_refused(t: Topology, tally: metrics.Tally, d: LinkRefused) -> None:
    tally.inc(metrics.IDENTITY_REFUSALS, d.limit)
    send(t, topics.IDENTITY_REFUSALS, d.customer_id, d.record())


def _session_closed(t: Topology, tally: metrics.Tally, d: SessionClosed) -> None:
    tally.inc(metrics.SESSIONS_CLOSED, d.channel)
    send(t, topics.SESSIONS, d.customer_id, sessions.published(d.summary))
    t.activity.record(d.summary)


def _loyalty(t: Topology, tally: metrics.Tally, d: LoyaltyOutcome) -> None:
    tally.inc(metrics.LOYALTY_OUTCOMES, d.outcome)
    if d.outcome == "state_capped":
        tally.inc(metrics.STATE_CAPPED, d.entry["capped"])
    send(t, topics.LOYALTY_OUTCOMES, d.customer_id, loyalty.published(d.entry))
    t.ledger.record(d.entry)


def _state_capped(t: Topology, tally: metrics.Tally, d: StateCapped) -> None:
    tally.inc(metrics.STATE_CAPPED, d.capped)  # a bound of the state that publishes nothing


def _expired(t: Topology, tally: metrics.Tally, d: Expired) -> None:
    tally.inc(metrics.ANONYMOUS_EXPIRED)


def _erased(t: Topology, tally: metrics.Tally, d: Erased) -> None:
    t.activity.erase(d.customer_id)  # its windows live on this partition, under its id
    t.ledger.erase(d.customer_id)
    # the receipt waits for Redis to confirm the deletion (``Receipt``)


def _receipt(t: Topology, tally: metrics.Tally, d: Receipt) -> None:
    tally.inc(metrics.ERASURES)
    tally.observe(metrics.ERASURE_LATENCY, max(d.completed_at - d.requested_at, 0) / 1000)
    send(t, topics.PRIVACY_RECEIPTS, d.customer_id, privacy.published(d))


def _export(t: Topology, tally: metrics.Tally, d: Export) -> None:
    tally.inc(metrics.ACCESS_EXPORTS)
    # numbered parts that each fit the topic's limit (README, "Access exports in parts")
    budget = t.outbox.limits.value_budget(
        t.settings.topic(topics.PRIVACY_EXPORTS),
        d.customer_id.encode(),
        t.settings.producer_max_batch_bytes,
    )
    for part in privacy.export_parts(d.export, budget):
        send(t, topics.PRIVACY_EXPORTS, d.customer_id, part)


# every decision type the core hands the agent, and its publisher
PUBLISHERS: dict[type[Decision], Callable[[Topology, metrics.Tally, Any], None]] = {
    TriggerOut: _trigger_out,
    TriggerAudit: _trigger_audit,
    TriggerDeferred: _trigger_deferred,
    Merged: _merged,
    LinkRefused: _link_refused,
    SessionClosed: _session_closed,
    LoyaltyOutcome: _loyalty,
    StateCapped: _state_capped,
    Expired: _expired,
    Erased: _erased,
    Receipt: _receipt,
    Export: _export,
}
