"""The ledger's outcomes for ``loyalty.outcomes``: every change of the points ledger (an order
earning, a return, a redemption, an expiry, a repricing, a tier change) is one outcome with a
deterministic ``outcome_id`` and the balance after it."""

from __future__ import annotations

import hashlib
from typing import Any

from touchstream.domain.clock import iso
from touchstream.domain.decision import LoyaltyOutcome
from touchstream.domain.state import State


def outcome(state: State, kind: str, cause: str, at: int, **fields: Any) -> LoyaltyOutcome:
    """A ledger outcome for ``loyalty.outcomes``; its id is deterministic, so a replay repeats it."""
    customer_id = state["customer_id"]
    oid = hashlib.sha256(f"{customer_id}|{kind}|{cause}".encode()).hexdigest()[:32]
    return LoyaltyOutcome(
        customer_id,
        kind,
        {
            "outcome_id": oid,
            "outcome": kind,
            "customer_id": customer_id,
            "at": at,
            **fields,
            "balance": state["points"],
        },
    )


def published(payload: dict[str, Any]) -> dict[str, Any]:
    """The record for ``loyalty.outcomes`` (schemas/loyalty/v1/outcome.json)."""
    record = {k: v for k, v in payload.items() if k != "at"}
    record["schema_version"] = 1
    record["occurred_at"] = iso(payload["at"])
    return record
