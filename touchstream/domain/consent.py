"""Consent per purpose, from ``consent_updated`` events, in event time.

Unknown (never stated) is its own answer: no marketing trigger may rely on it. On a merge,
for each purpose an explicit refusal beats an explicit grant, and an explicit answer beats an
unknown one (docs/domain.md, "Consent").
"""

from __future__ import annotations

from typing import Any

PURPOSES = ("email_marketing", "sms_marketing", "push_marketing", "profiling")


def update(state: dict[str, Any], event: dict[str, Any]) -> None:
    consent = dict(state["consent"])
    for purpose, granted in event["props"]["purposes"].items():
        known = consent.get(purpose)
        # a late, older statement does not overrule a newer one
        if known is None or event["at"] >= known["at"]:
            consent[purpose] = {"granted": bool(granted), "at": event["at"]}
    state["consent"] = consent


def fold_consent(winner: dict[str, Any], loser: dict[str, Any]) -> dict[str, Any]:
    merged = dict(winner["consent"])
    for purpose, theirs in loser["consent"].items():
        mine = merged.get(purpose)
        if mine is None:
            merged[purpose] = theirs
        elif mine["granted"] != theirs["granted"]:
            merged[purpose] = {"granted": False, "at": max(mine["at"], theirs["at"])}
    return merged


def flags(state: dict[str, Any]) -> dict[str, str]:
    """Profile fields ``consent_<purpose>``: ``granted``, ``refused`` or ``""`` (unknown)."""
    out = {}
    for purpose in PURPOSES:
        known = state["consent"].get(purpose)
        out[f"consent_{purpose}"] = (
            "" if known is None else ("granted" if known["granted"] else "refused")
        )
    return out
