"""Expiry: points expire ``expiry_days`` after the last purchase, with one ``points_expiring``
warning ``expiry_warning_days`` before, and the check that the warning still holds when it is
sent (``still_expiring``, named by ``domain/trigger_catalog.py``)."""

from __future__ import annotations

from typing import Any

from msgspec.structs import replace

from touchstream.config.rules import Rules
from touchstream.domain import triggers
from touchstream.domain.clock import MS_PER_DAY, iso
from touchstream.domain.decision import Decision
from touchstream.domain.loyalty.outcomes import outcome
from touchstream.domain.loyalty.rewards import rewards
from touchstream.domain.records import LoyaltyMarks
from touchstream.domain.state import State


def expiry_anchor(state: State) -> int | None:
    """Points expire ``expiry_days`` after the last purchase (or the signup bonus, if none)."""
    last = state["last_purchase_at"]
    return last if last is not None else state["signup_bonus_at"]


def expiry_times(state: State, rules: Rules) -> tuple[int, int, int] | None:
    """(anchor, warning time, expiry time) of a positive balance; None when nothing expires."""
    anchor = expiry_anchor(state)
    if anchor is None or state["points"] <= 0:
        return None
    loyalty = rules.loyalty
    expires_at = anchor + loyalty.expiry_days * MS_PER_DAY
    return anchor, expires_at - loyalty.expiry_warning_days * MS_PER_DAY, expires_at


def expiry_owed(state: State, at: int, rules: Rules) -> bool:
    """An expiry warning or an expiry fell due by ``at`` and was not given yet."""
    expiry = expiry_times(state, rules)
    if expiry is None:
        return False
    anchor, warn_at, expires_at = expiry
    marks: LoyaltyMarks = state["loyalty"]
    return (at >= warn_at and marks.warned != anchor) or (
        at >= expires_at and marks.expired != anchor
    )


def expire(
    state: State, marks: LoyaltyMarks, at: int, rules: Rules, decisions: list[Decision]
) -> LoyaltyMarks:
    """``marks`` after the expiry warning or the expiry that fell due by ``at`` (a new record
    when one did; the points expire in ``state``)."""
    expiry = expiry_times(state, rules)
    if expiry is None:
        return marks
    anchor, warn_at, expires_at = expiry
    if at >= expires_at and marks.expired != anchor:
        marks = replace(marks, expired=anchor, warned=anchor)
        lost = state["points"]
        state["points"] = 0
        decisions.append(outcome(state, "points_expired", str(anchor), expires_at, points=-lost))
        rewards(state, expires_at, rules, decisions)
    elif at >= warn_at and marks.warned != anchor:
        marks = replace(marks, warned=anchor)
        decisions.append(
            triggers.propose(
                "points_expiring",
                str(anchor),
                warn_at,
                f"{state['points']} points expire on {iso(expires_at)[:10]} without a purchase.",
                {
                    "points": state["points"],
                    "expires_at": iso(expires_at),
                    "last_purchase_at": iso(anchor),
                    "anchor": anchor,
                },
                "points_expiring",
            )
        )
    return marks


# --- still true at emit time ----------------------------------------------------------------


def still_expiring(state: State, proposal: dict[str, Any], rules: Rules) -> bool:
    anchor = proposal["evidence"]["anchor"]
    return bool(state["points"] > 0 and expiry_anchor(state) == anchor)
