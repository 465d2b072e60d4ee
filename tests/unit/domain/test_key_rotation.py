"""HMAC key rotation through the pure customer stage (issue 28): after the stored digests are
re-keyed, a shopper's events under the new key join the profile they joined before (same
customer id, same balance), also when the profile's id is the home of a weaker identifier, when
the records are delivered twice, and when an event under the new key came first."""

from typing import Any

import pytest

from touchstream.config.rules import load_rules
from touchstream.domain.identity import HmacKeys, IdentityNormaliser, home_of, mint_customer_id
from touchstream.offline import OfflineStage
from touchstream.serving.rekey import rekey_record

RULES = load_rules(None)
T0 = 1_795_179_807_512
MIN = 60_000
OLD_KEY = "old-hmac-key-before-rotation-0123456789"
NEW_KEY = "new-hmac-key-after-rotation-0123456789"
BEFORE = IdentityNormaliser(OLD_KEY)
AFTER = IdentityNormaliser({1: OLD_KEY, 2: NEW_KEY})


def purchase(n: int, raw: dict[str, str], ids: IdentityNormaliser, total: int) -> dict[str, Any]:
    normalised = ids.normalise(raw)
    return {
        "id": f"e-{n}",
        "type": "purchase",
        "at": T0 + n * MIN,
        "ch": "pos",
        "src": "till-1",
        "ids": normalised,
        "cid": mint_customer_id(normalised),
        "props": {
            "order_id": f"R-{n}",
            "total_minor": total,
            "discount_minor": 0,
            "currency": "EUR",
            "items": [],
        },
        "ts": T0 + n * MIN + 1_000,
        "in": [0, n],
    }


def rotate(stage: OfflineStage, again: bool = False) -> None:
    """What `touchstream keys rotate` sends: per customer, its email/phone digests re-keyed
    (found through the Redis aliases, which name the customer; here: the live profiles)."""
    keys = HmacKeys({1: "the-old-key-is-not-needed-here-0000000", 2: NEW_KEY})
    for customer_id, state in list(stage.live().items()):
        moves = [
            [kind, old, keys.rekey(old, 2)]
            for kind in ("email", "phone")
            for old in state["identifiers"].get(kind, [])
            if not old.startswith("v2:")
        ]
        if moves:
            record = dict(rekey_record(moves, 2, T0 + 100 * MIN), cid=customer_id)
            stage.submit([record, record] if again else [record])
    stage.drain()


def customer_of(stage: OfflineStage, kind: str, digest: str) -> str | None:
    return stage.resolve(home_of(kind, digest))


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
@pytest.mark.parametrize("again", [False, True], ids=["once", "delivered-twice"])
def test_after_rotation_the_same_email_finds_the_same_customer(seed, again):
    stage = OfflineStage(RULES, seed=seed)
    stage.submit([purchase(1, {"email": "ann@example.com"}, BEFORE, 1_000)])
    stage.drain()
    (before,) = stage.live()

    rotate(stage, again)
    stage.submit([purchase(2, {"email": " Ann@Example.com"}, AFTER, 2_000)])
    stage.drain()

    assert list(stage.live()) == [before]
    profile = stage.live()[before]
    assert profile["qualifying_spend_minor"] == 3_000
    new = AFTER.normalise_value("email", "ann@example.com")
    assert profile["identifiers"]["email"] == [new]
    assert customer_of(stage, "email", new or "") == before


def test_a_profile_first_seen_by_device_keeps_its_id_when_its_email_is_rekeyed():
    stage = OfflineStage(RULES, seed=3)
    stage.submit([purchase(1, {"device_id": "app-7", "email": "bo@example.com"}, BEFORE, 500)])
    stage.drain()
    (before,) = stage.live()

    rotate(stage)
    stage.submit([purchase(2, {"email": "bo@example.com", "phone": "+49 170 1234567"}, AFTER, 700)])
    stage.drain()

    (after,) = stage.live()
    assert after == before
    assert stage.live()[after]["qualifying_spend_minor"] == 1_200


def test_an_event_under_the_new_key_before_the_rotation_record_still_ends_in_one_profile():
    stage = OfflineStage(RULES, seed=2)
    stage.submit([purchase(1, {"loyalty_id": "L-1", "email": "kim@example.com"}, BEFORE, 100)])
    stage.drain()
    (before,) = stage.live()
    stage.submit([purchase(2, {"email": "kim@example.com"}, AFTER, 200)])  # new key came first
    stage.drain()

    rotate(stage)

    assert list(stage.live()) == [before]
    assert stage.live()[before]["qualifying_spend_minor"] == 300


def test_without_the_rotation_the_new_key_splits_the_profile():
    """What the rotation is for: the same email under a new key alone is a stranger."""
    stage = OfflineStage(RULES)
    stage.submit([purchase(1, {"email": "ann@example.com"}, BEFORE, 1_000)])
    stage.submit([purchase(2, {"email": "ann@example.com"}, AFTER, 2_000)])
    stage.drain()

    assert len(stage.live()) == 2


def test_a_table_written_by_an_earlier_release_is_rekeyed_and_found_under_the_new_key():
    """The state-format-1 fixture (tests/unit/tables/state_v1, made by that code): its profile
    holds a version-1 email digest; after the rotation an order under the new key lands on it."""
    import base64
    from pathlib import Path

    import orjson

    from tests.unit.tables.state_v1 import journey
    from touchstream.tables.customers import decode_state

    stored = orjson.loads((Path(__file__).parents[1] / "tables/state_v1/table.bin").read_bytes())
    table = {k: decode_state(base64.b64decode(v)) for k, v in stored.items()}
    stage = journey.stage_with(table)
    (root,) = stage.live()
    digest = journey.ANN["email"]  # what the normaliser of that release stored

    rotate(stage)
    new = HmacKeys({1: "the-old-key-is-not-needed-here-0000000", 2: NEW_KEY}).rekey(digest, 2)
    event = purchase(200, {"email": "x@example.com"}, BEFORE, 900)
    event = dict(event, ids={"email": new}, cid=mint_customer_id({"email": new}))
    stage.submit([event])
    stage.drain()

    assert list(stage.live()) == [root]
    assert "R-200" in stage.live()[root]["orders"]
    assert stage.live()[root]["identifiers"]["email"] == [new]


def test_an_old_digest_brought_back_by_a_late_fold_is_rekeyed_once_more_without_a_duplicate():
    stage = OfflineStage(RULES)
    stage.submit([purchase(1, {"email": "ann@example.com"}, BEFORE, 1_000)])
    stage.drain()
    (root,) = stage.live()
    rotate(stage)
    old = BEFORE.normalise_value("email", "ann@example.com") or ""
    new = AFTER.normalise_value("email", "ann@example.com") or ""
    stage.table[root]["identifiers"]["email"].append(old)  # as a fold in flight would

    rotate(stage)

    assert stage.live()[root]["identifiers"]["email"] == [new]
