"""Erasure and access requests (docs/domain.md, "Privacy"), on the identity records of a customer.

Erasure replaces the live profile and the home of every identifier it held with an erasure
marker (``domain.records.Erased``): the customer id, when it was erased (ingest wall time), a
version and the request's event fingerprint (a digest of its event id, which tells a second
delivery of the request from a new one; with those of the erasures the profile was started
after), nothing else (the erased profile's own marker also
holds what it waits for Redis with, ``unconfirmed``, until Redis confirmed the deletion).
The marker is what the changelog keeps for those keys, so a worker restoring the table never
brings the customer back, and it tells a record still in flight from the erasure (older:
dropped) from the same identifier seen again (newer: a new profile, nothing of the old).

An access export can be larger than any record Kafka takes (a customer with years of orders):
``export_parts`` cuts its JSON text into numbered parts that each fit a byte budget (README,
"Access exports in parts").
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import orjson

from touchstream.config.rules import Rules
from touchstream.domain import carts, decision, records
from touchstream.domain.clock import iso
from touchstream.domain.customer import event_fingerprint, known_requests, request_marks
from touchstream.domain.decision import Export, Receipt
from touchstream.domain.identity import home_of, strongest
from touchstream.domain.state import State, Stored
from touchstream.domain.step import Step


def marker(
    customer_id: str,
    erased_at: int,
    version: int,
    unconfirmed: dict[str, Any] | None = None,
    requests: list[str] | None = None,
) -> records.Erased:
    return records.Erased(
        customer_id=customer_id,
        erased_at=erased_at,
        version=version,
        unconfirmed=unconfirmed,
        requests=requests,
    )


def erase(
    target: str,
    state: State | None,
    ev: dict[str, Any],
    rules: Rules,
    known: list[str] | None = None,
) -> Step:
    """``erasure_requested`` reaching the customer's live profile (or an unknown id).

    The marker waits, ``unconfirmed``, until Redis confirmed the deletion (``confirm``): it
    holds what the removal needs again after a restart or a rebalance (the alias keys and the
    identifier homes, as the profile held them) and the receipt, which holds counts and the
    kinds removed, never an identifier, and the timers the profile had pending. Both go when
    the receipt is sent."""
    erased_at = int(ev.get("ts", 0))
    identifiers: dict[str, list[str]] = state["identifiers"] if state else {}
    version = (state["version"] if state else 0) + 1
    # how a second delivery of it, or of an erasure the profile was started after, is known
    # (``domain.linking.handle``), at its own marker and at its identifiers' homes alike
    # (``known``: those of the marker a request erases again, ``erase_again``)
    before = (state.get("erased_by") or []) if state else (known or [])
    requests = known_requests(before, request_marks(ev))
    homes = []
    sends = []
    for kind, values in identifiers.items():
        for value in values:
            home = home_of(kind, value)
            if home != target:
                homes.append(home)
                forget = {"k": "forget", "via": [kind, value], "erased_at": erased_at}
                forget["requests"] = requests
                sends.append((home, {**forget, "at": ev["at"], "id": ev["id"], "ts": 0}))
    # the home the request was sent to, and every redirect it passed on its way here
    # (``linking._event``), when they no longer point at this profile (a marker of an earlier
    # erasure meanwhile, or a profile started there since): a second delivery of the request
    # goes through them, so they must know it too (``remember``, ``forget``)
    passed = [ev.get("cid"), *ev.get("passed", ())]
    for home in dict.fromkeys(h for h in passed if h and h != target and h not in homes):
        kind = strongest(ev["ids"])
        forget = {"k": "forget", "via": [kind, ev["ids"][kind]], "erased_at": erased_at}
        forget["requests"] = requests
        sends.append((home, {**forget, "at": ev["at"], "id": ev["id"], "ts": 0}))
    counts = {kind: len(values) for kind, values in identifiers.items()}
    aliases = [[kind, value] for kind, values in identifiers.items() for value in values]
    receipt = {
        "request_id": ev["props"].get("request_id", ""),
        "customer_id": target,
        "requested_at": erased_at,
        "occurred_at": ev["at"],
        "known_customer": state is not None,
        "kinds_removed": sorted(kind for kind, n in counts.items() if n),
        "removed": {
            "profiles": 1 + len(homes),  # the profile and its identifiers' homes
            "redis_keys": 1 + len(homes) + len(aliases),  # profiles and alias keys
            "identifiers": counts,
            "orders": len(state["orders"]) if state else 0,
            "carts": len(state["carts"]) if state else 0,
            "timers": pending_timers(state, rules) if state else 0,
        },
    }
    waiting = {"aliases": aliases, "homes": sorted(homes), "receipt": receipt}
    step = Step(
        store=marker(target, erased_at, version, waiting, requests),
        sends=sends,
        identifiers_changed=True,
    )
    step.decisions.append(decision.Erased(target))
    return step


def erase_again(target: str, state: records.Erased, ev: dict[str, Any], rules: Rules) -> Step:
    """A new erasure request reaching an erasure marker: answered whatever the suppression of
    erased identifiers or the time of the request (every request gets its receipt, README,
    "Privacy"), with nothing left to remove but what the marker still waits for Redis with.
    The marker is numbered past the old one and keeps the requests it knew; a receipt still
    waiting for Redis goes out with this one's, on the confirmation of the removals the
    worker's Redis queue merges (``serving.redis_sync.remove``), whose aliases and homes this
    marker holds for a restart."""
    step = erase(target, None, ev, rules, list(state.requests or ()))
    fresh = step.store
    assert isinstance(fresh, records.Erased) and fresh.unconfirmed is not None
    waiting = dict(fresh.unconfirmed)
    old = state.unconfirmed
    if old is not None:  # the earlier request's receipt, still waiting for Redis
        added = [a for a in waiting["aliases"] if a not in old["aliases"]]
        waiting["aliases"] = [*old["aliases"], *added]
        waiting["homes"] = sorted(set(old["homes"]) | set(waiting["homes"]))
        waiting["earlier"] = [*old.get("earlier", ()), old["receipt"]]
    step.store = marker(
        target, max(state.erased_at, fresh.erased_at), state.version + 1, waiting, fresh.requests
    )
    return step


def remember(state: records.Erased, msg: dict[str, Any]) -> Step:
    """Another erasure's ``forget`` reaching a home that is a marker already: the marker learns
    the requests it names (a second delivery of one, sent to this home, is then known), and
    changes nothing else."""
    held = list(state.requests or ())
    requests = known_requests(held, _sent(msg))
    if requests == held:
        return Step()
    return Step(store=msgspec.structs.replace(state, requests=requests))


def _sent(forget: dict[str, Any]) -> list[str]:
    """The request marks a ``forget`` carries (one sent before they were kept: its own id)."""
    return forget.get("requests") or [event_fingerprint(forget["id"])]


def pending_timers(state: State, rules: Rules) -> int:
    """How many timers a live profile has pending: its carts' reminders, its triggers held
    back by quiet hours, its open session (an erasure receipt counts them)."""
    reminders = sum(1 for c in state["carts"].values() if carts.cart_reminder(c, rules))
    return reminders + len(state["deferred"]) + (state["session"] is not None)


def confirm(target: str, state: records.Erased, msg: dict[str, Any]) -> Step:
    """Redis confirmed the deletion of the erasure marked ``version``: the receipt goes out
    (``completed_at``: when the confirmation was sent) and the marker keeps no more than its
    id, time, version and the requests it knows."""
    waiting = state.unconfirmed
    if waiting is None or msg.get("version") != state.version:
        return Step()  # confirmed already (a redelivery), or for an erasure since replaced
    completed_at = int(msg.get("ts", 0))
    receipts = [*waiting.get("earlier", ()), waiting["receipt"]]  # (``erase_again``)
    store = marker(target, state.erased_at, state.version + 1, requests=state.requests)
    return Step(store=store, decisions=[Receipt(**r, completed_at=completed_at) for r in receipts])


def published(receipt: Receipt) -> dict[str, Any]:
    """The record for ``privacy.receipts`` (README, "Privacy"): times in ISO 8601."""
    return {
        "request_id": receipt.request_id,
        "customer_id": receipt.customer_id,
        "requested_at": iso(receipt.requested_at),
        "occurred_at": iso(receipt.occurred_at),
        "known_customer": receipt.known_customer,
        "kinds_removed": receipt.kinds_removed,
        "removed": receipt.removed,
        "completed_at": iso(receipt.completed_at),
    }


def unconfirmed(state: Stored | None) -> dict[str, Any] | None:
    """What an erasure marker still waits for Redis with (None: nothing)."""
    return state.unconfirmed if isinstance(state, records.Erased) else None


def forget(target: str, state: State | records.Redirect | None, msg: dict[str, Any]) -> Step:
    """The home of an erased customer's identifier becomes a marker too."""
    if isinstance(state, dict):
        # a live profile of its own (the identifier moved on, or a profile started there
        # since): kept, but it learns the requests, so a second delivery of one sent to this
        # home erases nothing here
        known = list(state.get("erased_by") or ())
        learned = known_requests(known, _sent(msg))
        if learned == known:
            return Step()
        return Step(store=dict(state, erased_by=learned), profile_unchanged=True)
    version = (state.version if state is not None else 0) + 1
    # the requests ``erase`` knows (a forget sent before they were kept: its own id); a home
    # that is a marker already learns them in ``remember``
    return Step(
        store=marker(target, msg["erased_at"], version, requests=_sent(msg)),
        identifiers_changed=True,
    )


