"""Which inbound events only the privileged input may carry (domain.privileged)."""

from __future__ import annotations

import time

import orjson
import pytest

from touchstream.config.settings import load_settings
from touchstream.domain.privileged import is_command, requires_privilege
from touchstream.runtime.dlq_replay import ingest_for
from touchstream.schemas.decode import decode
from touchstream.simulator.factory import event
from touchstream.simulator.traffic import Traffic, topic_for

CARD = {"loyalty_id": "LC-1"}


@pytest.mark.parametrize(
    "ev",
    [
        event("erasure_requested", CARD, {"request_id": "DSR-1"}),
        event("access_requested", CARD, {"request_id": "DSR-2"}),
        event("redemption", CARD, {"redemption_id": "R-1", "points": 100}),
        event("consent_updated", CARD, {"purposes": {"email_marketing": True}}),
        # a grant with a withdrawal: still a grant
        event("consent_updated", CARD, {"purposes": {"profiling": False, "sms_marketing": True}}),
    ],
)
def test_erasure_access_redemption_and_consent_grants_are_privileged(ev: dict) -> None:
    assert requires_privilege(ev)


@pytest.mark.parametrize(
    "ev",
    [
        # an opt-out or an unsubscribe is accepted from any channel
        event("consent_updated", CARD, {"purposes": {"email_marketing": False}}),
        event("consent_updated", CARD, {"purposes": {"profiling": False, "sms_marketing": False}}),
        event("page_view", CARD, {"url": "u"}),
        event("loyalty_signup", CARD, {}),
    ],
)
def test_withdrawals_and_ordinary_events_are_not(ev: dict) -> None:
    assert not requires_privilege(ev)


def test_the_simulator_sends_its_consent_grants_to_the_privileged_input() -> None:
    traffic = Traffic(customers=50, seed=3)
    records = [traffic.next(1_700_000_000_000 + i) for i in range(2_000)]
    grants = [r for r in records if requires_privilege(orjson.loads(r.value))]
    assert grants, "the simulator produced no consent grant"
    assert all(topic_for(r, "p.touchpoints") == "p.touchpoints.privileged" for r in grants)
    others = [r for r in records if r not in grants]
    assert all(topic_for(r, "p.touchpoints") == "p.touchpoints" for r in others)


def test_the_customer_stage_knows_a_command_by_the_event_ingest_hands_it() -> None:
    """``is_command`` (a command moves no partition clock) says of the normalised event what
    ``requires_privilege`` says of the inbound one: over the simulator's traffic and every
    command above."""
    ingest = ingest_for(load_settings({"TOUCHSTREAM_ENV": "development"}))
    traffic = Traffic(customers=50, seed=3)
    inbound = [orjson.loads(traffic.next(1_700_000_000_000 + i).value) for i in range(2_000)]
    inbound += [
        event("erasure_requested", CARD, {"request_id": "DSR-1"}),
        event("access_requested", CARD, {"request_id": "DSR-2"}),
        event("redemption", CARD, {"redemption_id": "R-1", "points": 100}),
        event("consent_updated", CARD, {"purposes": {"profiling": False, "sms_marketing": True}}),
        event("consent_updated", CARD, {"purposes": {"email_marketing": False}}),
    ]
    verdicts = []
    for offset, ev in enumerate(inbound):
        decoded = decode(orjson.dumps(ev), 1 << 20)
        internal = ingest.normalise(decoded, int(time.time() * 1000), 0, offset)
        verdicts.append((is_command(internal), requires_privilege(decoded)))
    assert all(command == privileged for command, privileged in verdicts)
    assert sum(command for command, _ in verdicts) > 5  # grants of the traffic, and the four
