"""The one emit path of every trigger: envelope, guard chain, delivery log (docs/domain.md,
"Triggers").

A capability proposes a trigger (``propose``) from event time only, so a replay proposes the
same triggers with the same ``trigger_id``s. ``guard`` then checks it at emit time, in the
order of docs/domain.md, "Guard chain": fresh (the cause is not older than the freshness
window, against the wall clock of ingest) -> consent -> still true -> recency -> frequency cap
and per-type cool-down (counted in event time over delivered triggers only). A suppressed
trigger is the same envelope plus ``suppressed_reason`` (one of ``SUPPRESSED_REASONS``), for
``triggers.audit``. (``erased`` is not one: an erased customer has no profile left to propose
anything; see ``domain.privacy``.)

The trigger log is two keys of the state's dict (the typed-state rewrite,
docs/design/typed-state.md, step 3: the design's ``TriggerLog``): ``delivered``, a list of
``Delivered`` tuples (type, event time, trigger id), oldest first, stored as the JSON arrays
they were; and ``deferred``, the envelopes held back by quiet hours (dicts until the decisions
are typed records). ``records.lift`` reads both with their types, refusing another shape.
Lists are values here too: a change puts a new list in the state.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from datetime import time as daytime
from typing import Any
from zoneinfo import ZoneInfo

from touchstream.config.rules import Rules
from touchstream.domain import trigger_catalog
from touchstream.domain.clock import iso
from touchstream.domain.decision import (
    Decision,
    Proposal,
    StateCapped,
    TriggerAudit,
    TriggerDeferred,
    TriggerOut,
)
from touchstream.domain.records import Delivered
from touchstream.domain.state import State

SCHEMA_VERSION = 1
HOUR_MS = 3_600_000
DELIVERED_KEPT = 32  # delivered triggers remembered (duplicate, frequency cap, cool-down)
DEFERRED_MAX = 32  # triggers held back by quiet hours per customer; beyond, the latest due go
# why the guard chain suppresses a trigger, in the chain's order: the ``suppressed_reason`` of a
# record on triggers.audit (the schema's enum is tested against SUPPRESSED_REASONS)
STALE = "stale"
NO_CONSENT = "no_consent"
NO_LONGER_TRUE = "no_longer_true"
NOT_RECENT = "not_recent"
FREQUENCY_CAP = "frequency_cap"
COOLDOWN = "cooldown"
SUPPRESSED_REASONS = (STALE, NO_CONSENT, NO_LONGER_TRUE, NOT_RECENT, FREQUENCY_CAP, COOLDOWN)
# already delivered under the same trigger_id: counted with this reason, not audited again
DUPLICATE = "duplicate"
# marketing channels and the consent purpose each needs
CHANNELS = (("email", "email_marketing"), ("sms", "sms_marketing"), ("push", "push_marketing"))


def trigger_id(customer_id: str, kind: str, cause: str) -> str:
    return hashlib.sha256(f"{customer_id}|{kind}|{cause}".encode()).hexdigest()[:32]


def propose(
    kind: str, cause: str, at: int, reason: str, evidence: dict[str, Any], rule: str
) -> Proposal:
    """A trigger a capability decided on; ``cause`` names what caused it, uniquely per type.
    ``kind`` must be declared in the trigger catalog (``domain/trigger_catalog.py``)."""
    trigger_catalog.entry(kind)
    return Proposal(
        {
            "type": kind,
            "cause": cause,
            "at": at,
            "reason": reason,
            "evidence": evidence,
            "rule": rule,
        },
    )


def channels(state: State) -> list[str]:
    consent = state["consent"]  # purpose -> domain.records.Grant
    return [
        name
        for name, purpose in CHANNELS
        if (known := consent.get(purpose)) is not None and known.granted
    ]


def guard(
    state: State, proposal: dict[str, Any], now_ms: int, rules: Rules
) -> tuple[dict[str, Any], str | None]:
    """The envelope, and why it must not be sent (None: deliver it). Records a delivery."""
    kind, at = proposal["type"], proposal["at"]
    still, recent = trigger_catalog.checks(kind)  # an undeclared type is an error
    envelope = {
        "trigger_id": trigger_id(state["customer_id"], kind, proposal["cause"]),
        "schema_version": SCHEMA_VERSION,
        "type": kind,
        "customer_id": state["customer_id"],
        "occurred_at": iso(at),
        "emitted_at": iso(now_ms),
        "reason": proposal["reason"],
        "evidence": proposal["evidence"],
        "rule": {"name": proposal["rule"], "version": rules.version},
        "channels": channels(state),
    }
    t = rules.triggers
    delivered: list[Delivered] = state["delivered"]
    if any(d[2] == envelope["trigger_id"] for d in delivered):
        return envelope, DUPLICATE
    if now_ms - at > t.freshness_hours * HOUR_MS:
        return envelope, STALE
    if not envelope["channels"]:
        return envelope, NO_CONSENT
    if still is not None and not still(state, proposal, rules):
        return envelope, NO_LONGER_TRUE
    if recent is not None and not recent(state, proposal, rules):
        return envelope, NOT_RECENT
    window = t.frequency_window_hours * HOUR_MS
    if sum(1 for d in delivered if at - window < d[1] <= at) >= t.frequency_cap:
        return envelope, FREQUENCY_CAP
    cooldown = t.cooldown_hours.get(kind, 0) * HOUR_MS
    if any(d[0] == kind and at - cooldown < d[1] <= at for d in delivered):
        return envelope, COOLDOWN
    state["delivered"] = [*delivered, (kind, at, envelope["trigger_id"])][-DELIVERED_KEPT:]
    return envelope, None


def default_delivered() -> list[Delivered]:
    """A new profile's delivered triggers: none (``domain.customer.new_state``)."""
    return []