def export(state: State, ev: dict[str, Any], profile: dict[str, Any]) -> Export:
    """Everything held about a customer, for ``privacy.exports`` (GDPR Art. 15, CCPA)."""
    return Export(state["customer_id"], everything(state, ev, profile))


def everything(state: State, ev: dict[str, Any], profile: dict[str, Any]) -> dict[str, Any]:
    """The export's document: everything held about the customer."""
    return {
        "request_id": ev["props"].get("request_id", ""),
        "customer_id": state["customer_id"],
        "profile": profile,
        "identifiers": state["identifiers"],  # as stored: email and phone are keyed hashes
        "consent": records.builtins(state["consent"]),  # purpose -> Grant, as the dict it replaces
        "ledger": {
            "points": state["points"],
            "signup_bonus_at": state["signup_bonus_at"],
            "orders": records.builtins(state["orders"]),  # order id -> Order, as the dicts
            "orders_folded": records.builtins(
                state.get("past")
            ),  # older orders, as aggregates (domain.state_bounds)
            "returns": records.builtins(state["returns"]),  # return id -> Return
            "redemptions": state["redemptions"],
        },
        "carts": records.builtins(state["carts"]),  # cart id -> Cart, as the dict it replaces
        "first_seen_at": state["first_seen_at"],
        "last_event_at": state["last_event_at"],
        "event_counts": state["events"],
        "merged_ids": [mark.split("@", 1)[0] for mark in state["merged"]],
        "at": ev["at"],
    }


