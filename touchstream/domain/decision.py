"""Decisions: what the pure core tells the agent the outside world must hear about."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Decision:
    """Something the outside world must hear about; the agent turns it into a record."""

    kind: str
    payload: dict[str, Any]
