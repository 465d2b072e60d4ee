"""Bounded per-customer state: the caps on what a profile holds, and compaction of its history.

One customer's state is one record on the customers changelog, so nothing in it may grow with
traffic: a bot filling carts, or a very loyal customer, would otherwise end up with a record
over the broker's size limit. Each list or map of the state is either bounded by the contract
(event types, consent purposes), by the rules (reward thresholds), by the identity limits
(``domain.linking``), or by a cap here (README, "State bounds"):

- live history (``orders``, ``returns``) is kept while a window can still need it, then folded
  into ``past`` (lifetime aggregates: order count, counted orders, their spend and held points,
  first and last counted order), so lifetime totals, RFM figures, the balance and a merge's
  sums stay right. *Needed* is the longest of the tier window plus the grace period (two
  calendar years plus grace in ``calendar_year`` mode) and the RFM window, plus ``ID_SPAN``;
- the ids of orders, returns and redemptions stay remembered exactly for at least ``ID_SPAN``
  of event time (the input topic's retention plus the dead-letter topic's, 7 days each by
  default), so a replay of anything still on those topics stays idempotent;
- hard caps (``ORDERS_MAX``, ``RETURNS_MAX``, ``REDEMPTIONS_MAX``, ``IDS_MAX``) hold whatever
  the traffic: beyond one, the oldest entries are folded early (orders, returns) or forgotten
  (ids), and a ``state_capped`` outcome on ``loyalty.outcomes`` says so (metric
  ``touchstream_state_capped_total``, alert ``TouchstreamStateCapped``). An order folded before
  its windows end leaves the tier and RFM window sums early (it stays in the lifetime totals).

The state's time here is its own event-time clock (``last_event_at``), never the wall clock,
so the offline oracle compacts exactly as a worker does.
"""

from __future__ import annotations

from typing import Any

import msgspec

from touchstream.config.rules import Rules
from touchstream.domain.clock import MS_PER_DAY
from touchstream.domain.decision import Decision
from touchstream.domain.records import Ids, Order, Past
from touchstream.domain.state import State

ID_SPAN_DAYS = 14  # >= input topic retention + DLQ retention (7 + 7 days by default)
ID_SPAN = ID_SPAN_DAYS * MS_PER_DAY
ORDERS_MAX = 1_000  # live orders per customer (the windows' history)
RETURNS_MAX = 1_000  # live returns per customer
REDEMPTIONS_MAX = 1_024  # redemption ids remembered within ID_SPAN
IDS_MAX = 4_096  # ids of folded orders and returns remembered within ID_SPAN, each kind
CAL_YEARS_MS = 2 * 366 * MS_PER_DAY  # calendar_year mode looks back into last year


def empty_past() -> Past:
    """``past``: the aggregates of folded orders (lifetime figures, not windowed)."""
    return Past(orders=0, counted=0, spend=0, held=0, first=None, last=None)


def empty_ids() -> Ids:
    """``ids``: order (``o``) and return (``r``) ids folded away, with their event time."""
    return Ids(o={}, r={})


# both are null in the state until something is folded (most customers, ever): every
# changelog record and every encode carries fewer bytes
def past_of(state: State) -> Past:
    past: Past | None = state.get("past")
    return past if past is not None else empty_past()


def ids_of(state: State) -> Ids:
    ids: Ids | None = state.get("ids")
    return ids if ids is not None else empty_ids()


def folded_order(state: State, order_id: str) -> bool:
    ids: Ids | None = state.get("ids")
    return ids is not None and order_id in ids.o


def folded_return(state: State, return_id: str) -> bool:
    ids: Ids | None = state.get("ids")
    return ids is not None and return_id in ids.r


def fold_past(w: State, lo: State, out: State, rules: Rules) -> Past | None:
    """``past`` of a merge (``domain.fold``'s FOLDERS points here): the sums of both profiles'
    aggregates, the earliest first and the latest last counted order."""
    a: Past | None = w["past"]
    b: Past | None = lo["past"]
    if a is None or b is None:
        return a if a is not None else b
    firsts = [t for t in (a.first, b.first) if t is not None]
    lasts = [t for t in (a.last, b.last) if t is not None]
    return Past(
        orders=a.orders + b.orders,
        counted=a.counted + b.counted,
        spend=a.spend + b.spend,
        held=a.held + b.held,
        first=min(firsts) if firsts else None,
        last=max(lasts) if lasts else None,
    )


def fold_ids(w: State, lo: State, out: State, rules: Rules) -> Ids | None:
    """``ids`` of a merge (folded before returns and orders: what either profile folded away
    stays folded): the union of both, the winner's time where both hold an id."""
    a: Ids | None = w["ids"]
    b: Ids | None = lo["ids"]
    if a is None or b is None:
        return a if a is not None else b
    return Ids(o={**b.o, **a.o}, r={**b.r, **a.r})


_needed: tuple[Rules | None, int] = (None, 0)  # the last rules asked about, and their answer


def needed_ms(rules: Rules) -> int:
    """How far back from the customer's clock live history must reach (per purchase, return
    and redemption: the answer for the rules of the last call is kept)."""
    global _needed
    if _needed[0] is rules:
        return _needed[1]
    _needed = (rules, _needed_ms(rules))
    return _needed[1]


