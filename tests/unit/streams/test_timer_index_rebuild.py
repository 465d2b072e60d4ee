"""The timer index rebuilt after an assignment one partition at a time: a batch loads its own
partition and at most one more, never the whole table decoded at once, and once every
partition is loaded the timers are the ones a full rebuild finds."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from touchstream.agents import customer
from touchstream.bench.replay import replayed
from touchstream.config.rules import load_rules
from touchstream.domain.timers import next_due
from touchstream.streams.timer_index import TimerIndex, partition_for
from touchstream.tables import state_codec
from touchstream.tables.customers import decode_state

PARTITIONS = 4
RULES = load_rules(None)


class LiveStates:
    def clear(self) -> None:
        pass


@pytest.fixture(scope="module")
def table() -> dict[bytes, bytes]:
    states = replayed(3_000, 300).table
    return {cid.encode(): state_codec.encode(state) for cid, state in states.items()}


def topology(table: dict[bytes, bytes]) -> Any:
    """The ports of the customer stage the rebuild reads (agents.ports.CustomerPorts)."""
    return SimpleNamespace(
        partitions=PARTITIONS,
        rules=RULES,
        customers=table,
        live_states=LiveStates(),
        timers=TimerIndex(),
        owned_partitions=lambda: set(range(PARTITIONS)),
    )


def test_a_batch_decodes_its_own_partition_and_at_most_one_more(
    table: dict[bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[bytes] = []
    real = customer.decode_state

    def counting(raw: bytes | None) -> Any:
        decoded.append(raw or b"")
        return real(raw)

    monkeypatch.setattr(customer, "decode_state", counting)
    t = topology(table)
    sizes = {
        p: sum(1 for k in table if partition_for(k, PARTITIONS) == p) for p in range(PARTITIONS)
    }
    assert min(sizes.values()) > 0

    customer._rebuild_index(t, [], 2)
    assert t.timers.built(2)
    assert len(t.timers.unbuilt()) == PARTITIONS - 2
    assert len(decoded) < len(table)
    assert len(decoded) == sizes[2] + sizes[0]  # its own, then the first one not built
    assert t.timers.idle_tick(3, 10**15, 0) is None  # no tick for a partition not loaded


def test_once_every_partition_is_loaded_the_timers_are_those_of_the_whole_table(
    table: dict[bytes, bytes],
) -> None:
    t = topology(table)
    for _ in range(PARTITIONS):
        customer._rebuild_index(t, [], 1)
    assert t.timers.unbuilt() == []
    expected: dict[int, set[str]] = {}
    for key, raw in table.items():
        due = next_due(decode_state(raw), RULES)
        if due is not None:
            expected.setdefault(partition_for(key, PARTITIONS), set()).add(key.decode())
    assert sum(len(ids) for ids in expected.values()) > 0, "the data set has no pending timer"
    index = t.timers
    for partition in range(PARTITIONS):
        index.advance(partition, 2**62)
        assert set(index.due(partition)) == expected.get(partition, set())


def test_a_state_of_the_fetch_not_written_yet_amends_its_partition(
    table: dict[bytes, bytes],
) -> None:
    key = next(k for k in table if next_due(decode_state(table[k]), RULES) is not None)
    partition = partition_for(key, PARTITIONS)
    t = topology(table)
    unwritten = SimpleNamespace(unwritten=lambda: {key: None})  # deleted in this fetch
    customer._rebuild_index(t, [unwritten], partition)
    t.timers.advance(partition, 2**62)
    assert key.decode() not in t.timers.due(partition)
