"""Which inbound events only the privileged input may carry (domain.privileged)."""

from __future__ import annotations

import orjson
import pytest

from touchstream.domain.privileged import requires_privilege
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
