"""Identity resolution across partitions: every record of the per-customer stage goes through here.

Each identifier has a home record (``identity.home_of``) in the customers table. A home is
either a live profile or a redirect to the profile that absorbed it. Linking never reads
another partition's state: it exchanges messages on the customer-events topic, keyed by the
record they are for, so it works the same with one worker or many, and on replay.

- ``ev``: an inbound event, routed by ingest to the home of its strongest identifier. A
  redirect forwards it; a live profile applies it and asks the home of every identifier it
  does not hold yet to ``merge``.
- ``merge``: "join my cluster". The receiver resolves to its live root (creating the home of
  a new identifier), checks the per-profile limits on the union, and the weaker of the two
  roots folds into the stronger. Ranks never change, so both sides agree on the survivor,
  whichever message arrives first, and redirects cannot form a cycle.
- ``absorb``: "fold into me": sent to the weaker root when the stronger one decided.
- ``fold``: the loser's whole state, folded into the survivor (``domain.fold``); the loser
  becomes a redirect. A redelivered fold is recognised by its mark and skipped.

A redirect is a ``domain.records.Redirect`` and an erasure marker an ``Erased`` (typed
records, never changed once stored: a new one replaces them); a live profile is the dict.
"""

from __future__ import annotations

from typing import Any

from touchstream.config.rules import Rules
from touchstream.domain import privacy, triggers
from touchstream.domain.customer import (
    ASKED_LIMIT,
    REFUSED_LIMIT,
    Decision,
    apply,
    erased_again,
    new_state,
    request_marks,
)
from touchstream.domain.decision import Expired, LinkRefused, Merged, Proposal
from touchstream.domain.fold import fold, fold_mark
from touchstream.domain.identity import PRIORITY, home_of, link_mark, strongest
from touchstream.domain.profile import project
from touchstream.domain.records import Erased, Redirect
from touchstream.domain.state import State, Stored
from touchstream.domain.step import Step

GROUPS = {
    "customer_id": "customer_id",
    "loyalty_id": "loyalty_id",
    "email": "email",
    "phone": "phone",
    "device_id": "device",
    "anonymous_id": "device",
}


def is_redirect(state: Stored | None) -> bool:
    return isinstance(state, Redirect)


def is_erased(state: Stored | None) -> bool:
    return isinstance(state, Erased)


def limits(rules: Rules) -> dict[str, int]:
    ident = rules.identity
    return {
        "customer_id": ident.max_customer_ids,
        "loyalty_id": ident.max_loyalty_ids,
        "email": ident.max_emails,
        "phone": ident.max_phones,
        "device": ident.max_devices,
    }


def exceeded(a: dict[str, list[str]], b: dict[str, list[str]], rules: Rules) -> str | None:
    """The identifier group whose limit the union of ``a`` and ``b`` would break, if any."""
    counts: dict[str, int] = {}
    for kind in set(a) | set(b):
        union = set(a.get(kind, ())) | set(b.get(kind, ()))
        group = GROUPS[kind]
        counts[group] = counts.get(group, 0) + len(union)
    for group, limit in limits(rules).items():
        if counts.get(group, 0) > limit:
            return group
    return None


def handle(target: str, state: Stored | None, msg: dict[str, Any], rules: Rules) -> Step:
    """One record of the customer-events topic, for the record keyed ``target``."""
    kind = msg.get("k", "ev")
    erased: Erased | None = None
    if isinstance(state, Erased):
        if kind == "confirm":
            return privacy.confirm(target, state, msg)
        if kind == "forget":  # another request's marker for this home: knows it too
            return privacy.remember(state, msg)
        if kind == "fold" and isinstance(msg["state"], dict) and msg["state"].get("erased_by"):
            # a profile joining this one as it was erased: gone with it (in flight), but the
            # requests it had been started after are known here from now on
            learned = privacy.remember(state, {"requests": msg["state"]["erased_by"], "id": ""})
            if learned.store is not None:
                return learned
        if kind == "ev" and msg["type"] == "erasure_requested":
            if any(mark in (state.requests or ()) for mark in request_marks(msg)):
                return Step(duplicate=True)  # a request this marker knows, delivered again
            return privacy.erase_again(target, state, msg, rules)  # always answered
        refused = after_erasure(state, msg, rules)
        if refused:
            return Step(dropped=True, dropped_reason=refused)
        erased, state = state, None  # a new profile, nothing of the old
    elif kind == "confirm":
        return Step()  # the erasure it confirms was followed by a new profile already
    elif kind == "ev" and isinstance(state, dict):
        if erased_again(state, msg):
            return Step(duplicate=True)
        before = state.get("erased_before")
        if before is not None and msg["at"] <= before and msg["type"] != "erasure_requested":
            # happened before this identifier was erased (an offline till, a lagging
            # partition, a DLQ replay): never part of the new profile. A new erasure request
            # is applied whenever it is dated: it asks to erase the customer as she is now
            return Step(dropped=True, dropped_reason="before_erasure")
    step = _dispatch(kind, target, state, msg, rules)
    if erased is not None and isinstance(step.store, dict):
        # numbered past the marker (Redis keeps its versioned tombstone until a newer write),
        # and remembering when the identifier was erased
        version = step.store["version"] + erased.version
        step.store = dict(step.store, version=version, erased_before=erased.erased_at)
        if erased.requests:
            step.store["erased_by"] = list(erased.requests)
    return step


