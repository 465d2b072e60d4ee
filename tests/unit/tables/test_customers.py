"""The state cache across batches: a state read again is never one the table does not hold."""

from __future__ import annotations

from typing import Any

from touchstream.tables import state_codec
from touchstream.tables.customers import LiveStates, StateCache, decode_state


class CountingTable(dict[bytes, bytes]):
    """A table standing in for the customers table, counting the reads that reach it."""

    reads = 0

    def get(self, key: Any, default: Any = None) -> Any:
        self.reads += 1
        return super().get(key, default)


def write_batch(table: CountingTable, live: LiveStates, key: bytes, points: int) -> None:
    cache = StateCache(table, live)
    state = cache.get(key) or {"customer_id": key.decode(), "points": 0}
    state["points"] = points
    cache.put(key, state)
    cache.flush()


def test_the_next_batch_reads_what_the_last_one_wrote_without_decoding_the_table() -> None:
    table, live = CountingTable(), LiveStates(10)
    write_batch(table, live, b"a", 7)
    reads = table.reads

    state = StateCache(table, live).get(b"a")

    assert state == {"customer_id": "a", "points": 7}
    assert state == decode_state(table[b"a"])
    assert table.reads == reads  # served from the live states


def test_a_batch_that_never_writes_leaves_no_trace_in_what_later_batches_read() -> None:
    table, live = CountingTable(), LiveStates(10)
    write_batch(table, live, b"a", 7)

    failed = StateCache(table, live)  # its output was not delivered: no flush
    state = failed.get(b"a")
    assert state is not None
    state["points"] = 500  # the core changes states in place
    failed.put(b"a", state)
    read_only = StateCache(table, live).get(b"a")  # read, changed, never stored
    assert read_only is not None
    read_only["points"] = 900

    assert StateCache(table, live).get(b"a") == {"customer_id": "a", "points": 7}


def test_a_batch_reads_its_own_writes_and_the_table_gets_the_last_one() -> None:
    table, live = CountingTable(), LiveStates(10)
    cache = StateCache(table, live)
    cache.put(b"a", {"customer_id": "a", "points": 1})
    again = cache.get(b"a")
    assert again == {"customer_id": "a", "points": 1}
    assert table.reads == 0
    cache.put(b"a", {"customer_id": "a", "points": 2})
    cache.flush()

    assert decode_state(table[b"a"]) == {"customer_id": "a", "points": 2}
    assert StateCache(table, live).get(b"a") == {"customer_id": "a", "points": 2}


def test_a_deleted_state_is_gone_for_later_batches() -> None:
    table, live = CountingTable(), LiveStates(10)
    write_batch(table, live, b"a", 7)
    cache = StateCache(table, live)
    cache.get(b"a")
    cache.delete(b"a")
    cache.flush()

    assert b"a" not in table
    assert StateCache(table, live).get(b"a") is None


def test_the_cache_keeps_the_newest_writes_within_its_capacity() -> None:
    table, live = CountingTable(), LiveStates(2)
    for n, key in enumerate((b"a", b"b", b"c")):
        write_batch(table, live, key, n)

    assert len(live) == 2
    reads = table.reads
    assert StateCache(table, live).get(b"a") == {"customer_id": "a", "points": 0}
    assert table.reads == reads + 1  # the oldest write left the cache: read from the table
    assert StateCache(table, live).get(b"c") == {"customer_id": "c", "points": 2}
    assert table.reads == reads + 1


def test_a_cache_of_no_entries_reads_every_state_from_the_table() -> None:
    table, live = CountingTable(), LiveStates(0)
    write_batch(table, live, b"a", 3)

    assert len(live) == 0
    assert StateCache(table, live).get(b"a") == {"customer_id": "a", "points": 3}
    assert table[b"a"][0] == state_codec.ZSTD_1


def test_clearing_forgets_every_state_so_a_recovered_table_is_read_again() -> None:
    table, live = CountingTable(), LiveStates(10)
    write_batch(table, live, b"a", 7)
    table[b"a"] = state_codec.encode({"customer_id": "a", "points": 40})  # recovery
    live.clear()

    assert StateCache(table, live).get(b"a") == {"customer_id": "a", "points": 40}


def test_states_prepared_for_a_fetch_whose_output_never_arrived_are_never_stored() -> None:
    table, live = CountingTable(), LiveStates(10)
    write_batch(table, live, b"a", 7)
    stored = dict(table)

    failed = StateCache(table, live)
    state = failed.get(b"a")
    assert state is not None
    failed.put(b"a", dict(state, points=500))
    failed.put(b"b", {"customer_id": "b", "points": 1})
    failed.prepare()  # compressing while the output was on its way; then it was not delivered

    assert dict(table) == stored
    assert StateCache(table, live).get(b"a") == {"customer_id": "a", "points": 7}
    assert StateCache(table, live).get(b"b") is None
    # the fetch read again writes its own states, never the frames prepared before
    write_batch(table, live, b"b", 3)
    assert decode_state(table[b"b"]) == {"customer_id": "b", "points": 3}
