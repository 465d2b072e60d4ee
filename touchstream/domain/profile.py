"""The single customer view: the fields served in Redis, over HTTP and on profiles.updates."""

from __future__ import annotations

from typing import Any

from touchstream.config.rules import Rules
from touchstream.domain import loyalty, rfm
from touchstream.domain.carts import open_value
from touchstream.domain.clock import MS_PER_DAY, iso
from touchstream.domain.consent import flags
from touchstream.domain.records import Erased, Past, Redirect
from touchstream.domain.state import Stored


def project(state: dict[str, Any], rules: Rules) -> dict[str, Any]:
    last_purchase = state["last_purchase_at"]
    last_event = state["last_event_at"]
    marks = state["loyalty"]  # a LoyaltyMarks record
    past: Past | None = state["past"]  # folded orders' aggregates (domain.state_bounds)
    expiry = loyalty.expiry_times(state, rules)
    downgrade = marks.risk[1] + rules.loyalty.grace_days * MS_PER_DAY if marks.risk else None
    return {
        "customer_id": state["customer_id"],
        "points": state["points"],
        "touchpoints": sum(state["events"].values()),
        "tier": loyalty.tier_name(state, rules),
        "qualifying_spend_minor": marks.spend,
        "tier_downgrade_at": iso(downgrade) if downgrade is not None else "",
        "points_expire_at": iso(expiry[2]) if expiry is not None else "",
        "orders": len(state["orders"]) + (past.orders if past is not None else 0),
        "last_purchase_at": iso(last_purchase) if last_purchase is not None else "",
        "open_cart_value_minor": open_value(state),
        **rfm.project(state, rules),
        **flags(state),
        "updated_at": iso(last_event) if last_event is not None else "",
        "version": state["version"],
    }


def redirect_profile(state: Redirect) -> dict[str, Any]:
    """What an absorbed customer id serves: where its shopper lives now."""
    return {
        "customer_id": state.customer_id,
        "merged_into": state.into,
        "version": state.version,
    }


def view(state: Stored, rules: Rules) -> dict[str, Any] | None:
    """The served record of a customers-table value: live profile, redirect, or None (erased)."""
    match state:
        case Redirect():
            return redirect_profile(state)
        case Erased():
            return None
        case _:
            return project(state, rules)


def aliases(state: Stored) -> list[tuple[str, str]]:
    """(kind, value) of every identifier a live profile holds; email and phone are hashes."""
    if not isinstance(state, dict) or "identifiers" not in state:
        return []  # redirects and erasure markers hold none
    return [(kind, value) for kind, values in state["identifiers"].items() for value in values]
