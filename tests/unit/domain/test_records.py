"""The typed customer state (``touchstream/domain/records.py``, docs/design/typed-state.md) holds
every customer state as it is: each final state of the bench's data, each value an older
worker wrote (format 1, ``tests/unit/tables/state_v1``) and each value today's worker writes
(format 2, ``tests/unit/tables/state_v2``) converts dict -> records -> dict with nothing lost
and serves the same profile afterwards; the records' own encoding reads back as the same
records; a value of another shape is refused, never read as something else; and no record is
tracked by the cycle collector (they are declared ``gc=False``: a state holds no cycles)."""

from __future__ import annotations

import functools
import gc
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from tests.unit.tables.state_v1 import journey
from tests.unit.tables.state_v2 import journey as journey_v2
from tests.unit.tables.test_state_migration import old_table
from tests.unit.tables.test_state_v2 import v2_table
from touchstream.bench.replay import bench_events, replay
from touchstream.config.rules import load_rules
from touchstream.domain import records
from touchstream.domain.migrate import migrate, read
from touchstream.domain.profile import view
from touchstream.tables.state_codec import decode, encode

NOW_MS = 1_795_400_000_000


@functools.cache
def bench_states() -> dict[str, dict[str, Any]]:
    """The stored values of the bench data's final table as format-2 dicts (a redirect's too)."""
    stage = replay(bench_events(3_000, 300, NOW_MS))
    return {cid: decode(encode(state)) for cid, state in stage.table.items()}


def flat_value(stored: bytes) -> dict[str, Any]:
    """A stored value as the format-2 dict (``tables.customers.decode_state`` without making
    a redirect or an erasure marker its record)."""
    return migrate(decode(stored))


def served(flat: dict[str, Any], rules: Any) -> dict[str, Any] | None:
    """The profile a format-2 dict serves, read as the worker reads it."""
    return view(read(dict(flat)), rules)


def test_the_bench_data_holds_live_profiles_and_redirects() -> None:
    kinds = {type(records.from_flat(s)) for s in bench_states().values()}
    assert {records.Live, records.Redirect} <= kinds
    assert len(bench_states()) >= 300


def test_every_bench_state_converts_to_typed_records_and_back_unchanged() -> None:
    for customer_id, state in bench_states().items():
        typed = records.from_flat(state)
        assert records.to_flat(typed) == state, customer_id


def test_the_typed_encoding_reads_back_as_the_same_records_and_the_same_profile() -> None:
    rules = load_rules(None)
    encoder = msgspec.json.Encoder()
    decoder = msgspec.json.Decoder(records.CustomerState)
    for state in bench_states().values():
        typed = records.from_flat(state)
        stored = encoder.encode(typed)  # the typed layout: one object per sub-record, tag first
        assert stored.startswith(b'{"t":')
        again = decoder.decode(stored)
        assert again == typed
        assert served(records.to_flat(again), rules) == served(state, rules)


def test_a_value_an_older_worker_wrote_is_read_as_typed_records() -> None:
    table = {k: flat_value(v) for k, v in old_table().items()}  # format 1, migrated
    for state in table.values():
        typed = records.from_flat(state)
        # format 1 had no ``clock_at``: the record holds None, which the core reads the same
        # (``state.get("clock_at")``)
        want = {"clock_at": None, **state} if "orders" in state else state
        assert records.to_flat(typed) == want
        assert served(records.to_flat(typed), journey.RULES) == served(state, journey.RULES)


def test_a_value_todays_worker_writes_is_read_as_typed_records() -> None:
    table = {k: flat_value(v) for k, v in v2_table().items()}  # format 2, byte 0x01
    assert any(isinstance(records.from_flat(s), records.Live) for s in table.values())
    for state in table.values():
        typed = records.from_flat(state)
        assert records.to_flat(typed) == state
        assert served(records.to_flat(typed), journey_v2.RULES) == served(state, journey_v2.RULES)


def test_an_erasure_marker_is_its_own_kind_of_value() -> None:
    marker = {"customer_id": "ts-1", "erased_at": 1_700_000_000_000, "version": 3}
    typed = records.from_flat(marker)
    assert isinstance(typed, records.Erased)
    assert records.to_flat(typed) == marker
    assert msgspec.json.decode(msgspec.json.encode(typed))["t"] == "erased"


def test_a_live_profile_carries_the_typed_format_version() -> None:
    live = [records.from_flat(s) for s in bench_states().values() if "orders" in s]
    assert live and all(r.fmt == records.FORMAT == 3 for r in live)  # type: ignore[union-attr]
    assert all(records.to_flat(r)["fmt"] == records.FLAT_FORMAT == 2 for r in live)


def _a_live_state() -> dict[str, Any]:
    return next(dict(s) for s in bench_states().values() if "orders" in s)


def test_a_key_no_record_holds_is_refused_not_dropped() -> None:
    state = _a_live_state() | {"traits": {"vip": True}}  # e.g. a newer worker's capability
    with pytest.raises(records.RecordFormatError, match="traits"):
        records.from_flat(state)


def test_a_field_of_the_wrong_type_is_refused_naming_it() -> None:
    state = _a_live_state() | {"points": "lots"}
    with pytest.raises(records.RecordFormatError, match=r"\$\.ledger\.points"):
        records.from_flat(state)


def test_a_state_not_yet_migrated_is_refused() -> None:
    state = _a_live_state()
    del state["fmt"]  # format 1: domain.migrate brings it to 2 first
    with pytest.raises(records.RecordFormatError, match="format 1"):
        records.from_flat(state)


def _every_record(value: Any) -> Iterator[msgspec.Struct]:
    if isinstance(value, msgspec.Struct):
        yield value
        for name in value.__struct_fields__:
            yield from _every_record(getattr(value, name))
    elif isinstance(value, dict):
        for v in value.values():
            yield from _every_record(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _every_record(v)


def test_no_record_of_any_bench_state_is_tracked_by_the_cycle_collector() -> None:
    kinds: set[type] = set()
    for state in bench_states().values():
        for record in _every_record(records.from_flat(state)):
            kinds.add(type(record))
            assert not gc.is_tracked(record), type(record).__name__
    # the bench data reaches most records, sessions, carts, orders and RFM scores included
    assert {records.Live, records.Redirect, records.Order, records.Cart, records.Session} <= kinds
    declared = {
        v
        for v in vars(records).values()
        if isinstance(v, type) and issubclass(v, records.Record) and v is not records.Record
    }
    for cls in declared:  # and every record declared, reached by the data or not
        assert cls.__struct_config__.gc is False, cls.__name__
