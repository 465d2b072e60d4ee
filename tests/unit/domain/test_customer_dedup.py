"""Duplicate detection of the per-customer stage: inbound offsets remembered per topic identity
and partition (a re-created, mirrored or second input topic is never mistaken for a rewind),
event ids remembered for a span of event time with a hard cap, and states of the format before
both still read."""

from typing import Any

from touchstream.config.rules import load_rules
from touchstream.domain.clock import MS_PER_DAY
from touchstream.domain.customer import (
    SEEN_CAP,
    SEEN_SPAN_MS,
    applied_before,
    apply,
    event_fingerprint,
    new_state,
)
from touchstream.domain.fold import fold
from touchstream.domain.linking import handle
from touchstream.simulator.factory import internal
from touchstream.tables.state_codec import decode, encode

RULES = load_rules(None)
CID = "ts-0123456789abcdef01234567"
OTHER = "ts-fedcba9876543210fedcba98"
T0 = 1_795_179_807_512
OLD_TOPIC = "q1Xbz0CSRZ2Nd3zq5mX5tA"  # Kafka topic ids as kafka-topics.sh prints them
NEW_TOPIC = "Hc9xGJ6tSOqzJ5oS8B4a0w"


def buy(
    event_id: str, offset: int, topic: str | None = OLD_TOPIC, at: int = T0, partition: int = 0
) -> dict[str, Any]:
    return internal(
        CID,
        {"loyalty_id": "L-7"},
        "purchase",
        event_id,
        offset,
        partition,
        at,
        topic=topic,
        order_id=f"order-{event_id}",
        total_minor=10_000,
        discount_minor=0,
        currency="EUR",
        items=[],
    )


def run(events: list[dict[str, Any]], state: dict[str, Any] | None = None) -> dict[str, Any]:
    for e in events:
        state = apply(state, e, RULES).state
    assert state is not None
    return state


def test_event_of_a_recreated_input_topic_at_a_lower_offset_is_applied():
    state = run([buy("e1", 0), buy("e2", 9)])

    # the input topic was deleted and created again: its offsets start at 0 once more
    out = apply(state, buy("e3", 0, topic=NEW_TOPIC), RULES)

    assert not out.duplicate
    assert out.state["points"] == 300
    assert out.state["events"] == {"purchase": 3}


def test_event_of_a_second_input_topic_is_applied_whatever_its_offset():
    state = run([buy("e1", 500, partition=2)])

    out = apply(state, buy("e2", 3, topic=NEW_TOPIC, partition=2), RULES)

    assert not out.duplicate
    assert out.state["points"] == 200


def test_redelivery_from_the_same_topic_identity_is_still_a_duplicate():
    state = run([buy("e1", 5), buy("e2", 9), buy("x", 0, topic=NEW_TOPIC)])

    rewound = apply(state, buy("e-never-seen", 8), RULES)

    assert rewound.duplicate
    assert rewound.state["points"] == state["points"]
    assert rewound.state["version"] == state["version"]


def test_state_written_before_topic_identities_keeps_its_offsets_for_the_current_topic():
    # an old changelog value: offsets per bare partition number, event ids as bare fingerprints
    old = run([buy("e1", 5, topic=None), buy("e2", 9, topic=None)])
    assert old["src"] == {"0": 9}
    old["seen"] = [event_fingerprint("e1"), event_fingerprint("e2")]

    rewound = apply(old, buy("e-never-seen", 8), RULES)  # first sight of the identity
    resent = apply(old, buy("e2", 12), RULES)
    fresh = apply(old, buy("e3", 10), RULES)

    assert rewound.duplicate and rewound.state["points"] == 200
    assert resent.duplicate and resent.state["points"] == 200
    assert not fresh.duplicate and fresh.state["points"] == 300
    assert fresh.state["src"] == {f"{OLD_TOPIC}:0": 10}  # migrated: the bare key is gone
    # once migrated, the topic re-created later is a topic of its own
    again = apply(fresh.state, buy("e4", 0, topic=NEW_TOPIC), RULES)
    assert not again.duplicate and again.state["points"] == 400


def test_event_id_resent_within_the_span_is_a_duplicate_after_many_other_events():
    first = [buy("e0", 0)]
    # far more ids than the 64 remembered before, all within the span
    others = [buy(f"e{n}", n, at=T0 + n * 60_000) for n in range(1, 200)]
    state = run(first + others)

    resent = apply(state, buy("e0", 500, at=T0 + 13 * MS_PER_DAY), RULES)

    assert resent.duplicate
    assert resent.state["points"] == state["points"]
    assert resent.state["events"] == {"purchase": 200}


def test_event_id_older_than_the_span_is_forgotten():
    state = run([buy("e1", 0, at=T0), buy("e2", 1, at=T0 + SEEN_SPAN_MS + MS_PER_DAY)])

    assert event_fingerprint("e1") not in state["seen"]
    assert list(state["seen"]) == [event_fingerprint("e2")]


