"""RFM scores, purchase figures and the ``win_back`` trigger (docs/domain.md, "Recency, frequency, monetary"), in event time.

Pure and deterministic: every function reads the customer state and a time ``at`` (epoch ms,
event time) and nothing else; thresholds come from ``rules.rfm``.

Definitions (exact):

- An order *counts* when it is not fully refunded: ``ref < net`` or ``net == 0`` (a 100 %
  discounted order counts, with spend 0). Its *spend* is ``net - ref``. A missing ``ref`` is 0.
- The *window* at time ``t`` holds the orders with ``t - window_days < order.at <= t`` (the
  loyalty tier window's convention).
- R, from ``d = t - last_purchase_at``: ``d <= recency_days[0]`` days -> 5, ``<= [1]`` -> 4,
  ``<= [2]`` -> 3, ``<= [3]`` -> 2, else 1 (exactly 30 days -> 5, one ms more -> 4). A refund
  does not move ``last_purchase_at``.
- F: counted orders in the window, ``>= frequency_orders[i]`` -> ``5 - i``; none -> 0.
- M: spend in the window, ``>= monetary_minor[i]`` -> ``5 - i``; 0 -> 0.
- Segment, first match wins: F = 0 -> Lost (no purchase in the window); Champions (R>=4, F>=4);
  Loyal (F>=4); New (R>=4, F=1); Potential loyalist (R>=4); At risk (R<=2, F>=3); Lost (R=1);
  Hibernating. M does not enter the segment.
- A customer with no counted order ever (never bought, or returned everything) has no scores.
- Scores are not computed while ``consent.profiling`` is explicitly refused (``granted: False``);
  unknown consent allows them. Refusal clears them from the profile on the next ``evaluate``.
- ``win_back`` is proposed once per lapse: when the customer has at least
  ``win_back_min_orders`` counted orders (lifetime) and no purchase for ``win_back_days``. The
  lapse is named by ``last_purchase_at``, so a new purchase re-arms it. It is a marketing
  trigger, not a score: profiling consent does not hold it back (the emit path checks the
  marketing consents).

``state["rfm"]`` is an ``Rfm`` record (``domain.records``; owned by this module, ``default()``
for a new customer), held by the state's dict (the typed-state rewrite,
docs/design/typed-state.md, step 3); it is stored as the JSON object it was::

    Rfm(at: int | None,        # event time of the last evaluate (scores and figures are as of it)
        scores: Scores(r, f, m, segment) | None,
        due: int | None,       # next_change(state, at): when evaluate must run again
        lapse: int | None,     # last_purchase_at of the last lapse win_back was proposed for
        figures: Figures | None)  # figures(state, at): what the profile shows, without a rescan

``figures`` is None until the first evaluation (not stored then, as the dict had no such key).
Records are values: ``evaluate`` and ``fold`` put a new ``Rfm`` in the state, never change one
a previous state holds.

Scores and the win-back condition change as time passes with no event; ``due`` is the next
such moment, for the timers to call ``evaluate(state, due, rules)``.
"""

from __future__ import annotations

from typing import Any

from msgspec.structs import replace

from touchstream.config.rules import Rules
from touchstream.domain.clock import MS_PER_DAY, iso
from touchstream.domain.decision import Decision
from touchstream.domain.records import Figures, Order, Past, Rfm, Scores
from touchstream.domain.state import State
from touchstream.domain.triggers import propose

SEGMENT_LOST = "Lost"


NO_FIGURES = {
    "orders_365": 0,
    "spend_365_minor": 0,
    "avg_order_value_minor": 0,
    "avg_days_between_purchases": None,
}


_INITIAL = Rfm(at=None, scores=None, due=None, lapse=None)


def default() -> Rfm:
    """``state["rfm"]`` of a new customer: never evaluated (``domain.customer.new_state``)."""
    return _INITIAL


def _rfm(state: State) -> Rfm:
    rfm: Rfm | None = state.get("rfm")
    return rfm if rfm is not None else _INITIAL


def counts(order: Order) -> bool:
    """An order counts unless it is fully refunded (``ref < net``, or ``net == 0``)."""
    net, ref = order.net, order.ref
    return bool(ref < net or net == 0)


def _counted(state: State) -> list[Order]:
    """The live counted orders (those folded into ``past`` are outside every window)."""
    return [o for o in state["orders"].values() if counts(o)]


def _lifetime(state: State, counted: list[Order]) -> int:
    """Counted orders ever: the live ones and those folded into ``past`` (domain.state_bounds)."""
    past: Past | None = state.get("past")
    return len(counted) + (past.counted if past is not None else 0)


def _in_window(counted: list[Order], at: int, rules: Rules) -> list[Order]:
    start = at - rules.rfm.window_days * MS_PER_DAY
    return [o for o in counted if start < o.at <= at]


