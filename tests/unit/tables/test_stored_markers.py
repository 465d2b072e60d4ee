"""Redirects and erasure markers are typed records (``domain.records.Redirect``, ``Erased``:
step 4 of docs/design/typed-state.md) and are stored exactly as the dicts they replace: a value
written before the records (the redirects of the format-1 and format-2 fixtures; the erasure
markers below) reads back as its record and is stored again byte for byte, and the records the
core builds now are stored as the dicts were (an erasure marker with its request's digest
added).

The markers below are the stored values (``state_codec.encode``) the core wrote before step 4
(commit 43b8f82) for the shopper of ``tests/unit/domain/test_privacy.py`` (``shopper()``): the
redirect of their email's home, their erasure marker waiting for Redis (``unconfirmed``: the
alias keys, the homes and the receipt), the same marker once Redis confirmed, and the marker
their email's home became (``forget``)."""

from __future__ import annotations

import base64

import orjson
import pytest

from tests.unit.domain.test_privacy import CARD, RULES, T0, ev, shopper
from tests.unit.tables.test_state_migration import old_table
from tests.unit.tables.test_state_v2 import v2_table
from touchstream.domain.customer import request_marks
from touchstream.domain.identity import home_of
from touchstream.domain.linking import handle
from touchstream.domain.profile import view
from touchstream.domain.records import Erased, RecordFormatError, Redirect
from touchstream.tables.customers import decode_state
from touchstream.tables.state_codec import encode, unpack

REDIRECT = base64.b64decode(
    "ASi1L/0glW0CADLEDRPApQ3vHGmEWP63SGT3ph3pqM4NxYXbsDnQNtABAaXUlKi5NBm5k5L2cfmeT9npepzUKsQz5AM"
    "GAO+mIR5eANzaw7nAgAMjTvIa"
)
UNCONFIRMED = base64.b64decode(
    "ASi1L/1gPwGtCAASzCYdYEf0YwYG0jrYAz+bYcM/gBDAxLquu3nPBoMgsAv33osU2vBxvz6wga2BTAxLP33xhv2FJsZ"
    "SwCxJrYUYmcNOCOChsbJAIGszQGWUNTXzqVZCrKc71Eq1No/DU8Fe8B2pQfWPrfZ3cLmkMAif4iD2QPgQp+BHAODDTw"
    "2CoAIHHyiVzoWJqvlq7V7z9WLsb9nPnKMFWYLRrfSYCysgEBxDkMLpAUpRxW25QpA9dCxUg+r2hatRcF3UzzAeYc2LT"
    "zwLJ58SnpgxFBORIAa19hZ3VBpPwCKEKK9SFXTAAlJAKANK3IzEazyugb5WM4CjtZpdoitr4axjPBgsV0zv/mJ8uFbU"
    "ATCTxt5WMzwEh0zECbIC"
)
CONFIRMED = base64.b64decode(
    "ASi1L/0gU50BAFQCODY5MzU4Y2IzNmI1MjE4NmQwZTBkMGNjOTUxNzk4MDc1MTc1fQMQCq0aHoKRiTixAg=="
)
HOME = base64.b64decode(
    "ASi1L/0gU50BAFQCMzhhZjc3NDQwMjgxZjA2MjM1NGYxNjAzOTUxNzk4MDc1MTc0fQMQCq0aHoKRiTixAg=="
)
ROOT = home_of("loyalty_id", "L-9")
MAIL_HOME = home_of("email", "hash-9")


def test_a_redirect_of_the_stored_fixtures_reads_as_its_record_and_is_stored_byte_for_byte():
    stored = [v for table in (old_table(), v2_table()) for v in table.values()]
    redirects = [(raw, decode_state(raw)) for raw in stored]
    redirects = [(raw, state) for raw, state in redirects if not isinstance(state, dict)]
    assert redirects  # the fixtures hold the redirects merges leave
    for raw, state in redirects:
        assert isinstance(state, Redirect)
        assert encode(state) == raw