def test_cap_pushing_out_an_id_inside_the_span_is_reported():
    events = [buy(f"e{n}", n, at=T0 + n) for n in range(SEEN_CAP)]
    state = run(events)
    assert len(state["seen"]) == SEEN_CAP

    out = apply(state, buy("one-more", SEEN_CAP, at=T0 + SEEN_CAP), RULES)

    assert out.seen_evicted == 1
    assert len(out.state["seen"]) == SEEN_CAP
    assert next(iter(out.state["seen"])) == event_fingerprint("e1")  # e0 pushed out
    assert apply(state, buy("e0", SEEN_CAP + 1, at=T0 + SEEN_CAP), RULES).seen_evicted == 0


def test_state_of_the_pair_list_format_keeps_its_ids_and_their_times():
    # the memory as [fingerprint, time] pairs (written before it became a dict)
    old = run([buy("e1", 0, at=T0), buy("e2", 1, at=T0 + 1)])
    old["seen"] = [[f, at] for f, at in old["seen"].items()]

    resent = apply(old, buy("e1", 5, at=T0 + 2), RULES)
    fresh = apply(old, buy("e3", 6, at=T0 + SEEN_SPAN_MS + 1), RULES)

    assert resent.duplicate
    assert fresh.state["seen"] == {
        event_fingerprint("e2"): T0 + 1,
        event_fingerprint("e3"): T0 + SEEN_SPAN_MS + 1,
    }


def test_folding_an_old_format_profile_keeps_its_ids_and_routes_with_their_topic():
    loser = new_state(OTHER, "loyalty_id", "L-8", T0)
    loser["seen"] = [event_fingerprint("lost")]  # the format before spans
    loser["src"] = {"3": 40, f"{OLD_TOPIC}:1": 7}
    loser["last_event_at"] = T0
    survivor = run([buy("e1", 0)])

    merged = fold(survivor, loser, RULES)

    assert set(merged["seen"]) == {event_fingerprint("e1"), event_fingerprint("lost")}
    assert merged["src"] == {f"{OLD_TOPIC}:0": 0, f"{OTHER}/3": 40, f"{OTHER}/{OLD_TOPIC}:1": 7}


def test_old_changelog_value_read_by_the_new_worker_keeps_judging_duplicates():
    # a customers-changelog value as the worker before topic identities wrote it
    old = run([buy("e1", 3, topic=None, partition=1), buy("e2", 4, topic=None, partition=1)])
    old["seen"] = [event_fingerprint("e1"), event_fingerprint("e2")]
    stored = encode(old)

    state = decode(stored)
    redelivered = apply(state, buy("e2", 4, partition=1), RULES)
    resent = apply(state, buy("e1", 9, partition=1), RULES)
    new = apply(state, buy("e3", 5, partition=1), RULES)

    assert redelivered.duplicate and resent.duplicate
    assert not new.duplicate and new.state["points"] == 300
    assert decode(encode(new.state)) == new.state
    # and from then on the offsets are the topic's: the topic created again starts at 0
    recreated = apply(new.state, buy("e4", 0, topic=NEW_TOPIC, partition=1), RULES)
    assert not recreated.duplicate and recreated.state["points"] == 400


def test_applied_before_answers_what_apply_would_skip_without_changing_the_state():
    # what a redelivered privileged command is told by (it fires no timers then)
    state = run([buy("e1", 0), buy("e2", 5)])
    cases = {
        "the same delivery": buy("e2", 5),
        "an earlier offset of the route": buy("e9", 3),
        "the same id at a new offset": buy("e1", 7),
        "a new event": buy("e3", 6),
        "a new event of a new input topic": buy("e4", 0, topic=NEW_TOPIC),
    }
    before = encode(state)
    told = {name: applied_before(state, e) for name, e in cases.items()}

    assert told == {name: apply(state, e, RULES).duplicate for name, e in cases.items()}
    assert told == {
        "the same delivery": True,
        "an earlier offset of the route": True,
        "the same id at a new offset": True,
        "a new event": False,
        "a new event of a new input topic": False,
    }
    assert encode(state) == before
    assert applied_before(None, buy("e1", 0)) is False  # no profile yet: nothing applied
    # an erasure goes to privacy.erase, which erases a live profile whichever offset or id it
    # comes with; only a profile started after that very request skips it
    erasure = internal(
        CID, {"loyalty_id": "L-7"}, "erasure_requested", "e2", 5, 0, T0, topic=OLD_TOPIC
    )
    assert applied_before(state, erasure) is False
    started_after = dict(state, erased_before=T0 - 1, erased_by=[event_fingerprint("e2")])
    assert applied_before(started_after, erasure) is True
    assert handle(CID, started_after, erasure, RULES).duplicate
    other = internal(CID, {"loyalty_id": "L-7"}, "erasure_requested", "e8", 9, 0, T0)
    assert applied_before(started_after, other) is False
