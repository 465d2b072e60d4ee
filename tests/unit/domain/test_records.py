"""The typed shape of the customer state the probe measures (``bench/typed_state_records.py``,
docs/design/typed-state.md) holds every customer state as it is: each final state of the bench's
data, and each value an older worker wrote (format 1, ``tests/unit/tables/state_v1``), converts
dict -> slotted dataclasses -> dict with nothing lost, and serves the same profile afterwards.
Only the dataclass form is tested here, with no more than what ``make test`` installs; the probe
checks that the msgspec form stores these very bytes and reads back the same records."""

from __future__ import annotations

import functools
from typing import Any

import orjson

from bench import typed_state_records as records
from tests.unit.tables.state_v1 import journey
from tests.unit.tables.test_state_migration import old_table
from touchstream.bench.replay import bench_events, replay
from touchstream.config.rules import load_rules
from touchstream.domain.profile import view
from touchstream.tables.customers import decode_state
from touchstream.tables.state_codec import decode, encode

NOW_MS = 1_795_400_000_000


@functools.cache
def bench_states() -> dict[str, dict[str, Any]]:
    """The stored values of the bench data's final table, as a worker reads them back."""
    stage = replay(bench_events(3_000, 300, NOW_MS))
    return {cid: decode(encode(state)) for cid, state in stage.table.items()}


def test_the_bench_data_holds_live_profiles_and_redirects() -> None:
    kinds = {type(records.from_flat(s)).__name__ for s in bench_states().values()}
    assert {"Live", "Redirect"} <= kinds
    assert len(bench_states()) >= 300


def test_every_bench_state_converts_to_typed_records_and_back_unchanged() -> None:
    for customer_id, state in bench_states().items():
        typed = records.from_flat(state)
        assert records.to_flat(typed) == state, customer_id


def test_the_typed_encoding_reads_back_as_the_same_records_and_the_same_profile() -> None:
    rules = load_rules(None)
    for state in bench_states().values():
        typed = records.from_flat(state)
        stored = orjson.dumps(typed)  # the typed format's layout: one object per sub-record
        again = records.dataclass_from_nested(orjson.loads(stored))
        assert again == typed
        assert view(records.to_flat(again), rules) == view(state, rules)


def test_a_value_an_older_worker_wrote_is_read_as_typed_records() -> None:
    table = {k: decode_state(v) for k, v in old_table().items()}  # format 1, migrated
    for state in table.values():
        typed = records.from_flat(state)
        # format 1 had no ``clock_at``: the record holds None, which the core reads the same
        # (``state.get("clock_at")``)
        want = {"clock_at": None, **state} if "orders" in state else state
        assert records.to_flat(typed) == want
        assert view(records.to_flat(typed), journey.RULES) == view(state, journey.RULES)


def test_an_erasure_marker_is_its_own_kind_of_value() -> None:
    marker = {"customer_id": "ts-1", "erased_at": 1_700_000_000_000, "version": 3}
    typed = records.from_flat(marker)
    assert isinstance(typed, records.Erased)
    assert records.to_flat(typed) == marker
    assert orjson.loads(orjson.dumps(typed))["t"] == "erased"
