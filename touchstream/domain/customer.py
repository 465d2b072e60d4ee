"""Per-customer state and the pure ``apply`` that every delivery of an event goes through.

State is a plain dict (it is the Faust table value, serialised with orjson). Idempotency is
part of the record itself, so the changelog carries the effect and its guard atomically:
``src`` holds the highest inbound offset applied per inbound topic identity and partition
(redelivery, rewinds), ``seen`` the event ids of a span of event time (a producer sending the
same event twice), and the ledger
(``orders``, ``returns``, ``redemptions``) the orders, refunds and redemptions already counted
by their own ids (``domain.loyalty``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from touchstream.config.rules import Rules
from touchstream.domain import carts, consent, loyalty, rfm, sessions, state_bounds, triggers
from touchstream.domain.clock import MS_PER_DAY
from touchstream.domain.decision import Decision
from touchstream.domain.identity import PRIORITY, strongest
from touchstream.domain.migrate import FORMAT
from touchstream.domain.state import Stored

# Event ids are remembered for SEEN_SPAN_MS of the profile's event time after they were seen:
# the input topic's retention (7 days) plus the DLQ's (7 days), the longest a copy of an
# applied event can still come back from Kafka (a mirrored or re-created input topic read from
# its start, a parked copy replayed from the DLQ), where the offset memory cannot help. At most
# SEEN_CAP ids are kept (about 30 KB of state); the cap pushing out an id still inside the span
# is counted (``Outcome.seen_evicted``, touchstream_dedup_ids_evicted_total) and alerted.
SEEN_SPAN_MS = 14 * MS_PER_DAY
SEEN_CAP = 1024
REFUSED_LIMIT = 16  # refused links remembered, so each is reported once
ASKED_LIMIT = 16  # links asked for and not joined yet; one pushed out is only asked again


@dataclass
class Outcome:
    state: dict[str, Any]
    decisions: list[Decision] = field(default_factory=list)
    duplicate: bool = False
    seen_evicted: int = 0  # event ids still inside the span pushed out by SEEN_CAP


def new_state(
    customer_id: str, kind: str | None = None, value: str | None = None, at: int = 0
) -> dict[str, Any]:
    """A live profile, created by (and holding) the identifier whose home ``customer_id`` is.

    ``rank`` orders profiles for a merge (strongest identifier kind, then the older profile,
    then the id); it never changes, so two workers deciding the same merge agree on the
    survivor and redirects can never form a cycle.
    """
    identifiers = {kind: [value]} if kind is not None and value is not None else {}
    prio = PRIORITY[kind] if kind is not None else len(PRIORITY)
    return {
        "fmt": FORMAT,  # domain.migrate: the state's format version
        "customer_id": customer_id,
        "rank": [prio, at, customer_id],
        "merged": [],
        "refused": [],
        "asked": [],
        "pending": {},
        "version": 0,
        "src": {},
        "seen": {},
        "points": 0,
        "qualifying_spend_minor": 0,
        "orders": loyalty.default_orders(),  # order id -> records.Order
        "returns": loyalty.default_returns(),  # return id -> records.Return
        "redemptions": {},  # redemption id -> [points taken, event time] (domain.state_bounds)
        "past": None,  # aggregates of orders folded out of the windows (domain.state_bounds)
        "ids": None,  # ids of folded orders and returns, kept for ID_SPAN (domain.state_bounds)
        "loyalty": loyalty.default(),
        "rfm": rfm.default(),
        "signup_bonus_at": None,
        "first_purchase_at": None,
        "last_purchase_at": None,
        "first_seen_at": None,
        "last_event_at": None,
        # the highest time an applied event moved its partition's clock to (its claimed time,
        # capped past its broker timestamp: streams.timer_index); the clock resumes from it
        "clock_at": None,
        "events": {},
        "carts": carts.default(),
        "carts_closed_until": None,
        "consent": consent.default(),
        "delivered": triggers.default_delivered(),
        "deferred": triggers.default_deferred(),
        "session": sessions.default(),
        "late_events": 0,
        "rewards": [],
        "unlocks": {},  # reward threshold -> times unlocked (names each crossing)
        "identifiers": identifiers,
    }


def src_key(home: str, customer_id: str, partition: int, topic: str | None = None) -> str:
    """Dedup key of an event's route: inbound topic identity and partition, plus its home when
    forwarded.

    Events reach a profile in inbound-offset order per route (per home they were sent to), not
    overall: a high-watermark per route stays exact when redirects forward events. ``topic``
    is the inbound topic's identity (``streams.topic_identity``): a re-created, mirrored or
    second input topic starts its own offsets, never compared with another topic's. Keys
    without it (``None``) are those of states and events written before identities existed.
    """
    route = str(partition) if topic is None else f"{topic}:{partition}"
    return route if home == customer_id else f"{home}/{route}"


def event_fingerprint(event_id: str) -> str:
    return hashlib.blake2b(event_id.encode(), digest_size=8).hexdigest()


# marks of erasure requests (two each: event id, request id) a profile remembers being started
# after, and a marker knows (domain.linking, domain.privacy)
ERASED_BY_KEPT = 16


def known_requests(held: Iterable[str], new: Iterable[str]) -> list[str]:
    """``held`` request marks, then ``new`` ones not held yet, the latest ``ERASED_BY_KEPT``."""
    return list(dict.fromkeys([*held, *new]))[-ERASED_BY_KEPT:]


def request_marks(event: dict[str, Any]) -> list[str]:
    """How an erasure request is known again (docs/domain.md, "Privacy"): the fingerprint of
    its event id, and of its ``request_id`` when it has one (a requester's tool that sends the
    same request again as a new event)."""
    marks = [event_fingerprint(event["id"])]
    request_id = (event.get("props") or {}).get("request_id")
    if request_id:
        marks.append(event_fingerprint(f"request_id:{request_id}"))
    return marks


def seen_entries(seen: dict[str, int] | list[Any], at: int) -> dict[str, int]:
    """``seen`` as {fingerprint: event time remembered at}, oldest first (a dict: one look-up
    per event, whatever its size). Earlier formats were lists, of [fingerprint, time] pairs or
    of bare fingerprints (the 64 latest ids, before spans), which count as seen at ``at``."""
    if isinstance(seen, dict):
        return seen
    return (
        {e[0]: e[1] for e in seen}
        if seen and isinstance(seen[0], list)
        else dict.fromkeys(seen, at)
    )


def forget_old(kept: dict[str, int]) -> int:
    """Forget the ids of ``kept`` (a new dict, oldest first) older than the span before its
    newest, then push out the oldest beyond SEEN_CAP; how many of those pushed out were still
    inside the span."""
    if not kept:
        return 0
    horizon = next(reversed(kept.values())) - SEEN_SPAN_MS
    stale = 0
    for at in kept.values():  # the newest is never older than the horizon
        if at >= horizon:
            break
        stale += 1
    evicted = max(0, len(kept) - stale - SEEN_CAP)
    for fingerprint in list(islice(kept, stale + evicted)):
        del kept[fingerprint]
    return evicted


def apply(state: dict[str, Any] | None, event: dict[str, Any], rules: Rules) -> Outcome:
    """Apply one internal event; applying the same delivery twice changes nothing."""
    if state is None:
        kind = strongest(event["ids"])
        state = new_state(event["cid"], kind, event["ids"][kind], event["at"])
    pkey, legacy, offset = _route(state, event)
    if offset is None:
        return Outcome(state, duplicate=True)
    routes = dict(state["src"])
    if legacy is not None:
        routes.pop(legacy, None)
    routes[pkey] = offset
    state = dict(state, src=routes)
    fingerprint = event_fingerprint(event["id"])
    seen = _seen(state, event)
    if fingerprint in seen:
        return Outcome(state, duplicate=True)
    # remembered at the latest event time the memory holds: an id stays for the span after
    # the profile's clock saw it, however late the event itself was
    stamp = event["at"]
    if seen:
        stamp = max(stamp, next(reversed(seen.values())))
    kept = dict(seen)  # a new dict: the state before this event may still be read
    kept[fingerprint] = stamp
    evicted = forget_old(kept)
    state["seen"] = kept

    decisions: list[Decision] = []
    sessions.track(state, event, rules, decisions)
    handler = HANDLERS.get(event["type"])
    if handler is not None:
        points_before = state["points"]
        handler(state, event, rules, decisions)
        if state["points"] != points_before:
            loyalty.rewards(state, event["at"], rules, decisions)
    _track(state, event)
    state["version"] += 1
    return Outcome(state, decisions, seen_evicted=evicted)


def applied_before(state: Stored | None, event: dict[str, Any]) -> bool:
    """True if ``apply`` would skip ``event`` as a delivery it applied already (by its input
    offset or its id): a redelivered command fires no timers
    (``streams.timer_index.TimerIndex.command_time``). An erasure goes to ``privacy.erase``,
    not ``apply``: it is skipped only by a profile started after it (``erased_again``)."""
    if not isinstance(state, dict):
        return False
    if event.get("type") == "erasure_requested":
        return erased_again(state, event)
    return _route(state, event)[2] is None or event_fingerprint(event["id"]) in _seen(state, event)


def erased_again(state: dict[str, Any], event: dict[str, Any]) -> bool:
    """True if ``event`` is an erasure request this profile was started after, delivered again
    (a producer's retry, ingest's replay; ``domain.linking.handle`` skips it). Its claimed time
    may be later than the erasure's ingest time (``erased_before``), so event time alone does
    not tell it from a new request."""
    requests = state.get("erased_by")
    return (
        requests is not None
        and event.get("type") == "erasure_requested"
        and any(mark in requests for mark in request_marks(event))
    )


def _route(state: dict[str, Any], event: dict[str, Any]) -> tuple[str, str | None, int | None]:
    """The key of ``event``'s input partition in ``state["src"]``, the key from before topic
    identities it replaces (or None), and the event's offset there (None: applied already)."""
    partition, offset, *identity = event["in"]
    topic = identity[0] if identity else None
    src: dict[str, int] = state["src"]
    pkey = src_key(event["cid"], state["customer_id"], partition, topic)
    high = src.get(pkey)
    legacy = None
    if high is None and topic is not None and src:  # (a new state has no routes at all)
        # a state from before topic identities: its partition's offset belongs to the topic
        # the first event carrying an identity comes from (the input topic of the upgrade)
        legacy = src_key(event["cid"], state["customer_id"], partition)
        high = src.get(legacy)
    return pkey, legacy, (None if high is not None and high >= offset else offset)