@pytest.mark.parametrize(
    ("stored", "kind"),
    [(REDIRECT, Redirect), (UNCONFIRMED, Erased), (CONFIRMED, Erased), (HOME, Erased)],
    ids=["redirect", "unconfirmed erasure", "confirmed erasure", "erased home"],
)
def test_a_marker_written_before_the_records_reads_as_its_record_and_is_stored_byte_for_byte(
    stored: bytes, kind: type
) -> None:
    state = decode_state(stored)
    assert isinstance(state, kind)
    assert encode(state) == stored
    # and serves what it served: where the shopper lives now, or nothing (erased)
    served = {"customer_id": MAIL_HOME, "merged_into": ROOT, "version": 3}
    assert view(state, RULES) == (served if kind is Redirect else None)


def test_the_waiting_marker_keeps_what_redis_must_remove_and_the_receipt():
    marker = decode_state(UNCONFIRMED)
    assert isinstance(marker, Erased) and marker.unconfirmed is not None
    assert marker.unconfirmed["receipt"]["request_id"] == "R-1"
    assert sorted(marker.unconfirmed["homes"]) == sorted([MAIL_HOME, home_of("device_id", "dev-9")])
    confirmed = decode_state(CONFIRMED)
    assert isinstance(confirmed, Erased) and confirmed.unconfirmed is None


def stored_dict(stored: bytes) -> dict:
    return orjson.loads(unpack(stored))


def test_the_records_the_core_builds_now_are_stored_as_the_dicts_were():
    """As they were, and an erasure marker now also names its request (by a digest of its
    event id: how a second delivery of it is known, ``domain.linking.handle``)."""
    stage = shopper()
    assert encode(stage.table[MAIL_HOME]) == REDIRECT
    erasure = handle(
        ROOT, stage.table[ROOT], ev(5, CARD, "erasure_requested", request_id="R-1"), RULES
    )
    request = {"requests": request_marks({"id": "e5", "props": {"request_id": "R-1"}})}
    assert isinstance(erasure.store, Erased)
    assert stored_dict(encode(erasure.store)) == {**stored_dict(UNCONFIRMED), **request}
    confirm = {"k": "confirm", "version": erasure.store.version, "ts": T0 + 9}
    done = handle(ROOT, erasure.store, confirm, RULES)
    assert isinstance(done.store, Erased)
    assert stored_dict(encode(done.store)) == {**stored_dict(CONFIRMED), **request}
    home, forget = erasure.sends[0]
    assert home == MAIL_HOME
    forgotten = handle(home, stage.table.get(home), forget, RULES).store
    assert stored_dict(encode(forgotten)) == {**stored_dict(HOME), **request}
    # a redirect read back is forwarded to as before, a marker waits for the same version
    redirect = decode_state(REDIRECT)
    assert handle(MAIL_HOME, redirect, ev(6, {"email": "hash-9"}), RULES).sends[0][0] == ROOT
    marker = decode_state(UNCONFIRMED)
    again = handle(ROOT, marker, confirm, RULES)
    assert [d.kind for d in again.decisions] == ["receipt"] and encode(again.store) == CONFIRMED


@pytest.mark.parametrize(
    "value",
    [
        {"customer_id": "ts-1", "into": "ts-2", "rank": [1, 2, "ts-1"], "version": 1, "x": 1},
        {"customer_id": "ts-1", "into": "ts-2", "rank": "strongest", "version": 1},
        {"customer_id": "ts-1", "erased_at": "yesterday", "version": 1},
        {"customer_id": "ts-1", "erased_at": 1, "version": 1, "orders_left": {}},
    ],
    ids=["redirect, a key it does not hold", "redirect, a bad rank", "bad time", "marker+data"],
)
def test_a_stored_marker_of_another_shape_is_refused_never_read_as_something_else(value):
    with pytest.raises(RecordFormatError, match="customer state"):
        decode_state(encode(value))
