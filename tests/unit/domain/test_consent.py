"""Consent per purpose: stated in event time, unknown until stated, refusal wins on a merge."""

import pytest

from touchstream.config.rules import load_rules
from touchstream.domain.customer import apply
from touchstream.domain.fold import fold
from touchstream.domain.identity import home_of
from touchstream.domain.profile import project
from touchstream.simulator.factory import internal

RULES = load_rules(None)
T0 = 1_795_179_807_512
A = home_of("email", "hash-a")
B = home_of("loyalty_id", "L-1")


def consent(cid, ids, event_id, offset, at, **purposes):
    return internal(cid, ids, "consent_updated", event_id, offset, at=at, purposes=purposes)


def profile_with(cid, ids, *statements):
    state = None
    for n, (at, purposes) in enumerate(statements, start=1):
        state = apply(state, consent(cid, ids, f"{cid}-{n}", n, at, **purposes), RULES).state
    return state


def test_unknown_until_stated_and_only_the_stated_purposes_change():
    state = profile_with(A, {"email": "hash-a"}, (T0, {"email_marketing": True}))
    view = project(state, RULES)
    assert view["consent_email_marketing"] == "granted"
    assert view["consent_sms_marketing"] == ""  # never stated: no marketing relies on it
    assert view["consent_profiling"] == ""


def test_a_late_older_statement_does_not_overrule_a_newer_one():
    state = profile_with(
        A,
        {"email": "hash-a"},
        (T0 + 10, {"email_marketing": False}),
        (T0, {"email_marketing": True, "push_marketing": True}),
    )
    view = project(state, RULES)
    assert view["consent_email_marketing"] == "refused"
    assert view["consent_push_marketing"] == "granted"


@pytest.mark.parametrize("survivor_first", [True, False])
def test_on_a_merge_refusal_beats_grant_and_an_answer_beats_unknown(survivor_first):
    a = profile_with(A, {"email": "hash-a"}, (T0, {"email_marketing": True, "profiling": True}))
    b = profile_with(
        B, {"loyalty_id": "L-1"}, (T0 - 5, {"email_marketing": False, "sms_marketing": True})
    )
    merged = fold(b, a, RULES) if survivor_first else fold(a, b, RULES)
    view = project(merged, RULES)
    assert view["consent_email_marketing"] == "refused"  # refused by one, granted by the other
    assert view["consent_sms_marketing"] == "granted"  # stated by one only
    assert view["consent_profiling"] == "granted"
    assert view["consent_push_marketing"] == ""
