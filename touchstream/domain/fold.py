"""Folding an absorbed profile into its survivor: one rule per field of the customer state.

Every field of ``customer.new_state`` has an entry in ``FOLDERS`` (a unit test holds that
true), so a capability that adds state also says how it merges. Rules are order-insensitive
(sums, unions, min/max; the merged orders are priced again in event time), and an order or
bonus both profiles hold is counted once, so folding the same pair either way round gives the
same ledger. Fields are folded in ``FOLDERS`` order; a rule may read fields folded before it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from touchstream.config.rules import Rules
from touchstream.domain import carts, consent, loyalty, rfm, sessions, state_bounds
from touchstream.domain.customer import (
    ASKED_LIMIT,
    REFUSED_LIMIT,
    forget_old,
    known_requests,
    seen_entries,
)
from touchstream.domain.decision import Decision
from touchstream.domain.identity import held_marks
from touchstream.domain.migrate import FORMAT, migrate
from touchstream.domain.records import lift
from touchstream.domain.state import State
from touchstream.domain.triggers import fold_deferred, fold_delivered

Folder = Callable[[State, State, State, Rules], Any]
MERGED_LIMIT = 64


def _keep(name: str) -> Folder:
    return lambda w, lo, out, rules: w[name]


def _min(name: str) -> Folder:
    def fold(w: State, lo: State, out: State, rules: Rules) -> Any:
        values = [v for v in (w[name], lo[name]) if v is not None]
        return min(values) if values else None

    return fold


def _max(name: str) -> Folder:
    def fold(w: State, lo: State, out: State, rules: Rules) -> Any:
        values = [v for v in (w[name], lo[name]) if v is not None]
        return max(values) if values else None

    return fold


def _src(w: State, lo: State, out: State, rules: Rules) -> dict[str, int]:
    # the loser's own routes (bare partition keys) now arrive forwarded, named by their home
    merged = dict(w["src"])
    for key, offset in lo["src"].items():  # "partition" or "topic-identity:partition"
        route = key if "/" in key else f"{lo['customer_id']}/{key}"
        merged[route] = max(offset, merged.get(route, -1))
    return merged


def _seen(w: State, lo: State, out: State, rules: Rules) -> dict[str, int]:
    # both memories as one, each id at the later time either remembered it, oldest first, then
    # the span and the cap applied as to one profile's memory (ties keep a fixed order)
    stamps: dict[str, int] = {}
    for s in (w, lo):
        for fingerprint, at in seen_entries(s["seen"], s["last_event_at"] or 0).items():
            stamps[fingerprint] = max(at, stamps.get(fingerprint, at))
    merged = dict(sorted(stamps.items(), key=lambda e: (e[1], e[0])))
    forget_old(merged)
    return merged


def _points(w: State, lo: State, out: State, rules: Rules) -> int:
    # the balance apart from orders (bonuses, redemptions, expiries) adds up; the orders are
    # priced again together, so the result does not depend on which profile earned an order
    total = w["points"] + lo["points"]
    if w["signup_bonus_at"] is not None and lo["signup_bonus_at"] is not None:
        total -= rules.loyalty.signup_bonus
    for rid, (spent, _) in lo["redemptions"].items():
        if rid in w["redemptions"]:
            total += spent  # the same redemption, seen by both: spent once
    if loyalty.sole_ledger(w, lo) is not None:
        return int(total)  # its orders are the merged book as they are: their points stay
    # an order one profile folded into ``past`` and the other still holds: its points are in
    # the folding profile's ``past`` (so outside the orders) and leave the merged order book
    held = sum(loyalty.held_points(o) for s in (w, lo) for o in s["orders"].values())
    return int(total - held + sum(loyalty.held_points(o) for o in out["orders"].values()))


def _spend(w: State, lo: State, out: State, rules: Rules) -> int:
    live = sum(o.net - o.ref for o in out["orders"].values())
    return int(live + state_bounds.past_of(out).spend)


def _redemptions(w: State, lo: State, out: State, rules: Rules) -> dict[str, list[int]]:
    return {**lo["redemptions"], **w["redemptions"]}  # bounded by ``fold`` (domain.state_bounds)


def _pending(w: State, lo: State, out: State, rules: Rules) -> dict[str, Any]:
    # the fold settles the survivor's reservation for the loser; the loser's own reservations
    # now wait here, where those profiles' folds will be forwarded
    merged = {**lo["pending"], **w["pending"]}
    merged.pop(lo["customer_id"], None)
    return merged


def _events(w: State, lo: State, out: State, rules: Rules) -> dict[str, int]:
    counts = dict(w["events"])
    for kind, n in lo["events"].items():
        counts[kind] = counts.get(kind, 0) + n
    return counts


def _identifiers(w: State, lo: State, out: State, rules: Rules) -> dict[str, list[str]]:
    merged = {kind: list(values) for kind, values in w["identifiers"].items()}
    for kind, values in lo["identifiers"].items():
        known = merged.setdefault(kind, [])
        known.extend(v for v in values if v not in known)
    return merged


def _merged(w: State, lo: State, out: State, rules: Rules) -> list[str]:
    marks = [*w["merged"], *(m for m in lo["merged"] if m not in w["merged"])]
    marks.append(fold_mark(lo))
    return marks[-MERGED_LIMIT:]


def _refused(w: State, lo: State, out: State, rules: Rules) -> list[str]:
    return [*w["refused"], *(r for r in lo["refused"] if r not in w["refused"])][-REFUSED_LIMIT:]


def _asked(w: State, lo: State, out: State, rules: Rules) -> list[str]:
    # the loser's asks are on their way too: their answers reach the survivor by its redirect
    held = held_marks(out["identifiers"])
    mine = w.get("asked", [])
    both = [*mine, *(m for m in lo.get("asked", []) if m not in mine)]
    return [m for m in both if m not in held][-ASKED_LIMIT:]


def _version(w: State, lo: State, out: State, rules: Rules) -> int:
    return int(max(w["version"], lo["version"]) + 1)


FOLDERS: dict[str, Folder] = {
    "fmt": lambda w, lo, out, rules: FORMAT,  # both are migrated first
    "customer_id": _keep("customer_id"),
    "rank": _keep("rank"),
    "merged": _merged,
    "refused": _refused,
    "pending": _pending,
    "version": _version,
    "src": _src,
    "seen": _seen,
    "ids": state_bounds.fold_ids,  # before returns and orders: what either profile folded away stays folded
    "past": state_bounds.fold_past,
    "returns": loyalty.fold_returns,  # before orders: the merged returns apply to the merged orders
    "orders": loyalty.fold_orders,  # before points: the balance is priced from the merged order book
    "redemptions": _redemptions,
    "points": _points,
    "qualifying_spend_minor": _spend,
    "signup_bonus_at": _min("signup_bonus_at"),
    "first_purchase_at": _min("first_purchase_at"),
    "last_purchase_at": _max("last_purchase_at"),
    "loyalty": loyalty.fold,
    "first_seen_at": _min("first_seen_at"),
    "last_event_at": _max("last_event_at"),
    "clock_at": lambda w, lo, out, rules: max(
        (v for v in (w.get("clock_at"), lo.get("clock_at")) if v is not None), default=None
    ),
    "events": _events,
    "carts": carts.fold,
    "carts_closed_until": _max("carts_closed_until"),
    "consent": consent.fold,
    "delivered": fold_delivered,
    "deferred": fold_deferred,
    "session": sessions.fold,
    "late_events": lambda w, lo, out, rules: w["late_events"] + lo["late_events"],
    # thresholds stay unlocked while the merged balance is above them
    "rewards": lambda w, lo, out, rules: sorted(
        {t for t in (*w["rewards"], *lo["rewards"]) if out["points"] >= t}
    ),
    "unlocks": lambda w, lo, out, rules: {
        t: max(w.get("unlocks", {}).get(t, 0), lo.get("unlocks", {}).get(t, 0))
        for t in {*w.get("unlocks", {}), *lo.get("unlocks", {})}
    },
    "identifiers": _identifiers,
    "asked": _asked,  # after identifiers: a link that joined is no longer asked for
    "rfm": rfm.fold,  # last: it reads the merged orders, purchases and consent
}


def fold_mark(state: State) -> str:
    """Names one absorbed profile at one version: a redelivered fold is recognised and skipped."""
    return f"{state['customer_id']}@{state['version']}"


def fold(
    winner: State, loser: State, rules: Rules, decisions: list[Decision] | None = None
) -> State:
    """The merged profile, within the state's bounds (``domain.state_bounds``); a cap the merge
    reaches is reported in ``decisions``. Either side may be of an older format (a fold
    message written before an upgrade): both are migrated first, and a state that came as
    JSON (a fold message) gets its leaf records (``domain.records.lift``)."""
    winner, loser = lift(migrate(dict(winner))), lift(migrate(dict(loser)))
    out: State = {}
    for name, folder in FOLDERS.items():
        out[name] = folder(winner, loser, out, rules)
    # a profile started after an erasure of one of its identifiers (domain.linking.handle):
    # events from before the erasure stay dropped once merged
    erased = [s["erased_before"] for s in (winner, loser) if s.get("erased_before") is not None]
    if erased:
        out["erased_before"] = max(erased)
    requests = known_requests(winner.get("erased_by") or (), loser.get("erased_by") or ())
    if requests:  # and a second delivery of any of those erasures stays without effect
        out["erased_by"] = requests
    times = [t for t in (winner["last_event_at"], loser["last_event_at"]) if t is not None]
    if times:
        state_bounds.compact(out, max(times), rules, decisions if decisions is not None else [])
    return out
