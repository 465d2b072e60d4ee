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

from touchstream.config.rules import Rules
from touchstream.domain.clock import MS_PER_DAY
from touchstream.domain.decision import Decision
from touchstream.domain.records import Order
from touchstream.domain.state import State

ID_SPAN_DAYS = 14  # >= input topic retention + DLQ retention (7 + 7 days by default)
ID_SPAN = ID_SPAN_DAYS * MS_PER_DAY
ORDERS_MAX = 1_000  # live orders per customer (the windows' history)
RETURNS_MAX = 1_000  # live returns per customer
REDEMPTIONS_MAX = 1_024  # redemption ids remembered within ID_SPAN
IDS_MAX = 4_096  # ids of folded orders and returns remembered within ID_SPAN, each kind
CAL_YEARS_MS = 2 * 366 * MS_PER_DAY  # calendar_year mode looks back into last year


def empty_past() -> dict[str, Any]:
    """``past``: the aggregates of folded orders (lifetime figures, not windowed)."""
    return {"orders": 0, "counted": 0, "spend": 0, "held": 0, "first": None, "last": None}


def empty_ids() -> dict[str, dict[str, int]]:
    """``ids``: order ("o") and return ("r") ids folded away, with their event time."""
    return {"o": {}, "r": {}}


# both are null in the state until something is folded (most customers, ever): every
# changelog record and every encode carries fewer bytes
def past_of(state: State) -> dict[str, Any]:
    past: dict[str, Any] | None = state.get("past")
    return past if past is not None else empty_past()


def ids_of(state: State) -> dict[str, dict[str, int]]:
    ids: dict[str, dict[str, int]] | None = state.get("ids")
    return ids if ids is not None else empty_ids()


def folded_order(state: State, order_id: str) -> bool:
    ids = state.get("ids")
    return ids is not None and order_id in ids["o"]


def folded_return(state: State, return_id: str) -> bool:
    ids = state.get("ids")
    return ids is not None and return_id in ids["r"]


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
    past = dict(past_of(state))
    known = ids_of(state)
    ids = {"o": dict(known["o"]), "r": dict(known["r"])}
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
    state["orders"], state["past"], state["ids"], state["returns"] = orders, past, ids, returns


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
        ids_r = dict(known["r"])
        for at_, rid in waiting:
            returns.pop(rid)
            ids_r[rid] = at_
        state["returns"] = returns
        state["ids"] = {**known, "r": ids_r}
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
    ids = state.get("ids")
    if ids is None:
        return
    out = {}
    for kind, name in (("o", "order_ids"), ("r", "return_ids")):
        out[kind], dropped = _within(ids[kind], now - ID_SPAN, IDS_MAX, lambda v: v)
        if dropped:
            _capped(state, name, dropped, now, decisions)
    state["ids"] = out if out["o"] or out["r"] else None


def _bound_redemptions(state: State, now: int, decisions: list[Decision]) -> None:
    kept, dropped = _within(state["redemptions"], now - ID_SPAN, REDEMPTIONS_MAX, lambda v: v[1])
    state["redemptions"] = kept
    if dropped:
        _capped(state, "redemption_ids", dropped, now, decisions)