# the smallest slice of export text a part carries, whatever the budget says: a budget below
# the envelope's own size makes parts over the limit (dead-lettered as output_refused) rather
# than millions of parts
MIN_PART_CHARS = 256
EXPORT_FORMAT = "json-text-parts/1"


def export_parts(export: dict[str, Any], budget: int) -> list[dict[str, Any]]:
    """``export`` as records of at most ``budget`` bytes each once encoded with orjson.

    Every part carries the request and customer ids, ``part`` (1-based), ``parts`` (how
    many), the export's ``sha256`` (of its whole JSON text) and ``data``: a slice of that
    text. Concatenated in part order, the slices are the export's JSON text exactly.
    Deterministic: the same export and budget give the same parts (replays repeat them)."""
    text = orjson.dumps(export).decode()
    envelope = {
        "format": EXPORT_FORMAT,
        "request_id": export.get("request_id", ""),
        "customer_id": export.get("customer_id", ""),
        "at": export.get("at"),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
    # the envelope at its largest part numbers, with an empty slice
    widest = {**envelope, "part": 10**9, "parts": 10**9, "data": ""}
    room = max(budget - len(orjson.dumps(widest)), MIN_PART_CHARS)
    slices = []
    start = 0
    while start < len(text):
        count = min(room, len(text) - start)
        while True:
            size = len(orjson.dumps(text[start : start + count])) - 2  # escapes, UTF-8
            if size <= room or count <= MIN_PART_CHARS:
                break
            count = max(min(count * room // size, count - 1), MIN_PART_CHARS)
        slices.append(text[start : start + count])
        start += count
    total = len(slices) or 1
    return [
        {**envelope, "part": number, "parts": total, "data": data}
        for number, data in enumerate(slices or [""], start=1)
    ]


def reassemble(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The export from all of its parts, in any order, duplicates included (what a
    downstream consumer does; raises ValueError if a part is missing or the text is not the
    export it claims to be)."""
    if not parts:
        raise ValueError("no parts")
    by_number = {p["part"]: p for p in parts}
    total = parts[0]["parts"]
    missing = set(range(1, total + 1)) - set(by_number)
    if missing:
        raise ValueError(f"parts missing: {sorted(missing)}")
    text = "".join(by_number[n]["data"] for n in range(1, total + 1))
    if hashlib.sha256(text.encode()).hexdigest() != parts[0]["sha256"]:
        raise ValueError("the parts do not make the export their sha256 names")
    result: dict[str, Any] = orjson.loads(text)
    return result
