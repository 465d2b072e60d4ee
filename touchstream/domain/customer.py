"""Per-customer state and the pure ``apply`` that every delivery of an event goes through.

State is a plain dict (it is the Faust table value, serialised with orjson). Idempotency is
part of the record itself, so the changelog carries the effect and its guard atomically:
``src`` holds the highest inbound offset applied per inbound partition (redelivery, rewinds),
``seen`` the most recent event ids (a producer sending the same event twice), and the ledger
(``orders``, ``returns``, ``redemptions``) the orders, refunds and redemptions already counted
by their own ids (``domain.loyalty``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from touchstream.config.rules import Rules
from touchstream.domain import carts, consent, loyalty, rfm, sessions, state_bounds
from touchstream.domain.decision import Decision
from touchstream.domain.identity import PRIORITY, strongest
from touchstream.domain.migrate import FORMAT

SEEN_LIMIT = 64
REFUSED_LIMIT = 16  # refused links remembered, so each is reported once
ASKED_LIMIT = 16  # links asked for and not joined yet; one pushed out is only asked again


@dataclass
class Outcome:
    state: dict[str, Any]
    decisions: list[Decision] = field(default_factory=list)
    duplicate: bool = False


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
        "seen": [],
        "points": 0,
        "qualifying_spend_minor": 0,
        "orders": {},
        "returns": {},
        "redemptions": {},  # redemption id -> [points taken, event time] (domain.state_bounds)
        "past": None,  # aggregates of orders folded out of the windows (domain.state_bounds)
        "ids": None,  # ids of folded orders and returns, kept for ID_SPAN (domain.state_bounds)
        "loyalty": loyalty.initial(),
        "rfm": rfm.initial(),
        "signup_bonus_at": None,
        "first_purchase_at": None,
        "last_purchase_at": None,
        "first_seen_at": None,
        "last_event_at": None,
        "events": {},
        "carts": {},
        "carts_closed_until": None,
        "consent": {},
        "delivered": [],
        "deferred": [],
        "session": None,
        "late_events": 0,
        "rewards": [],
        "unlocks": {},  # reward threshold -> times unlocked (names each crossing)
        "identifiers": identifiers,
    }


def src_key(home: str, customer_id: str, partition: int) -> str:
    """Dedup key of an event's route: inbound partition, plus its home when forwarded.

    Events reach a profile in inbound-offset order per route (per home they were sent to), not
    overall: a high-watermark per route stays exact when redirects forward events.
    """
    return str(partition) if home == customer_id else f"{home}/{partition}"


def event_fingerprint(event_id: str) -> str:
    return hashlib.blake2b(event_id.encode(), digest_size=8).hexdigest()


def apply(state: dict[str, Any] | None, event: dict[str, Any], rules: Rules) -> Outcome:
    """Apply one internal event; applying the same delivery twice changes nothing."""
    if state is None:
        kind = strongest(event["ids"])
        state = new_state(event["cid"], kind, event["ids"][kind], event["at"])
    partition, offset = event["in"]
    src: dict[str, int] = state["src"]
    pkey = src_key(event["cid"], state["customer_id"], partition)
    if src.get(pkey, -1) >= offset:
        return Outcome(state, duplicate=True)
    state = dict(state, src=dict(src, **{pkey: offset}))
    fingerprint = event_fingerprint(event["id"])
    if fingerprint in state["seen"]:
        return Outcome(state, duplicate=True)
    state["seen"] = [*state["seen"][-(SEEN_LIMIT - 1) :], fingerprint]

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
    return Outcome(state, decisions)


def _track(state: dict[str, Any], event: dict[str, Any]) -> None:
    at = event["at"]
    if state["first_seen_at"] is None or at < state["first_seen_at"]:
        state["first_seen_at"] = at
    if state["last_event_at"] is None or at > state["last_event_at"]:
        state["last_event_at"] = at
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