def _seen(state: dict[str, Any], event: dict[str, Any]) -> dict[str, int]:
    """The ids the state remembers applying, with when (a list in states from before then)."""
    seen = state["seen"]
    if not isinstance(seen, dict):
        seen = seen_entries(seen, max(event["at"], state["last_event_at"] or 0))
    return seen


def _track(state: dict[str, Any], event: dict[str, Any]) -> None:
    at = event["at"]
    if state["first_seen_at"] is None or at < state["first_seen_at"]:
        state["first_seen_at"] = at
    if state["last_event_at"] is None or at > state["last_event_at"]:
        state["last_event_at"] = at
    capped = event.get("ct")
    if capped is not None and (state.get("clock_at") is None or capped > state["clock_at"]):
        state["clock_at"] = capped
    events = dict(state["events"])
    events[event["type"]] = events.get(event["type"], 0) + 1
    state["events"] = events


def _purchase(
    state: dict[str, Any], event: dict[str, Any], rules: Rules, decisions: list[Decision]
) -> None:
    if not loyalty.purchase(state, event, rules, decisions):
        return
    at = event["at"]
    if state["first_purchase_at"] is None or at < state["first_purchase_at"]:
        state["first_purchase_at"] = at
    if state["last_purchase_at"] is None or at > state["last_purchase_at"]:
        state["last_purchase_at"] = at
    carts.close_by_purchase(state, event)
    state_bounds.compact(state, at, rules, decisions)
    loyalty.evaluate(state, at, rules, decisions)
    decisions.extend(rfm.evaluate(state, at, rules))


