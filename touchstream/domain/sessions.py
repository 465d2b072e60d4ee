"""Sessions in event time (docs/domain.md, "Sessions and carts"): Faust has no session window, so it lives here.

A customer (or an anonymous device before it is linked) has at most one open session on its
state. It closes when the partition clock passes ``last + gap`` or ``start + max`` (a timer,
see ``domain.timers``), or when an event arrives beyond those bounds. Closing yields the
summary for the ``sessions`` topic and, when a product was viewed often enough without being
added to a cart, a ``browse_abandoned`` proposal. A late event that falls before the open
session by more than the gap belongs to a session already summarised: it is counted as late,
not summarised twice.

The open session is ``state["session"]``: a ``Session`` record (``domain.records``) or None,
held by the state's dict (the typed-state rewrite, docs/design/typed-state.md, step 3).
Records are values: a change puts a new ``Session`` in the state (``msgspec.structs.replace``),
never changes the one a previous state holds.
"""

from __future__ import annotations

import hashlib
from typing import Any

from msgspec.structs import replace

from touchstream.config.rules import Rules
from touchstream.domain import triggers
from touchstream.domain.clock import MS_PER_HOUR, MS_PER_MINUTE, iso
from touchstream.domain.decision import Decision, SessionClosed, StateCapped
from touchstream.domain.records import Session
from touchstream.domain.state import State

# touchpoints that are a shopper's own activity on a channel; the rest (consent, privacy,
# email opens, loyalty bookkeeping) neither open nor extend a session
ACTIVITY = frozenset(
    {
        "page_view",
        "product_view",
        "search",
        "add_to_cart",
        "remove_from_cart",
        "checkout_started",
        "purchase",
        "identify",
    }
)
COUNTED = {
    "page_view": "page_views",
    "product_view": "product_views",
    "search": "searches",
    "add_to_cart": "cart_adds",
}
VIEWS_KEPT = 32  # distinct products counted per session: bounds the state of a long session
ADDED_KEPT = 64  # distinct products added to a cart remembered per session (beyond: not kept)


def _gap(rules: Rules) -> int:
    return round(rules.sessions.gap_minutes * MS_PER_MINUTE)


def _cap(rules: Rules) -> int:
    return round(rules.sessions.max_hours * MS_PER_HOUR)


def _open(ev: dict[str, Any]) -> Session:
    return Session(
        start=ev["at"],
        last=ev["at"],
        channel=ev["ch"],
        page_views=0,
        product_views=0,
        searches=0,
        cart_adds=0,
        converted=False,
        views={},
        added=[],
    )


def default() -> Session | None:
    """A new profile's session: none open (``domain.customer.new_state``)."""
    return None


def due(state: State, rules: Rules) -> int | None:
    session: Session | None = state["session"]
    if session is None:
        return None
    return min(session.last + _gap(rules), session.start + _cap(rules))


def track(state: State, ev: dict[str, Any], rules: Rules, decisions: list[Decision]) -> None:
    """Count one event into the open session, closing it first if the event lies beyond it."""
    if ev["type"] not in ACTIVITY:
        return
    at = ev["at"]
    session: Session | None = state["session"]
    if session is not None:
        end = due(state, rules)
        assert end is not None
        if at >= end:
            decisions.extend(close(state, end, rules))
            session = None
        elif at < session.start - _gap(rules):
            state["late_events"] += 1
            return
    if session is None:
        session = _open(ev)
    changes: dict[str, Any] = {"start": min(session.start, at), "last": max(session.last, at)}
    kind = ev["type"]
    field = COUNTED.get(kind)
    if field is not None:
        changes[field] = getattr(session, field) + 1
    props = ev["props"]
    if kind == "product_view":
        views = dict(session.views)
        if props["sku"] in views or len(views) < VIEWS_KEPT:
            views[props["sku"]] = views.get(props["sku"], 0) + 1
        changes["views"] = views
    elif kind == "add_to_cart" and props["sku"] not in session.added:
        if len(session.added) < ADDED_KEPT:
            changes["added"] = [*session.added, props["sku"]]
        else:
            decisions.append(StateCapped(state["customer_id"], "session_added", at))
    elif kind == "purchase":
        changes["converted"] = True
    state["session"] = replace(session, **changes)


def session_id(customer_id: str, start: int) -> str:
    return hashlib.sha256(f"{customer_id}|session|{start}".encode()).hexdigest()[:24]


def close(state: State, end: int, rules: Rules) -> list[Decision]:
    """Close the open session at ``end`` (its due time): the summary, and what it proposes."""
    session: Session = state["session"]
    state["session"] = None
    last = min(session.last, end)
    summary = {
        "session_id": session_id(state["customer_id"], session.start),
        "customer_id": state["customer_id"],
        "start": iso(session.start),
        "end": iso(last),
        "duration_s": (last - session.start) // 1000,
        "channel": session.channel,
        "page_views": session.page_views,
        "product_views": session.product_views,
        "searches": session.searches,
        "cart_adds": session.cart_adds,
        "converted": session.converted,
        "start_ms": session.start,
        "closed_at_ms": end,
    }
    out: list[Decision] = [SessionClosed(state["customer_id"], session.channel, summary)]
    browsed = sorted(
        (
            (-n, sku)
            for sku, n in session.views.items()
            if n >= rules.sessions.browse_abandon_views and sku not in session.added
        ),
    )
    if browsed and not session.converted:
        products = [{"sku": sku, "views": -n} for n, sku in browsed]
        out.append(
            triggers.propose(
                "browse_abandoned",
                f"{session.start}:{products[0]['sku']}",
                end,
                f"Viewed {products[0]['sku']} {products[0]['views']} times in one session "
                "without adding it to a cart.",
                {
                    "session_id": summary["session_id"],
                    "products": products,
                    "session_start": summary["start"],
                    "session_end": summary["end"],
                },
                "browse_abandoned",
            )
        )
    return out


def published(summary: dict[str, Any]) -> dict[str, Any]:
    """The record for the ``sessions`` topic (schemas/sessions/v1/session.json)."""
    return {k: v for k, v in summary.items() if not k.endswith("_ms")}


def fold_session(winner: State, loser: State) -> Session | None:
    """A login mid-session: the device's session and the account's become one."""
    a: Session | None = winner["session"]
    b: Session | None = loser["session"]
    if a is None or b is None:
        return a or b
    views = dict(a.views)
    for sku, n in b.views.items():
        if sku in views or len(views) < VIEWS_KEPT:
            views[sku] = views.get(sku, 0) + n
    first = a if a.start <= b.start else b
    return Session(
        start=first.start,
        last=max(a.last, b.last),
        channel=first.channel,
        page_views=a.page_views + b.page_views,
        product_views=a.product_views + b.product_views,
        searches=a.searches + b.searches,
        cart_adds=a.cart_adds + b.cart_adds,
        converted=a.converted or b.converted,
        views=views,
        # those viewed first: only they can hold a browse_abandoned proposal back
        added=sorted(set(a.added) | set(b.added), key=lambda k: (k not in views, k))[:ADDED_KEPT],
    )


def fold(w: State, lo: State, out: State, rules: Rules) -> Session | None:
    """``domain.fold``'s rule for ``session`` (``FOLDERS``): ``fold_session``."""
    return fold_session(w, lo)