def explicit_opt_in(ev: dict[str, Any]) -> bool:
    """A new sign-up or a consent grant: what may start a profile for an erased identifier."""
    if ev.get("type") == "loyalty_signup":
        return True
    if ev.get("type") == "consent_updated":
        return any(v is True for v in ev["props"].get("purposes", {}).values())
    return False


def after_erasure(marker: Erased, msg: dict[str, Any], rules: Rules) -> str:
    """Why ``msg`` may not start a new profile at an erased identifier's home ("": it may).

    Only an event or a link that happened and was ingested after the erasure may (an event
    older than the erasure is dropped whenever it arrives: ``before_erasure``; a record
    ingested before it: ``in_flight``), and, while erased identifiers are suppressed
    (``identity.suppress_erased``), only an explicit new sign-up or consent grant, or the
    link such an event asks for (else ``suppressed``)."""
    kind = msg.get("k", "ev")
    if kind not in ("ev", "merge"):
        return "in_flight"
    erased_at = marker.erased_at
    if msg["at"] <= erased_at:
        return "before_erasure"
    if msg.get("ts", 0) <= erased_at:
        return "in_flight"
    if not rules.identity.suppress_erased:
        return ""
    allowed = explicit_opt_in(msg) if kind == "ev" else bool(msg.get("opt_in"))
    return "" if allowed else "suppressed"


def _dispatch(
    kind: str, target: str, state: State | Redirect | None, msg: dict[str, Any], rules: Rules
) -> Step:
    if kind == "ev" and msg["type"] == "erasure_requested" and not isinstance(state, Redirect):
        return privacy.erase(target, state, msg, rules)
    if kind == "forget":
        return privacy.forget(target, state, msg)
    if kind == "ev":
        return _event(target, state, msg, rules)
    if kind == "merge":
        return _merge(target, state, msg, rules)
    if kind == "absorb":
        return _absorb(target, state, msg, rules)
    if kind == "fold":
        return _fold(target, state, msg, rules)
    if kind == "release":
        return _release_reservation(state, msg)
    if kind == "drop":
        return _drop(state)
    if kind == "rekey":
        return _rekey(target, state, msg)
    if kind == "home":
        return _home(target, state, msg)
    raise ValueError(f"unknown customer-stage record kind {kind!r}")


def cause(msg: dict[str, Any]) -> dict[str, Any]:
    """What every identity message carries of the event that set it off: its event time, its
    id, and the wall time ingest saw it (``ts``), which tells in-flight from new after an
    erasure."""
    return {"at": msg["at"], "id": msg["id"], "ts": msg.get("ts", 0)}


def _forward(state: Redirect, msg: dict[str, Any]) -> Step:
    return Step(sends=[(state.into, msg)], forwarded=True)


def _event(target: str, state: State | Redirect | None, ev: dict[str, Any], rules: Rules) -> Step:
    if isinstance(state, Redirect):
        if ev["type"] == "erasure_requested":  # each home it passes learns it (privacy.erase)
            ev = dict(ev, passed=[*ev.get("passed", ()), target])
        return _forward(state, ev)
    created = state is None
    if state is None:
        ids = ev["ids"]
        kind = strongest(ids)
        if home_of(kind, ids[kind]) == target:
            state = new_state(target, kind, ids[kind], ev["at"])
        else:  # forwarded to a root that no longer exists: start it again, empty
            state = new_state(target, at=ev["at"])
    outcome = apply(state, ev, rules)
    step = Step(store=outcome.state, decisions=list(outcome.decisions))
    step.identifiers_changed = created
    step.seen_evicted = outcome.seen_evicted
    if outcome.duplicate:
        step.duplicate = True
        if outcome.state is state and not created:
            step.store = None
        return step
    live = outcome.state
    asked = live.get("asked", [])
    for kind, value in ev["ids"].items():
        if value in live["identifiers"].get(kind, ()):
            continue
        mark = link_mark(kind, value)
        if mark in live["refused"]:
            continue
        if mark in asked:
            # a link on its way completes by itself (merge, absorb, release and ask again);
            # asking once more per event set off another round each time: 3.3 customer-stage
            # records per event in the bench data, 1.6 without (issue 10)
            continue
        group = exceeded(claimed(live), {kind: [value]}, rules)
        if group is not None:
            live["refused"] = [*live["refused"], mark][-REFUSED_LIMIT:]
            step.decisions.append(_refusal(live["customer_id"], kind, value, group, ev))
            continue
        merge = _merge_msg(live["customer_id"], live, ev, via=[kind, value])
        if explicit_opt_in(ev):
            merge["opt_in"] = True  # may link an erased identifier again (after_erasure)
        step.sends.append((home_of(kind, value), merge))
        asked = live["asked"] = [*asked, mark][-ASKED_LIMIT:]
    now = int(ev.get("ts", 0))
    step.decisions = [
        triggers.emit(live, d, now, rules) if isinstance(d, Proposal) else d for d in step.decisions
    ]
    if ev["type"] == "access_requested":
        step.decisions.append(privacy.export(live, ev, project(live, rules)))
    return step


