"""Timers in event time (docs/domain.md, "Event time and timers"): what falls due on a customer's state.

Timers are not asyncio handles but facts of the state: a cart's next reminder, the open
session's end, a trigger held back by quiet hours, the end of an anonymous profile's life, the
next moment the loyalty tier or balance (``domain.loyalty``) or the RFM scores (``domain.rfm``)
can change with no new event.
``next_due`` says when the earliest is due; ``fire`` runs every timer due by the partition's
event-time clock, in due order, before the record that moved the clock is applied (a privileged
command moves no clock: it fires its own customer's timers due by its time). So timers
survive a crash or a rebalance with the table, and a replay fires them at the same points.
"""

from __future__ import annotations

from typing import Any

from touchstream.config.rules import Rules
from touchstream.domain import carts, loyalty, privacy, rfm, sessions, triggers
from touchstream.domain.decision import Decision, Proposal
from touchstream.domain.linking import anonymous_until, expire
from touchstream.domain.state import State, Stored
from touchstream.domain.step import Step


def _timers(state: State, rules: Rules) -> list[tuple[int, str, Any]]:
    """(due, kind, detail) of every timer of a live profile, earliest first per kind."""
    out: list[tuple[int, str, Any]] = []
    session_end = sessions.due(state, rules)
    if session_end is not None:
        out.append((session_end, "session", None))
    reminder = carts.next_reminder(state, rules)
    if reminder is not None:
        out.append((reminder[0], "cart", reminder[1]))
    deferred = triggers.next_deferred(state)
    if deferred is not None:
        out.append((deferred[0], "deferred", deferred[1]))
    for kind, when in (("loyalty", loyalty.due(state)), ("rfm", rfm.due(state))):
        if when is not None:
            out.append((when, kind, None))
    expiry = anonymous_until(state, rules)
    if expiry is not None:
        out.append((expiry, "expire", None))
    return out


def next_due(state: Stored | None, rules: Rules) -> int | None:
    """The earliest of ``_timers``' due times, without building them: this runs after every
    state a record or a timer changes."""
    if not isinstance(state, dict):  # none, a redirect or an erasure marker (domain.records)
        return None
    out = sessions.due(state, rules)
    for when in (
        carts.next_due(state, rules),
        triggers.next_deferred_at(state),
        loyalty.due(state),
        rfm.due(state),
        anonymous_until(state, rules),
    ):
        if when is not None and (out is None or when < out):
            out = when
    return out


def stale_due(step: Step, state: Stored | None, rules: Rules) -> int | None:
    """When to track a customer again whose due entry ``fire`` answered with ``step``.

    The index keeps one entry per customer, at the earliest time it was told of
    (streams.timer_index), so an entry can come up before the customer's timers are due: a
    step that neither stores nor deletes says so, and the entry is tracked again at the
    state's real due time. A step that stores is tracked with its new state, like any other."""
    if step.store is not None or step.delete:
        return None
    return next_due(state, rules)


def pending(state: Stored | None, rules: Rules) -> int:
    """How many timers a profile has pending (an erasure receipt counts them)."""
    if not isinstance(state, dict):  # none, a redirect or an erasure marker
        return 0
    return privacy.pending_timers(state, rules)


def fire(target: str, state: Stored | None, clock: int, now_ms: int, rules: Rules) -> Step:
    """Every timer of ``state`` due by ``clock`` (the partition's event time, or a privileged
    command's own: ``streams.timer_index.TimerIndex.command_time``), in due order."""
    due = next_due(state, rules)
    if not isinstance(state, dict) or due is None or due > clock:
        return Step()
    live = dict(state)
    decisions: list[Decision] = []
    while True:
        timers = [t for t in _timers(live, rules) if t[0] <= clock]
        if not timers:
            break
        at, kind, detail = min(timers, key=lambda t: (t[0], t[1], str(t[2])))
        if kind == "expire":
            step = expire(target, live, clock, rules)
            step.decisions = [*decisions, *step.decisions]
            return step
        if kind == "session":
            proposals = sessions.close(live, at, rules)
        elif kind == "cart":
            proposals = [carts.remind(live, detail, rules)]
        elif kind == "loyalty":
            proposals = []
            loyalty.evaluate(live, at, rules, proposals)
        elif kind == "rfm":
            proposals = rfm.evaluate(live, at, rules)
        else:
            proposals = [triggers.release(live, detail)]
        # each decision is guarded as it falls due: the ones before it count towards the caps
        decisions.extend(
            triggers.emit(live, d, now_ms, rules) if isinstance(d, Proposal) else d
            for d in proposals
        )
    live["version"] += 1
    return Step(store=live, decisions=decisions)
