"""Erasure under at-least-once delivery, replayed offline (``touchstream.offline.OfflineStage``)
over generated traffic: shoppers who are erased, sign up again and are erased again, with
requests whose claimed time may run a few minutes ahead of the ingest clock (docs/domain.md,
"Privacy"). Every record delivered a second time, at its own offset or sent again at a new
one, changes nothing a shopper or the requester sees: the same profile (or none), the same
outcomes, triggers and sessions, and one receipt per request.

The traffic and the stage are those of ``test_stage_properties`` (shoppers who never link).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

from hypothesis import given, note, settings
from hypothesis import strategies as st

from tests.unit.domain.test_stage_properties import (
    KINDS,
    PICKS,
    SETTINGS,
    SETTLE_MS,
    STAGE_PARTITIONS,
    T0,
    Event,
    any_merge,
    cid_of,
    deliver,
    distinct_lids,
    history,
    records,
    settle,
)
from tests.unit.domain.test_stage_properties import (
    RULES as BASE_RULES,
)
from touchstream import offline
from touchstream.domain.clock import MS_PER_MINUTE
from touchstream.domain.customer import SEEN_SPAN_MS
from touchstream.domain.identity import mint_customer_id
from touchstream.domain.profile import view
from touchstream.offline import OfflineStage
from touchstream.simulator.factory import internal

ERASING = [*KINDS, "erasure_requested", "erasure_requested", "loyalty_signup"]


@st.composite
def erased_shoppers(draw: st.DrawFn) -> dict[str, list[Event]]:
    """Histories with erasure requests, some dated up to five minutes past the time ingest
    saw them (a requester's clock ahead), and sign-ups that start a profile again. Each of a
    shopper's records reaches ingest at its own millisecond; a record sent again by its
    producer (``resend``) is the same event, its claimed time included."""
    out: dict[str, list[Event]] = {}
    for lid in draw(distinct_lids(1, 3)):
        events = draw(history(lid, ERASING, True, 16))
        first: dict[str, Event] = {}
        for n, e in enumerate(events):
            e = dict(e, ts=e["ts"] + n)
            if e["id"] in first:  # sent again: the event as first sent, ingested again
                e = dict(first[e["id"]], ts=e["ts"], arrive=e["arrive"], ip=e["ip"])
            elif e["type"] == "erasure_requested":
                ahead = draw(st.sampled_from([0, 0, MS_PER_MINUTE, 5 * MS_PER_MINUTE]))
                e = dict(e, at=e["ts"] + ahead, props={"request_id": e["id"]})
            first.setdefault(e["id"], e)
            events[n] = e
        out[lid] = events
    return out


# Erased identifiers seen again start a new profile at once (``identity.suppress_erased``
# off). With suppression on, a record dropped while its shopper was suppressed is not
# remembered (an erasure marker keeps no trace of what its shopper did after), so a second
# copy arriving after she signed up again is applied: a known limit (docs/domain.md, "Privacy").
RULES = replace(BASE_RULES, identity=replace(BASE_RULES.identity, suppress_erased=False))


def replay(delivered: list[Event], histories: dict[str, list[Event]]) -> OfflineStage:
    last = max(e["arrive"] for events in histories.values() for e in events)
    stage = OfflineStage(RULES, partitions=STAGE_PARTITIONS)
    return settle(deliver(stage, delivered), last + SETTLE_MS)


def seen(stage: OfflineStage, lid: str) -> tuple[Any, list[tuple[str, Any]]]:
    """What is served of the shopper (None once erased) and what went out about them."""
    cid = cid_of(lid)
    state = stage.table.get(cid)
    served = view(state, stage.rules) if state is not None else None
    out = [(d.kind, d.payload) for d in stage.decisions if d.payload.get("customer_id") == cid]
    return served, out


@SETTINGS
@given(erased_shoppers(), PICKS, st.data())
def test_an_erasure_or_anything_else_delivered_again_changes_nothing(histories, picks, data):
    # some records are delivered a second time at a later point of the stream (after the
    # shopper signed up again, say): at their own offset, or sent again at a new one
    arrivals = any_merge(histories, picks)
    once = records(arrivals)
    again_after: dict[int, list[int]] = defaultdict(list)
    for i in range(len(arrivals)):
        if data.draw(st.booleans(), label=f"{i} again"):
            again_after[data.draw(st.integers(i, len(arrivals) - 1), label="after")].append(i)
    offsets: dict[int, int] = defaultdict(int)
    twice: list[Event] = []
    first: dict[int, Event] = {}
    clock = 0
    for k in range(len(arrivals)):
        first[k] = records([arrivals[k]], offsets)[0]
        twice.append(first[k])
        clock = max(clock, arrivals[k]["at"])
        for i in again_after[k]:
            held = arrivals[i]["at"] >= clock - SEEN_SPAN_MS  # (older ids are new events then)
            if data.draw(st.booleans(), label=f"{i} at a new offset") and held:
                resent = records([arrivals[i]], offsets)[0]  # sent again: ingested again, later
                twice.append(dict(resent, ts=max(resent["ts"], first[k]["ts"]) + 1))
            else:
                twice.append(first[i])  # read again at its own offset

    single, double = replay(once, histories), replay(twice, histories)
    note(
        "\n".join(
            f"{r['id']} {r['type']} at={r['at'] - T0} ts={r['ts'] - T0} in={r['in']}" for r in twice
        )
    )
    for lid in histories:
        assert seen(single, lid) == seen(double, lid), f"{lid}: what is seen differs"
    receipts = [d.payload["request_id"] for d in double.decisions if d.kind == "receipt"]
    assert len(receipts) == len(set(receipts)), "a request sent two receipts"


# --- shoppers who link: requests by any of their identifiers --------------------------------

POOL = [
    ("customer_id", "C-1"),
    ("loyalty_id", "L-1"),
    ("loyalty_id", "L-2"),
    ("email", "E-1"),
    ("device_id", "D-1"),
]


@st.composite
def linked_traffic(draw: st.DrawFn) -> list[list[Event]]:
    """Batches of events naming one or two identifiers of a small pool (so profiles link,
    absorb each other and are erased by any of their identifiers), erasure requests dated up
    to five minutes ahead, sign-ups, and erasure requests sent again later."""
    ts, n = T0, 0
    requests: list[Event] = []
    batches = []
    for _ in range(draw(st.integers(2, 6), label="batches")):
        batch = []
        for _ in range(draw(st.integers(1, 4), label="events")):
            n += 1
            ts += draw(st.sampled_from([1, 5, 100, 1000]))
            if requests and draw(st.integers(0, 9), label="again") < 3:
                batch.append(dict(draw(st.sampled_from(requests)), ts=ts))
                continue
            ids = dict(draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=2, unique=True)))
            kind = draw(st.sampled_from(["erasure_requested", "loyalty_signup", "page_view"]))
            at, props = ts, {}
            if kind == "erasure_requested":
                at += draw(st.sampled_from([0, 0, MS_PER_MINUTE, 5 * MS_PER_MINUTE]))
                props = {"request_id": f"R{n}"}
            e = internal(mint_customer_id(ids), ids, kind, f"e{n}", n, at=at, **props)
            e["ts"] = ts
            if kind == "erasure_requested":
                requests.append(e)
            batch.append(e)
        batches.append(batch)
    return batches


@settings(deadline=None, max_examples=600, database=None)  # (the races are rare: many runs)
@given(linked_traffic(), st.booleans(), st.integers(0, 2**16))
def test_a_request_sent_again_erases_nothing_more_whatever_links_meanwhile(batches, suppress, seed):
    rules = replace(BASE_RULES, identity=replace(BASE_RULES.identity, suppress_erased=suppress))
    stage = OfflineStage(rules, partitions=3, seed=seed)
    erasing: list[str] = []  # the request of each step that erased something
    real = offline.handle

    def watched(target: str, state: Any, msg: dict[str, Any], rules: Any) -> Any:
        step = real(target, state, msg, rules)
        if msg.get("type") == "erasure_requested" and any(
            d.kind == "erased" for d in step.decisions
        ):
            erasing.append(msg["id"])
        return step

    offline.handle = watched
    try:
        for batch in batches:
            stage.submit(batch)
            stage.drain()
    finally:
        offline.handle = real
    assert len(erasing) == len(set(erasing)), "a request delivered again erased again"
    receipts = [d.payload["request_id"] for d in stage.decisions if d.kind == "receipt"]
    assert len(receipts) == len(set(receipts)), "a request sent two receipts"