def _spend(orders: list[Order]) -> int:
    return sum(o.net - o.ref for o in orders)


def profiling_allowed(state: State) -> bool:
    """False only for an explicit refusal of the ``profiling`` purpose."""
    known = state["consent"].get("profiling")
    return known is None or bool(known.granted)


def r_score(last: int, at: int, rules: Rules) -> int:
    """5..1 from the time since the last purchase (``<= recency_days[i]`` days -> ``5 - i``)."""
    since = at - last
    for i, days in enumerate(rules.rfm.recency_days):
        if since <= days * MS_PER_DAY:
            return 5 - i
    return 1


def _at_least(value: int, thresholds: tuple[int, ...]) -> int:
    for i, threshold in enumerate(thresholds):
        if value >= threshold:
            return 5 - i
    return 0


def segment(r: int, f: int, m: int) -> str:
    """The segment of scores (r, f, m): the first match of the list in
    docs/domain.md, "Recency, frequency, monetary".

    F = 0 (no purchase in the window) is Lost whatever R is; M is not used.
    """
    if f == 0:
        return SEGMENT_LOST
    if r >= 4 and f >= 4:
        return "Champions"
    if f >= 4:
        return "Loyal"
    if r >= 4 and f == 1:
        return "New"
    if r >= 4:
        return "Potential loyalist"
    if r <= 2 and f >= 3:
        return "At risk"
    if r == 1:
        return SEGMENT_LOST
    return "Hibernating"


def scores(
    state: State, at: int, rules: Rules, counted: list[Order] | None = None
) -> Scores | None:
    """``Scores(r, f, m, segment)`` at ``at``, or None for a customer with no counted order.
    ``counted``: ``_counted(state)``, when the caller has it already.

    (Consent is not checked here; ``evaluate`` does.)
    """
    if counted is None:
        counted = _counted(state)
    last = state["last_purchase_at"]
    if not _lifetime(state, counted) or last is None:
        return None
    window = _in_window(counted, at, rules)
    r = r_score(last, at, rules)
    f = _at_least(len(window), rules.rfm.frequency_orders)
    m = _at_least(_spend(window), rules.rfm.monetary_minor)
    return Scores(r=r, f=f, m=m, segment=segment(r, f, m))


def figures(state: State, at: int, rules: Rules, counted: list[Order] | None = None) -> Figures:
    """Purchase figures at ``at``: counted orders and spend in the window, their average
    (integer floor, 0 without orders), and the average days between purchases over all counted
    orders, ``(last - first) / (n - 1)`` in days rounded to 1 decimal (None below 2 orders)."""
    if counted is None:
        counted = _counted(state)
    window = _in_window(counted, at, rules)
    spend = _spend(window)
    gap = None
    n = _lifetime(state, counted)
    if n >= 2:
        times = [o.at for o in counted]
        past: Past | None = state.get("past")
        if past is not None and past.first is not None and past.last is not None:
            times += [past.first, past.last]  # set together, with the first counted order
        gap = round((max(times) - min(times)) / (n - 1) / MS_PER_DAY, 1)
    return Figures(
        orders_365=len(window),
        spend_365_minor=spend,
        avg_order_value_minor=spend // len(window) if window else 0,
        avg_days_between_purchases=gap,
    )


def _armed(state: State, counted: list[Order], rules: Rules) -> bool:
    """A win-back is still to come for the current lapse."""
    last = state["last_purchase_at"]
    return (
        last is not None
        and _lifetime(state, counted) >= rules.rfm.win_back_min_orders
        and _rfm(state).lapse != last
    )


def _win_back_at(last: int, rules: Rules) -> int:
    return last + rules.rfm.win_back_days * MS_PER_DAY


def next_change(
    state: State, after: int, rules: Rules, counted: list[Order] | None = None
) -> int | None:
    """The earliest time t > ``after`` at which scores, figures or the win-back condition can
    change with no new event, or None.

    Candidates: each R boundary ``last + recency_days[i] days + 1 ms`` (only while scoring is
    allowed), each counted order entering (``at``) or leaving (``at + window_days``) the
    window, and the win-back moment ``last + win_back_days`` while a win-back is still to come
    for this lapse. A customer with no counted order has none.
    """
    if counted is None:
        counted = _counted(state)
    last = state["last_purchase_at"]
    if not _lifetime(state, counted) or last is None:
        return None
    window = rules.rfm.window_days * MS_PER_DAY
    candidates = [o.at for o in counted] + [o.at + window for o in counted]
    if profiling_allowed(state):
        candidates += [last + days * MS_PER_DAY + 1 for days in rules.rfm.recency_days]
    if _armed(state, counted, rules):
        candidates.append(_win_back_at(last, rules))
    later = [t for t in candidates if t > after]
    return min(later) if later else None