def _needed_ms(rules: Rules) -> int:
    loyalty = rules.loyalty
    grace = loyalty.grace_days * MS_PER_DAY
    if loyalty.tier_mode == "calendar_year":
        tier = CAL_YEARS_MS + grace
    else:
        tier = loyalty.tier_window_days * MS_PER_DAY + grace
    return max(tier, rules.rfm.window_days * MS_PER_DAY) + ID_SPAN


def clock(state: State, at: int | None = None) -> int:
    last = state["last_event_at"]
    if at is None:
        return int(last or 0)
    return at if last is None else max(last, at)


def _counts(order: Order) -> bool:
    net, ref = order.net, order.ref
    return bool(ref < net or net == 0)


def held(order: Order) -> int:
    from touchstream.domain.loyalty import held_points

    return held_points(order)


def _fold_orders(state: State, gone: list[str]) -> None:
    """Fold these orders (and the returns on them) into ``past``, keeping their ids."""
    orders = dict(state["orders"])
    past = msgspec.structs.asdict(past_of(state))  # a new record below, never changed in place
    known = ids_of(state)
    ids = {"o": dict(known.o), "r": dict(known.r)}
    for order_id in gone:
        order = orders.pop(order_id)
        past["orders"] += 1
        past["held"] += held(order)
        past["spend"] += order.net - order.ref
        if _counts(order):
            past["counted"] += 1
            past["first"] = order.at if past["first"] is None else min(past["first"], order.at)
            past["last"] = order.at if past["last"] is None else max(past["last"], order.at)
        ids["o"][order_id] = order.at
    gone_set = set(gone)
    returns = {}
    for rid, ret in state["returns"].items():
        if ret.order in gone_set:
            ids["r"][rid] = ret.at
        else:
            returns[rid] = ret
    state["orders"], state["returns"] = orders, returns
    state["past"], state["ids"] = Past(**past), Ids(o=ids["o"], r=ids["r"])


def _capped(state: State, what: str, dropped: int, at: int, decisions: list[Decision]) -> None:
    from touchstream.domain.loyalty import outcome

    decisions.append(
        outcome(state, "state_capped", f"{what}:{at}:{dropped}", at, capped=what, dropped=dropped)
    )


def compact(state: State, at: int, rules: Rules, decisions: list[Decision]) -> None:
    """Bring the ledger of ``state`` (a fresh copy) within its bounds at event time ``at``."""
    now = clock(state, at)
    horizon = now - needed_ms(rules)
    old = [k for k, o in state["orders"].items() if o.at < horizon]
    if old:
        _fold_orders(state, old)
    if len(state["orders"]) > ORDERS_MAX:
        oldest = sorted(state["orders"].items(), key=lambda kv: (kv[1].at, kv[0]))
        extra = [k for k, _ in oldest[: len(state["orders"]) - ORDERS_MAX]]
        _fold_orders(state, extra)
        _capped(state, "orders", len(extra), now, decisions)
    # returns waiting for an order that never came, beyond every window: their ids only
    waiting = [
        (r.at, rid)
        for rid, r in state["returns"].items()
        if r.order not in state["orders"] and r.at < horizon
    ]
    if len(state["returns"]) > RETURNS_MAX:
        live = sorted((r.at, rid) for rid, r in state["returns"].items())
        over = live[: len(state["returns"]) - RETURNS_MAX]
        _capped(state, "returns", len(over), now, decisions)
        waiting = sorted(set(waiting) | set(over))
    if waiting:
        returns = dict(state["returns"])
        known = ids_of(state)
        ids_r = dict(known.r)
        for at_, rid in waiting:
            returns.pop(rid)
            ids_r[rid] = at_
        state["returns"] = returns
        state["ids"] = Ids(o=known.o, r=ids_r)
    _bound_ids(state, now, decisions)
    _bound_redemptions(state, now, decisions)


def _within(
    entries: dict[str, Any], since: int, cap: int, at_of: Any
) -> tuple[dict[str, Any], int]:
    """Entries of the last ``ID_SPAN`` (from ``since``), the newest ``cap`` of them; and how
    many were dropped by the cap (those older than the span just expire)."""
    recent = [(at_of(v), k) for k, v in entries.items() if at_of(v) >= since]
    if len(recent) == len(entries) and len(recent) <= cap:
        return entries, 0
    recent.sort()
    kept = recent[-cap:] if len(recent) > cap else recent
    keys = {k for _, k in kept}
    return {k: v for k, v in entries.items() if k in keys}, len(recent) - len(kept)


def _bound_ids(state: State, now: int, decisions: list[Decision]) -> None:
    ids: Ids | None = state.get("ids")
    if ids is None:
        return
    out = {}
    for kind, name, held_ids in (("o", "order_ids", ids.o), ("r", "return_ids", ids.r)):
        out[kind], dropped = _within(held_ids, now - ID_SPAN, IDS_MAX, lambda v: v)
        if dropped:
            _capped(state, name, dropped, now, decisions)
    if out["o"] is ids.o and out["r"] is ids.r:
        return  # nothing expired: the record stays
    state["ids"] = Ids(o=out["o"], r=out["r"]) if out["o"] or out["r"] else None


def _bound_redemptions(state: State, now: int, decisions: list[Decision]) -> None:
    kept, dropped = _within(state["redemptions"], now - ID_SPAN, REDEMPTIONS_MAX, lambda v: v[1])
    state["redemptions"] = kept
    if dropped:
        _capped(state, "redemption_ids", dropped, now, decisions)
