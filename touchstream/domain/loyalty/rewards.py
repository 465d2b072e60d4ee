"""Rewards: ``reward_unlocked`` when the balance crosses a threshold from below, and the check
that it still holds when it is sent (``still_rewarded``, named by ``domain/trigger_catalog.py``)."""

from __future__ import annotations

from typing import Any

from touchstream.config.rules import Rules
from touchstream.domain import triggers
from touchstream.domain.decision import Decision
from touchstream.domain.state import State


def rewards(state: State, at: int, rules: Rules, decisions: list[Decision]) -> None:
    """``reward_unlocked`` when the balance crosses a threshold from below; re-armed below it.

    The cause is the threshold and how many times it was unlocked before, not the event that
    crossed it: orders arriving in another order, or a merge, cross it with another event, and
    the shopper must still get one message for one crossing.
    """
    unlocked = list(state["rewards"])
    counts = dict(state.get("unlocks", {}))
    for threshold in rules.loyalty.reward_thresholds:
        if state["points"] >= threshold and threshold not in unlocked:
            unlocked.append(threshold)
            times = counts.get(str(threshold), 0)
            counts[str(threshold)] = times + 1
            decisions.append(
                triggers.propose(
                    "reward_unlocked",
                    f"{threshold}:{times}",
                    at,
                    f"The points balance reached {threshold}.",
                    {"threshold": threshold, "points": state["points"]},
                    "reward_unlocked",
                )
            )
        elif state["points"] < threshold and threshold in unlocked:
            unlocked.remove(threshold)
    state["rewards"] = unlocked
    state["unlocks"] = counts


def reward_owed(state: State, unlocked: list[int], rules: Rules) -> bool:
    return any(state["points"] >= t and t not in unlocked for t in rules.loyalty.reward_thresholds)


# --- still true at emit time ----------------------------------------------------------------


def still_rewarded(state: State, proposal: dict[str, Any], rules: Rules) -> bool:
    return bool(state["points"] >= proposal["evidence"]["threshold"])