def claimed(state: State) -> dict[str, list[str]]:
    """Identifiers a profile holds plus those of merges it agreed to that are still in flight."""
    out = {kind: list(values) for kind, values in state["identifiers"].items()}
    for ids in state["pending"].values():
        for kind, values in ids.items():
            known = out.setdefault(kind, [])
            known.extend(v for v in values if v not in known)
    return out


def _merge(target: str, state: State | Redirect | None, msg: dict[str, Any], rules: Rules) -> Step:
    if isinstance(state, Redirect):
        return _forward(state, msg)
    step = Step()
    created = state is None
    if state is None:
        via = msg.get("via")
        if not via or home_of(via[0], via[1]) != target:
            return step  # the root this asked for is gone; nothing to join
        state = new_state(target, via[0], via[1], msg["at"])
        step.store = state
        step.identifiers_changed = True
    peer = msg["peer"]
    if peer == target or peer in state["refused"]:
        return step
    if list(msg["prank"]) < list(state["rank"]):
        # the peer is stronger: only the survivor decides (it alone knows what it has agreed)
        step.sends.append((peer, _merge_msg(target, state, msg)))
        return step
    group = exceeded(claimed(state), msg["pids"], rules)
    if group is not None:
        state = dict(state, refused=[*state["refused"], peer][-REFUSED_LIMIT:])
        step.store = state
        step.profile_unchanged = not created
        via = msg.get("via") or ["", ""]
        step.decisions.append(_refusal(target, via[0], via[1], group, msg, other=peer))
        return step
    # reserve what the peer brings until its fold arrives, so concurrent merges see it
    state = dict(state, pending={**state["pending"], peer: msg["pids"]})
    step.store = state
    step.profile_unchanged = not created
    absorb = {
        "k": "absorb",
        "into": target,
        "wrank": state["rank"],
        "wids": state["identifiers"],
        "reserved": msg["pids"],
        **cause(msg),
    }
    step.sends.append((peer, absorb))
    return step


def _merge_msg(
    peer: str, state: State, msg: dict[str, Any], via: list[str] | None = None
) -> dict[str, Any]:
    return {
        "k": "merge",
        "peer": peer,
        "prank": state["rank"],
        "pids": claimed(state),
        "via": via,
        **cause(msg),
    }


