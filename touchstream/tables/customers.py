"""The per-customer state table: bytes keys (customer id), values the domain state as
``tables.state_codec`` stores it (orjson, compressed)."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any

import faust

from touchstream.domain.migrate import read
from touchstream.domain.state import Stored
from touchstream.tables import state_codec
from touchstream.tables.store import store_reader, table_writer

CUSTOMERS_TABLE = "customers"
log = logging.getLogger(__name__)


def customers_table(app: faust.App, partitions: int) -> Any:
    return app.Table(
        CUSTOMERS_TABLE,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=partitions,
        help="Per-customer state (domain.customer), one record per customer id",
    )


def decode_state(raw: bytes | None) -> Stored | None:
    """A state as the table stores it (either byte format ``state_codec`` reads), brought up
    to the current state format, a redirect or an erasure marker as its record
    (``domain.migrate.read``)."""
    return None if raw is None else read(state_codec.decode(raw))


class LiveStates:
    """The decoded states of the customers written last, each exactly as the table holds it.

    Reading a state from the table costs a decompression and a JSON parse (about a tenth of
    the customer stage's CPU in ``bench/handler_speed.py``, issue 10); a shopper's events
    come in bursts, so the state the previous batch wrote is usually the next one read. A
    state leaves this cache when it is read (the pure core changes what it reads in place)
    and comes back only when a batch writes it to the table, so an entry never differs from
    the table: a failed batch simply leaves its states out. A rebalance may change the table
    underneath (recovery from the changelog): the customer stage clears the cache when it
    rebuilds its timer index, at the first batch after every assignment. Bounded by
    ``capacity`` entries, oldest written first out.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._states: dict[bytes, Stored] = {}  # insertion order: oldest write first

    def __len__(self) -> int:
        return len(self._states)

    def take(self, key: bytes) -> Stored | None:
        return self._states.pop(key, None)

    def keep(self, key: bytes, state: Stored) -> None:
        states = self._states
        states.pop(key, None)
        if self.capacity <= 0:
            return
        states[key] = state
        if len(states) > self.capacity:
            del states[next(iter(states))]

    def clear(self) -> None:
        self._states.clear()


class StateCache:
    """The states a batch of records reads and writes, written back to the table once per key.

    Kafka Streams' record cache: a customer touched by many records of one batch costs one
    changelog record, not one per record. The table (and its changelog) only ever holds states
    as of the end of a batch, whose input offsets are acknowledged after ``flush``; a crash
    before then replays the whole batch, and idempotent updates make that harmless.

    A read hands out the state itself, never a copy: one taken from ``live``, decoded from the
    table, or the one this batch wrote last for the key (copying it cost 7% of the worker's
    main thread in the bench, where a fetch holds several records of most customers). That
    relies on the pure core's rule that a step that stores nothing changed nothing it read
    (``tests/unit/domain/test_linking.py`` checks it over the bench's traffic), as the offline
    oracle does. States are serialized and compressed once per key, when the batch writes them.
    """

    def __init__(self, table: Any, live: LiveStates | None = None) -> None:
        self._table = table
        self._read = store_reader(table)
        self._live = live if live is not None else LiveStates(0)
        self._dirty: dict[bytes, Stored | None] = {}
        # the stored values ``prepare`` is computing: the keys in order, their frames' future
        self._packed: tuple[list[bytes], Future[Any]] | None = None

    def get(self, key: bytes) -> Stored | None:
        dirty = self._dirty
        if key in dirty:
            return dirty[key]
        state = self._live.take(key)
        if state is not None:
            return state
        return decode_state(self._read(key))

    def put(self, key: bytes, state: Stored) -> None:
        self._dirty[key] = state

    def delete(self, key: bytes) -> None:
        self._dirty[key] = None

    def unwritten(self) -> dict[bytes, Stored | None]:
        """States changed since the last flush (None: deleted)."""
        return self._dirty

    def prepare(self) -> None:
        """Encode what changed and start compressing it on the codec's packing thread
        (``state_codec.pack_later``), for ``flush`` to write: the batch is done, and nothing
        changes its states before ``flush`` (the stage handles one fetch at a time). Raises
        nothing: a state that does not encode is left to ``flush``, which raises as before."""
        keys: list[bytes] = []
        plains: list[bytes] = []
        try:
            for key, state in self._dirty.items():
                if state is not None:
                    keys.append(key)
                    plains.append(state_codec.plain(state))
            future = state_codec.pack_later(plains)
        except Exception:  # flush encodes inline, and raises what that raises
            return
        if future is not None:
            self._packed = (keys, future)

    def flush(self) -> None:
        """Write what changed (inside the batch: the table needs its partition's event)."""
        table = self._table
        live = self._live
        write, encode = table_writer(table), state_codec.encode
        packed = self._take_packed()
        for key, state in self._dirty.items():
            if state is not None:
                frame = packed.get(key)
                write(key, encode(state) if frame is None else state_codec.pack_frame(frame))
                live.keep(key, state)
            else:
                live.take(key)
                if key in table:
                    del table[key]
        self._dirty.clear()

    def _take_packed(self) -> dict[bytes, Any]:
        """The frames ``prepare`` had compressed, by key (none if it did not run or failed)."""
        if self._packed is None:
            return {}
        keys, future = self._packed
        self._packed = None
        try:
            return dict(zip(keys, future.result(), strict=True))
        except Exception:  # encoded inline instead, raising what that raises
            log.exception("compressing states off the event loop failed: compressing inline")
            return {}
