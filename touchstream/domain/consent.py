"""Consent per purpose, from ``consent_updated`` events, in event time.

Unknown (never stated) is its own answer: no marketing trigger may rely on it. On a merge,
for each purpose an explicit refusal beats an explicit grant, and an explicit answer beats an
unknown one (docs/domain.md, "Consent").

A customer's consent is ``state["consent"]``: purpose -> ``Grant`` (``domain.records``), a
record held by the state's dict (the typed-state rewrite, docs/design/typed-state.md, step 3).
Records are values: a change puts a new ``Grant`` in a copy of the dict.
"""

from __future__ import annotations

from typing import Any

from touchstream.config.rules import Rules
from touchstream.domain.records import Grant

PURPOSES = ("email_marketing", "sms_marketing", "push_marketing", "profiling")


def update(state: dict[str, Any], event: dict[str, Any]) -> None:
    consent = dict(state["consent"])
    for purpose, granted in event["props"]["purposes"].items():
        known = consent.get(purpose)
        # a late, older statement does not overrule a newer one
        if known is None or event["at"] >= known.at:
            consent[purpose] = Grant(granted=bool(granted), at=event["at"])
    state["consent"] = consent


def fold_consent(winner: dict[str, Any], loser: dict[str, Any]) -> dict[str, Grant]:
    """The consent of a merged profile: for each purpose an explicit refusal beats an explicit
    grant, an explicit answer beats an unknown one (``domain.fold``'s rule for ``consent``)."""
    merged: dict[str, Grant] = dict(winner["consent"])
    for purpose, theirs in loser["consent"].items():
        mine = merged.get(purpose)
        if mine is None:
            merged[purpose] = theirs
        elif mine.granted != theirs.granted:
            merged[purpose] = Grant(granted=False, at=max(mine.at, theirs.at))
    return merged


def flags(state: dict[str, Any]) -> dict[str, str]:
    """Profile fields ``consent_<purpose>``: ``granted``, ``refused`` or ``""`` (unknown)."""
    out = {}
    for purpose in PURPOSES:
        known = state["consent"].get(purpose)
        out[f"consent_{purpose}"] = (
            "" if known is None else ("granted" if known.granted else "refused")
        )
    return out


def fold(w: dict[str, Any], lo: dict[str, Any], out: dict[str, Any], rules: Rules) -> Any:
    """``domain.fold``'s rule for ``consent`` (``FOLDERS``): ``fold_consent``."""
    return fold_consent(w, lo)


def default() -> dict[str, Grant]:
    """A new profile's consent: nothing stated (``domain.customer.new_state``)."""
    return {}