def _release(loser: str, msg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return msg["into"], {"k": "release", "peer": loser, **cause(msg)}


def _absorb(target: str, state: State | Redirect | None, msg: dict[str, Any], rules: Rules) -> Step:
    winner = msg["into"]
    if isinstance(state, Redirect):
        # this profile already joined another: the two roots settle it between them
        merge = {
            "k": "merge",
            "peer": winner,
            "prank": msg["wrank"],
            "pids": msg["wids"],
            "via": None,
            **cause(msg),
        }
        return Step(sends=[_release(target, msg), (state.into, merge)], forwarded=True)
    if state is None or winner == target:
        return Step(sends=[_release(target, msg)])
    mine = claimed(state)
    reserved = msg["reserved"]
    grown = any(v not in reserved.get(kind, ()) for kind, vs in mine.items() for v in vs)
    if grown or list(state["rank"]) < list(msg["wrank"]):
        # it agreed to less than this profile brings now: ask again with the full set
        return Step(sends=[_release(target, msg), (winner, _merge_msg(target, state, msg))])
    step = Step(sends=[(winner, {"k": "fold", "state": state, **cause(msg)})])
    step.store = redirect(state, winner)
    step.identifiers_changed = True
    return step


def _release_reservation(state: State | Redirect | None, msg: dict[str, Any]) -> Step:
    if isinstance(state, Redirect):
        return _forward(state, msg)
    if state is None or msg["peer"] not in state["pending"]:
        return Step()
    pending = {k: v for k, v in state["pending"].items() if k != msg["peer"]}
    return Step(store=dict(state, pending=pending), profile_unchanged=True)


def redirect(state: State, winner: str) -> Redirect:
    """What an absorbed profile becomes: a redirect to the profile that absorbed it."""
    return Redirect(
        customer_id=state["customer_id"],
        into=winner,
        rank=tuple(state["rank"]),
        version=state["version"] + 1,
    )


def _fold(target: str, state: State | Redirect | None, msg: dict[str, Any], rules: Rules) -> Step:
    if isinstance(state, Redirect):
        return _forward(state, msg)
    loser: State = msg["state"]
    if state is None:
        state = new_state(target, at=msg["at"])
    if fold_mark(loser) in state["merged"]:
        return Step(duplicate=True)
    capped: list[Decision] = []  # a cap the merged history reaches (domain.state_bounds)
    merged = fold(state, loser, rules, capped)  # also settles the reservation made for the loser
    absorbed, identifiers = loser["customer_id"], loser["identifiers"]
    decisions = [Merged(target, absorbed, identifiers, msg["at"], msg["id"]), *capped]
    return Step(store=merged, decisions=decisions, identifiers_changed=True)


def _refusal(
    customer_id: str, kind: str, value: str, group: str, msg: dict[str, Any], other: str = ""
) -> LinkRefused:
    return LinkRefused(customer_id, other, kind, value, group, msg["at"], msg["id"])


ANONYMOUS_KINDS = frozenset({"device_id", "anonymous_id"})


def anonymous_until(state: Stored | None, rules: Rules) -> int | None:
    """When an anonymous-only profile may be dropped (event time), or None if it never is."""
    if not isinstance(state, dict) or state["last_event_at"] is None:
        return None  # redirects and erasure markers never expire this way
    if state["pending"]:
        return None  # a fold is on its way here; tracked again when it lands
    if not state["identifiers"] or not set(state["identifiers"]) <= ANONYMOUS_KINDS:
        return None
    return int(state["last_event_at"]) + rules.identity.anonymous_ttl_days * 86_400_000


def expire(target: str, state: Stored | None, clock: int, rules: Rules) -> Step:
    """Drop an anonymous-only profile idle for the TTL: its record and its identifiers' homes.

    ``clock`` is the partition's event time. Nothing else points at such a profile, so once
    its homes are gone the same device seen again simply starts a new profile.
    """
    due = anonymous_until(state, rules)
    if not isinstance(state, dict) or due is None or due > clock:
        return Step()
    step = Step(delete=True, identifiers_changed=True)
    for kind, values in state["identifiers"].items():
        for value in values:
            home = home_of(kind, value)
            if home != target:
                step.sends.append((home, {"k": "drop", "root": target, "via": [kind, value]}))
    step.decisions.append(Expired(target, state["identifiers"]))
    return step


def _rekey(target: str, state: State | Redirect | None, msg: dict[str, Any]) -> Step:
    """An HMAC key rotation (``touchstream keys rotate``): ``moves`` lists [kind, digest under
    the old key version, digest under the new] of identifiers this profile holds. The profile
    keeps its id and its history and holds the new digests instead; the home of each new digest
    becomes a redirect here, so events under the new key find this profile. A redelivery finds
    the new digests held and asks their homes again, which changes nothing."""
    if isinstance(state, Redirect):
        return _forward(state, msg)
    if state is None:
        return Step()  # the alias it was sent by is stale: nothing lives here
    held = state["identifiers"]
    identifiers = {kind: list(values) for kind, values in held.items()}
    step = Step()
    for kind, old, new in msg["moves"]:
        values = identifiers.get(kind)
        if values is None or (old not in values and new not in values):
            continue
        if old in values and new in values:  # the old digest came back with a fold
            values.remove(old)
        elif old in values:
            values[values.index(old)] = new
        home = {"k": "home", "into": target, "via": [kind, new], **cause(msg)}
        step.sends.append((home_of(kind, new), home))
    if identifiers != held:
        step.store = dict(state, identifiers=identifiers, version=state["version"] + 1)
        step.identifiers_changed = True
    return step


def _home(target: str, state: State | Redirect | None, msg: dict[str, Any]) -> Step:
    """Become the home of a re-keyed identifier, a redirect to the profile that holds it. A
    profile already here (an event under the new key came first) joins it like any link."""
    into = msg["into"]
    if state is None:
        kind = msg["via"][0]
        rank = (PRIORITY[kind], msg["at"], target)
        return Step(store=Redirect(customer_id=target, into=into, rank=rank, version=0))
    if isinstance(state, Redirect) or target == into:
        return Step()  # already a home (of this profile or of the one it joined since)
    return Step(sends=[(into, _merge_msg(target, state, msg))])


def _drop(state: State | Redirect | None) -> Step:
    # only the redirect of an identifier of the dropped profile is addressed here
    return Step(delete=True) if isinstance(state, Redirect) else Step()
