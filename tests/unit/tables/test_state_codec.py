"""Customer states as the table stores them: compressed, readable by every later worker, and
within the 2 KiB a customer may take (docs/domain.md, "Targets")."""

from __future__ import annotations

import re
from concurrent.futures import Future
from typing import Any

import orjson
import pytest

from touchstream.bench.replay import replayed
from touchstream.domain import records
from touchstream.tables import state_codec
from touchstream.tables.customers import StateCache, decode_state

STATE = {
    "customer_id": "ts-5a1c0ffee0ddba11dec0de42",
    "version": 3,
    "points": 120,
    "orders": {
        "A-1001": {"at": 1767225600000, "net": 12000, "eff": 12000000, "pts": 120, "ref": 0}
    },
    "loyalty": {
        "tier": "silver",
        "at": 1767225600000,
        "due": None,
        "spend": 12000,
        "risk": None,
        "warned": None,
        "expired": None,
        "vips": 0,
    },
}
# STATE as the core holds it once read: its loyalty marks and orders records
# (docs/design/typed-state.md, step 3), which store as the dicts above
READ = dict(
    STATE,
    loyalty=records.LoyaltyMarks(**STATE["loyalty"]),
    orders={k: records.Order(**o) for k, o in STATE["orders"].items()},
)
# STATE as the first compressed format wrote it: changelogs and disks hold values like this,
# so a changed dictionary or frame layout must fail here, not in a restarted worker
STORED_V1 = bytes.fromhex(
    "0128b52ffd601600550300640335613163306666656530646462613131646563306465343222333132"
    "30412d3130303131373637323235363232322273696c7665727d1000502e0f845800e3d203101f6067"
    "2e2cb73c439df91c9db902dc9b331b4cce3c71841290cdcc1d71798b26cdc6449c642b"
)


def test_a_value_written_by_the_first_compressed_format_still_reads() -> None:
    assert state_codec.decode(STORED_V1) == READ
    assert state_codec.encode(READ) == state_codec.encode(STATE)


def test_a_plain_json_value_from_a_worker_before_compression_still_reads() -> None:
    assert state_codec.decode(orjson.dumps(STATE)) == READ


def test_every_state_of_the_bench_shoppers_round_trips_within_2_kib() -> None:
    stage = replayed(20_000, 2_000)
    live = 0
    for key, state in stage.table.items():
        stored = state_codec.encode(state)
        assert decode_state(stored) == state, key
        if isinstance(state, dict):  # a live profile (a redirect is a record)
            live += 1
            assert len(stored) <= 2048, (key, len(stored))
            # the point of the format: well under the JSON a shopper with orders reaches
            assert len(stored) < len(orjson.dumps(state, default=records.json_default)) / 2, key
    assert live > 1_000


@pytest.mark.parametrize(
    ("stored", "names"),
    [
        (b"", "empty value"),
        (b"\x02\x00\x01", "unknown format (first byte 0x02)"),
        (b"\x01not a zstd frame", "corrupt zstd value"),
    ],
)
def test_an_unreadable_value_stops_with_what_is_wrong(stored: bytes, names: str) -> None:
    with pytest.raises(state_codec.StateFormatError, match=re.escape(names)):
        state_codec.decode(stored)


def test_the_cache_writes_the_stored_form_once_per_key_and_reads_its_own_writes() -> None:
    table: dict[bytes, bytes] = {b"gone": state_codec.encode({"customer_id": "gone"})}
    cache = StateCache(table)
    cache.put(b"a", {"customer_id": "a", "points": 1})
    first = cache.get(b"a")
    assert first == {"customer_id": "a", "points": 1}
    assert first is not None
    first["points"] = 99  # the core may change what it read: the cache keeps its own copy
    cache.put(b"a", {"customer_id": "a", "points": 2})
    cache.delete(b"gone")
    assert table[b"gone"]  # nothing reaches the table before the batch writes
    assert cache.unwritten()[b"a"] == {"customer_id": "a", "points": 2}

    cache.flush()

    assert b"gone" not in table
    assert table[b"a"][0] == state_codec.ZSTD_1
    assert decode_state(table[b"a"]) == {"customer_id": "a", "points": 2}
    assert cache.get(b"a") == {"customer_id": "a", "points": 2}
    assert cache.unwritten() == {}


