"""What handling one record of the per-customer stage amounts to, for the agent to carry out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from touchstream.domain.decision import Decision
from touchstream.domain.state import Stored


@dataclass
class Step:
    """What one record does: the table write, the records to send, what to report."""

    store: Stored | None = None  # the new table value; None leaves the record as it is
    sends: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    duplicate: bool = False
    seen_evicted: int = 0  # event ids inside the span the memory's cap pushed out
    forwarded: bool = False
    identifiers_changed: bool = False
    # only link bookkeeping changed (a reservation, a refusal): the served profile is the same,
    # so nothing is projected, written to Redis or sent on profiles.updates for it
    profile_unchanged: bool = False
    delete: bool = False  # remove the record (a tombstone in the changelog)
    dropped: bool = False  # in flight for a customer erased since: not applied, not resurrected
    # why an event or link for an erased identifier was dropped (domain.linking.after_erasure)
    dropped_reason: str = ""