def _owed(state: State, counted: list[Order], at: int, rules: Rules) -> bool:
    last = state["last_purchase_at"]
    return _armed(state, counted, rules) and at >= _win_back_at(last, rules)


def evaluate(state: State, at: int, rules: Rules) -> list[Decision]:
    """Re-score the customer at ``at`` and propose ``win_back`` if a lapse has just come due.

    Replaces ``state["rfm"]`` (a new ``Rfm``; the old one is not changed).
    The proposal's time is the lapse's due time ``last + win_back_days``, not ``at``, its cause
    ``lapse:<last_purchase_at>``, and its evidence describes the customer at that time, so a
    replay or a late evaluation proposes the same trigger.
    """
    old = _rfm(state)
    prior = old.at
    if prior is not None and at < prior:
        at = prior  # a late event: the customer's time does not go back
    counted = _counted(state)  # once: scores, figures and next_change read the same orders
    lapse = old.lapse
    decisions: list[Decision] = []
    if _owed(state, counted, at, rules):
        decisions.append(_win_back(state, counted, rules))
        lapse = state["last_purchase_at"]
    # next_change reads the new lapse (through _armed): it sees the record without its due
    state["rfm"] = Rfm(
        at=at,
        scores=scores(state, at, rules, counted) if profiling_allowed(state) else None,
        due=None,
        lapse=lapse,
        figures=figures(state, at, rules, counted),
    )
    state["rfm"] = replace(state["rfm"], due=next_change(state, at, rules, counted))
    return decisions


def _win_back(state: State, counted: list[Order], rules: Rules) -> Decision:
    last = state["last_purchase_at"]
    when = _win_back_at(last, rules)
    then = scores(state, when, rules) if profiling_allowed(state) else None
    days = (when - last) // MS_PER_DAY
    return propose(
        "win_back",
        f"lapse:{last}",
        when,
        f"No purchase for {days} days after {_lifetime(state, counted)} orders.",
        {
            "last_purchase_at": iso(last),
            "orders": _lifetime(state, counted),
            "days_since_last_purchase": days,
            "spend_365_minor": _spend(_in_window(counted, when, rules)),
            "segment": then.segment if then is not None else None,
        },
        "win_back",
    )


def due(state: State) -> int | None:
    """When ``evaluate`` must run again (``state["rfm"].due``); cheap, for the hot path."""
    return _rfm(state).due


def project(state: State, rules: Rules) -> dict[str, Any]:
    """Profile fields: r_score, f_score, m_score, segment (None without scores), and the
    figures as of the last evaluation (kept in the state: this runs for every event)."""
    rfm = _rfm(state)
    s = rfm.scores
    out: dict[str, Any] = {
        "r_score": s.r if s else None,
        "f_score": s.f if s else None,
        "m_score": s.m if s else None,
        "segment": s.segment if s else None,
    }
    f = rfm.figures
    if f is None:
        out.update(NO_FIGURES)
    else:
        out["orders_365"] = f.orders_365
        out["spend_365_minor"] = f.spend_365_minor
        out["avg_order_value_minor"] = f.avg_order_value_minor
        out["avg_days_between_purchases"] = f.avg_days_between_purchases
    return out


def fold_rfm(winner: State, loser: State, out: State, rules: Rules) -> Rfm:
    """``rfm`` of a merged profile (a ``fold.FOLDERS`` rule); ``out`` holds the merged
    ``orders``, ``last_purchase_at`` and ``consent``.

    Re-scored at the later of both evaluations, without proposing anything; the lapse is the
    later of both (a win-back either profile proposed for the merged last purchase is not
    proposed again). If a win-back is owed by the merged history, ``due`` is that evaluation
    time, so the next timer run proposes it. Order-insensitive.
    """
    mine, theirs = _rfm(winner), _rfm(loser)
    times = [t for t in (mine.at, theirs.at) if t is not None]
    lapses = [x for x in (mine.lapse, theirs.lapse) if x is not None]
    merged = Rfm(
        at=max(times) if times else None,
        scores=None,
        due=None,
        lapse=max(lapses) if lapses else None,
    )
    at = merged.at
    if at is None:
        return merged
    view = {**out, "rfm": merged}  # the rules below read only its lapse
    counted = _counted(view)
    owed = _owed(view, counted, at, rules)
    return replace(
        merged,
        scores=scores(view, at, rules, counted) if profiling_allowed(view) else None,
        due=at if owed else next_change(view, at, rules, counted),
        figures=figures(view, at, rules, counted),
    )


def fold(w: State, lo: State, out: State, rules: Rules) -> Rfm:
    """``domain.fold``'s rule for ``rfm`` (``FOLDERS``): ``fold_rfm``."""
    return fold_rfm(w, lo, out, rules)