def default_deferred() -> list[dict[str, Any]]:
    """A new profile's triggers held back by quiet hours: none (``domain.customer.new_state``)."""
    return []


def fold_delivered(w: State, lo: State, out: State, rules: Rules) -> list[Delivered]:
    """``domain.fold``'s rule for ``delivered`` (``FOLDERS``): both logs, a trigger id once,
    in event time, the latest ``DELIVERED_KEPT``."""
    seen = {d[2] for d in w["delivered"]}
    merged: list[Delivered] = [*w["delivered"], *(d for d in lo["delivered"] if d[2] not in seen)]
    return sorted(merged, key=lambda d: (d[1], d[2]))[-DELIVERED_KEPT:]


def _hhmm(text: str) -> daytime:
    hours, _, minutes = text.partition(":")
    return daytime(int(hours), int(minutes))


def quiet_until(at_ms: int, rules: Rules) -> int | None:
    """The end of the quiet hours ``at_ms`` falls in (program time zone), or None."""
    quiet = rules.triggers.quiet_hours
    if quiet is None:
        return None
    tz = ZoneInfo(rules.program.timezone)
    local = datetime.fromtimestamp(at_ms / 1000, tz)
    start, end = _hhmm(quiet.start), _hhmm(quiet.end)
    now = local.time()
    if start <= end:
        inside, day = start <= now < end, local.date()
    else:  # across midnight
        inside = now >= start or now < end
        day = local.date() + timedelta(days=1) if now >= start else local.date()
    if not inside:
        return None
    return int(datetime.combine(day, end, tzinfo=tz).timestamp() * 1000)


def emit(state: State, proposal: Proposal, now_ms: int, rules: Rules) -> Decision:
    """A proposal through quiet hours and the guard chain: delivered, deferred or audited.

    ``now_ms`` is the wall clock at which ingest saw the record that set the decision off (an
    event, or the tick of an idle partition): deterministic for the oracle, and a replay
    re-ingests with today's clock, so last year's decisions are stale.
    """
    payload = proposal.trigger
    if not payload.get("released"):
        until = quiet_until(payload["at"], rules)
        if until is not None:
            deferred = dict(payload, due=until, released=True)
            held = [*state["deferred"], deferred]
            if len(held) > DEFERRED_MAX:
                held = sorted(held, key=lambda d: (d["due"], d["at"], d["type"], d["cause"]))
                held = held[:DEFERRED_MAX]
            state["deferred"] = held
            if deferred not in held:  # beyond DEFERRED_MAX and due last: not held (counted)
                return StateCapped(state["customer_id"], "deferred", payload["at"])
            return TriggerDeferred(payload["type"], state["customer_id"], deferred)
    envelope, suppressed = guard(state, payload, now_ms, rules)
    if suppressed is None:
        return TriggerOut(envelope["type"], envelope["customer_id"], envelope)
    audit = dict(envelope, suppressed_reason=suppressed)
    return TriggerAudit(envelope["type"], envelope["customer_id"], suppressed, audit)


def next_deferred(state: State) -> tuple[int, int] | None:
    """(due, index) of the earliest trigger held back by quiet hours."""
    pending = [(d["due"], i) for i, d in enumerate(state["deferred"])]
    return min(pending) if pending else None


def next_deferred_at(state: State) -> int | None:
    """When the earliest trigger held back by quiet hours is due."""
    deferred = state["deferred"]
    return min(d["due"] for d in deferred) if deferred else None


def release(state: State, index: int) -> Proposal:
    deferred = state["deferred"]
    state["deferred"] = deferred[:index] + deferred[index + 1 :]
    return Proposal(deferred[index])


def fold_deferred(w: State, lo: State, out: State, rules: Rules) -> list[dict[str, Any]]:
    """``domain.fold``'s rule for ``deferred`` (``FOLDERS``): both profiles' held triggers,
    one per (type, cause), the earliest due ``DEFERRED_MAX``."""
    seen = {(d["type"], d["cause"]) for d in w["deferred"]}
    held = [
        *w["deferred"],
        *(d for d in lo["deferred"] if (d["type"], d["cause"]) not in seen),
    ]
    if len(held) > DEFERRED_MAX:
        held = sorted(held, key=lambda d: (d["due"], d["at"], d["type"], d["cause"]))
        held = held[:DEFERRED_MAX]
    return held
