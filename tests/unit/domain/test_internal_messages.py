"""The identity messages the core sends between homes (merge, absorb, fold, release, drop,
forget) are never quarantined: one that raised would halt its partition. So they must be valid
and bounded by construction. Fuzzed here over shoppers that link, merge and erase, through
the same ingest normalisation and ``linking.handle`` the workers run
(``touchstream.offline``): every message is a known kind the core accepts without raising,
encodes to JSON, and stays far below the broker's default record limit."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from touchstream.config.rules import load_rules
from touchstream.config.settings import DEV_HMAC_SECRET
from touchstream.domain.identity import IdentityNormaliser
from touchstream.domain.ingest import Ingest
from touchstream.domain.linking import handle
from touchstream.domain.records import json_default, lift
from touchstream.offline import OfflineStage
from touchstream.simulator.factory import event, purchase

RULES = load_rules(None)
T0 = 1_795_179_807_512
# confirm: Redis confirmed an erasure's deletion (the offline stage confirms at once)
INTERNAL_KINDS = {"merge", "absorb", "fold", "release", "drop", "forget", "confirm"}
# Kafka's default message.max.bytes: an internal record must always fit it
RECORD_LIMIT = 1024 * 1024

IDS = {
    "customer_id": ["crm-1", "crm-2", "crm-3"],
    "loyalty_id": ["LC-1", "LC-2"],
    "email": ["a@example.com", "b@example.com", "c@example.com"],
    "phone": ["+4915112345678", "+4915187654321"],
    "device_id": ["dev-1", "dev-2", "dev-3"],
    "anonymous_id": ["anon-1", "anon-2", "anon-3", "anon-4"],
}


@st.composite
def identities(draw: st.DrawFn) -> dict[str, str]:
    kinds = draw(st.lists(st.sampled_from(sorted(IDS)), min_size=1, max_size=4, unique=True))
    return {kind: draw(st.sampled_from(IDS[kind])) for kind in kinds}


@st.composite
def raw_events(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(1, 25))):
        identity = draw(identities())
        kind = draw(st.sampled_from(["page_view", "identify", "purchase", "erasure_requested"]))
        at = T0 + i * 60_000
        eid = f"e{i}"
        if kind == "purchase":
            out.append(purchase(identity, f"o-{i}", 1_000 + i, event_id=eid, occurred_at=at))
        elif kind == "erasure_requested":
            props = {"request_id": f"r-{i}"}
            out.append(event(kind, identity, props, event_id=eid, occurred_at=at))
        else:
            props = {"url": "https://shop.example.com/"} if kind == "page_view" else {}
            out.append(event(kind, identity, props, event_id=eid, occurred_at=at))
    return out


class Recording(OfflineStage):
    """The offline stage, keeping every message one home sent another."""

    sent: list[tuple[str, dict[str, Any]]]

    def _enqueue(self, target: str, msg: dict[str, Any]) -> None:
        if msg.get("k", "ev") != "ev":
            self.sent.append((target, msg))
        super()._enqueue(target, msg)


@settings(deadline=None, max_examples=150, database=None)
@given(raw_events(), st.integers(0, 3), st.booleans())
def test_internal_messages_are_known_bounded_and_accepted(
    raws: list[dict[str, Any]], seed: int, settle: bool
) -> None:
    normaliser = IdentityNormaliser(
        DEV_HMAC_SECRET, RULES.identity.blocked_values, RULES.identity.default_country_code
    )
    ingest = Ingest(RULES.program, normaliser, 86_400_000)
    stage = Recording(RULES, partitions=4, seed=seed)
    stage.sent = []
    events = []
    for offset, raw in enumerate(raws):
        internal = ingest.normalise(raw, T0 + offset * 60_000 + 1_000, 0, offset)
        internal["rt"] = internal["ts"]
        events.append(internal)
        if settle:  # each event's messages delivered before the next event arrives
            stage.submit([internal])
            stage.drain()
    if not settle:  # all at once: messages and events interleave
        stage.submit(events)
    stage.drain()  # the core never raised on any of them
    for target, msg in stage.sent:
        assert msg["k"] in INTERNAL_KINDS, msg
        encoded = orjson.dumps(msg, default=json_default)  # as agents.ports.Output sends it
        assert len(encoded) + len(target) < RECORD_LIMIT
        received = orjson.loads(encoded)
        if "state" in received:  # a fold message: its state's leaf records, as fold builds them
            lift(received["state"])
        assert received == msg  # what the next home reads is what was sent
    # each message is accepted as it comes back out of Kafka, by a home in any state
    for target, msg in stage.sent[-20:]:
        handle(target, None, orjson.loads(orjson.dumps(msg, default=json_default)), RULES)