def test_a_state_whose_values_are_typed_records_is_stored_as_the_dict_it_replaces() -> None:
    """The typed-state rewrite (docs/design/typed-state.md, step 3) turns the state's values into
    records one capability at a time without changing the stored format: the codec writes a
    record as the JSON object of its fields, where the dict stood. Over every bench state the
    stored bytes are today's (orjson's), and a state holding records stores those very bytes
    (RFM marks without figures too: the record omits them, as the dict had no such key)."""
    stage = replayed(3_000, 300)
    live = 0
    for key, state in stage.table.items():
        state = state_codec.decode(state_codec.encode(state))  # as the worker reads it back
        today = state_codec.pack(orjson.dumps(state, default=records.json_default))
        assert state_codec.encode(state) == today, key
        if "orders" not in state:
            continue
        live += 1
        typed = records.from_flat(state)
        assert isinstance(typed, records.Live)
        holding = dict(
            state,
            loyalty=typed.loyalty,
            session=typed.session,
            consent=typed.consent,
            orders=typed.ledger.orders,
            returns=typed.ledger.returns,
            carts=typed.cart_book.carts,
            past=typed.ledger.past,
            ids=typed.ledger.ids,
            rfm=typed.rfm,
        )
        assert state_codec.encode(holding) == today, key
        assert state_codec.decode(state_codec.encode(holding)) == state, key
    assert live > 100


@pytest.mark.parametrize("state", [{"customer_id": "ts-1", "merged": object()}])
def test_a_value_that_is_neither_json_nor_a_record_is_still_refused(state: dict) -> None:
    # (a set would be written as an array: the core stores none, which the comparison with
    # orjson over the bench states above holds)
    with pytest.raises(TypeError, match="object"):
        state_codec.encode(state)


def test_states_compressed_off_the_event_loop_are_stored_as_the_cache_stored_them() -> None:
    """A batch's states are compressed on the packing thread while the fetch's output is
    acknowledged (``StateCache.prepare``): over the bench's states, live profiles, redirects
    and erasure markers, the table gets the very bytes ``encode`` writes, and reads back."""
    stage = replayed(3_000, 300)
    states = {key.encode(): state for key, state in stage.table.items()}
    prepared: dict[bytes, bytes] = {}
    cache = StateCache(prepared)
    for key, state in states.items():
        cache.put(key, state)
    cache.prepare()
    assert cache._packed is not None  # compressed off the event loop on this install
    cache.flush()

    assert prepared == {key: state_codec.encode(state) for key, state in states.items()}
    assert all(decode_state(prepared[key]) == state for key, state in states.items())
    assert any(not isinstance(state, dict) for state in states.values())  # redirects too


def test_a_state_that_does_not_encode_still_raises_when_its_batch_is_written() -> None:
    table: dict[bytes, bytes] = {}
    cache = StateCache(table)
    cache.put(b"b", {"customer_id": "b", "bad": object()})  # a bug in the core, say
    cache.prepare()  # raises nothing: it runs while the output is acknowledged
    with pytest.raises(TypeError):
        cache.flush()
    assert b"b" not in table


class PackingFails(Exception):
    pass


def _failed_later(plains: list[bytes]) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_exception(PackingFails("the packing thread failed"))
    return future


def _cannot_start(plains: list[bytes]) -> Future[Any]:
    raise RuntimeError("cannot schedule new futures after shutdown")


@pytest.mark.parametrize("packing", [_failed_later, _cannot_start])
def test_states_are_compressed_where_they_are_written_when_the_packing_thread_fails(
    monkeypatch: pytest.MonkeyPatch, packing: Any
) -> None:
    monkeypatch.setattr(state_codec, "pack_later", packing)
    states = {b"a": {"customer_id": "a", "points": 1}, b"b": {"customer_id": "b", "points": 2}}
    table: dict[bytes, bytes] = {}
    cache = StateCache(table)
    for key, state in states.items():
        cache.put(key, state)

    cache.prepare()  # raises nothing: the fetch's output is still awaited
    cache.flush()

    assert table == {key: state_codec.encode(state) for key, state in states.items()}
