"""What the customer agent does with each decision of the core: one publisher per decision
type (``domain/decision.py``), each counting it, picking its topic and sending the record the
domain built. A decision type with no publisher fails its test
(tests/unit/agents/test_publishers.py), not silently at run time.

Publishers write through their ports (``agents.ports.Publishing``). The only thing looked up
here rather than in the domain is what depends on the deployment: the byte budget of an access
export's parts (the outbox's limits of ``privacy.exports``, ``Publishing.export_budget``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from touchstream import metrics
from touchstream.agents.ports import Publishing
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


def publish(p: Publishing, tally: metrics.Tally, decision: Decision) -> None:
    """Count and send ``decision`` (KeyError: a type with no publisher, a bug)."""
    PUBLISHERS[type(decision)](p, tally, decision)


def _trigger_out(p: Publishing, tally: metrics.Tally, d: TriggerOut) -> None:
    tally.inc(metrics.TRIGGERS_EMITTED, d.type)
    p.output.send(topics.TRIGGER_TOPICS[d.type], d.customer_id, d.envelope)


def _trigger_audit(p: Publishing, tally: metrics.Tally, d: TriggerAudit) -> None:
    tally.inc(metrics.TRIGGERS_SUPPRESSED, d.type, d.suppressed_reason)
    if d.suppressed_reason != DUPLICATE:  # already delivered under this id
        p.output.send(topics.TRIGGERS_AUDIT, d.customer_id, d.envelope)


def _trigger_deferred(p: Publishing, tally: metrics.Tally, d: TriggerDeferred) -> None:
    tally.inc(metrics.TRIGGERS_DEFERRED, d.type)


def _merged(p: Publishing, tally: metrics.Tally, d: Merged) -> None:
    tally.inc(metrics.IDENTITY_MERGES)
    p.output.send(topics.PROFILES_MERGES, d.survivor, d.record())


def _link_refused(p: Publishing, tally: metrics.Tally, d: LinkRefused) -> None:
    tally.inc(metrics.IDENTITY_REFUSALS, d.limit)
    p.output.send(topics.IDENTITY_REFUSALS, d.customer_id, d.record())


def _session_closed(p: Publishing, tally: metrics.Tally, d: SessionClosed) -> None:
    tally.inc(metrics.SESSIONS_CLOSED, d.channel)
    p.output.send(topics.SESSIONS, d.customer_id, sessions.published(d.summary))
    p.activity.record(d.summary)


def _loyalty(p: Publishing, tally: metrics.Tally, d: LoyaltyOutcome) -> None:
    tally.inc(metrics.LOYALTY_OUTCOMES, d.outcome)
    if d.outcome == "state_capped":
        tally.inc(metrics.STATE_CAPPED, d.entry["capped"])
    p.output.send(topics.LOYALTY_OUTCOMES, d.customer_id, loyalty.published(d.entry))
    p.ledger.record(d.entry)


def _state_capped(p: Publishing, tally: metrics.Tally, d: StateCapped) -> None:
    tally.inc(metrics.STATE_CAPPED, d.capped)  # a bound of the state that publishes nothing


def _expired(p: Publishing, tally: metrics.Tally, d: Expired) -> None:
    tally.inc(metrics.ANONYMOUS_EXPIRED)


def _erased(p: Publishing, tally: metrics.Tally, d: Erased) -> None:
    p.activity.erase(d.customer_id)  # its windows live on this partition, under its id
    p.ledger.erase(d.customer_id)
    # the receipt waits for Redis to confirm the deletion (``Receipt``)


def _receipt(p: Publishing, tally: metrics.Tally, d: Receipt) -> None:
    tally.inc(metrics.ERASURES)
    tally.observe(metrics.ERASURE_LATENCY, max(d.completed_at - d.requested_at, 0) / 1000)
    p.output.send(topics.PRIVACY_RECEIPTS, d.customer_id, privacy.published(d))


def _export(p: Publishing, tally: metrics.Tally, d: Export) -> None:
    tally.inc(metrics.ACCESS_EXPORTS)
    # numbered parts that each fit the topic's limit (README, "Access exports in parts")
    budget = p.export_budget(d.customer_id.encode())
    for part in privacy.export_parts(d.export, budget):
        p.output.send(topics.PRIVACY_EXPORTS, d.customer_id, part)


# every decision type the core hands the agent, and its publisher
PUBLISHERS: dict[type[Decision], Callable[[Publishing, metrics.Tally, Any], None]] = {
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