def _return(
    state: dict[str, Any], event: dict[str, Any], rules: Rules, decisions: list[Decision]
) -> None:
    applied = loyalty.refund(state, event, rules, decisions)
    state_bounds.compact(state, event["at"], rules, decisions)
    if applied:
        loyalty.evaluate(state, event["at"], rules, decisions)
        decisions.extend(rfm.evaluate(state, event["at"], rules))


def _redemption(
    state: dict[str, Any], event: dict[str, Any], rules: Rules, decisions: list[Decision]
) -> None:
    applied = loyalty.redeem(state, event, rules, decisions)
    state_bounds.compact(state, event["at"], rules, decisions)
    if applied:
        loyalty.evaluate(state, event["at"], rules, decisions)


def _loyalty_signup(
    state: dict[str, Any], event: dict[str, Any], rules: Rules, decisions: list[Decision]
) -> None:
    if loyalty.signup(state, event, rules, decisions):
        loyalty.evaluate(state, event["at"], rules, decisions)


def _add_to_cart(
    state: dict[str, Any], event: dict[str, Any], rules: Rules, decisions: list[Decision]
) -> None:
    carts.change(state, event, +1, decisions)


def _remove_from_cart(
    state: dict[str, Any], event: dict[str, Any], rules: Rules, decisions: list[Decision]
) -> None:
    carts.change(state, event, -1, decisions)


def _consent_updated(
    state: dict[str, Any], event: dict[str, Any], rules: Rules, decisions: list[Decision]
) -> None:
    consent.update(state, event)
    if "profiling" in event["props"].get("purposes", {}):
        decisions.extend(rfm.evaluate(state, event["at"], rules))


HANDLERS = {
    "consent_updated": _consent_updated,
    "purchase": _purchase,
    "add_to_cart": _add_to_cart,
    "remove_from_cart": _remove_from_cart,
    "loyalty_signup": _loyalty_signup,
    "return": _return,
    "redemption": _redemption,
}
