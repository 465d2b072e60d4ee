"""Tables whose changelog records leave through the outbox, not one producer call each.

Faust's ``Table.on_key_set`` sends each change with ``Topic.send_soon``: a ``FutureMessage``,
the producer buffer, an awaited ``AIOKafkaProducer.send`` per record. Measured in the bench
(py-spy of the pipeline, issue 10), that path was about a tenth of the worker's time. This
class keeps everything else of a Faust table (its store, recovery, standby replicas, window
expiry) and only changes where the changelog record goes: serialized as Faust would, to the
changelog partition of the current event, into the outbox, which hands the producer one
record batch per partition. Outside a batch handler (no outbox yet) it behaves as Faust's.

A change is then on the wire only after the next ``Outbox.flush``, and Faust's commit flushes
the producer before it commits offsets, so no offset is committed past a change not sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust
import orjson
from faust.serializers import codecs
from faust.utils import json as faust_json

from touchstream.streams.outbox import Outbox


class OutboxTable(faust.Table):
    outbox: Outbox | None = None  # set by the topology once the outbox exists

    def use_outbox(self, outbox: Outbox) -> None:
        self.outbox = outbox
        # what Faust's ``_on_changelog_sent`` does: a RocksDB store remembers the changelog
        # offset it holds, so a restart reads the changelog from there, not from the start
        outbox.on_sent(self.changelog_topic.get_topic_name(), self._persisted)

    def _persisted(self, tp: Any, offset: int) -> None:
        self.data.set_persisted_offset(tp, offset)

    def on_key_set(self, key: Any, value: Any) -> None:
        if self.outbox is None:
            return super().on_key_set(key, value)
        if self.outbox.undo.entries is not None:
            self._journal(key)
        partition = self._changelog_add(key, value, self.value_serializer)
        expires = self._expires
        if expires is None:
            expires = self._expiring()
        if expires:  # (Faust's ``_maybe_set_key_ttl`` returns at once otherwise)
            self._maybe_set_key_ttl(key, partition)
        self._sensor_on_set(self, key, value)

    def put(self, key: Any, value: Any) -> None:
        """``table[key] = value`` (``ManagedUserDict.__setitem__``: ``on_key_set``, then the
        store), the store's own dict written directly when it has one."""
        self.on_key_set(key, value)
        self._target()[key] = value

    def on_key_del(self, key: Any) -> None:
        if self.outbox is None:
            return super().on_key_del(key)
        if self.outbox.undo.entries is not None:
            self._journal(key)
        partition = self._changelog_add(key, None, "raw")
        self._maybe_del_key_ttl(key, partition)
        self._sensor_on_del(self, key)

    def _journal(self, key: Any) -> None:
        """Called before the store changes: inside a batch that may be undone
        (streams.isolation), remember how to put the key's value back, without a changelog
        record (the outbox takes back the one this change queues)."""
        assert self.outbox is not None and self.outbox.undo.entries is not None
        target = self._target()
        self.outbox.undo.entries.append((_restore, target, key, target.get(key, _ABSENT)))

    _store_target: Any = None
    _expires: bool | None = None
    _changelog_name: str | None = None

    def _target(self) -> Any:
        """The memory store's own dict when there is one, else the store: Mapping.get and
        the store's __getitem__ are two Python calls per table write, and a KeyError for each
        new key. Worked out at the first write: a table's store, once made, is the same
        object for the table's life (and the memory store's dict is cleared, never replaced)."""
        target = self._store_target
        if target is None:
            store = self.data
            raw = getattr(store, "data", None)
            target = self._store_target = raw if type(raw) is dict else store
        return target

    def _expiring(self) -> bool:
        """Faust's ``_should_expire_keys``, asked once: a table's window is set when the
        table is made (``tumbling``), before any write."""
        expires = self._expires
        if expires is None:
            expires = self._expires = self._should_expire_keys()
        return expires

    def _changelog_add(self, key: Any, value: Any, value_serializer: Any) -> int:
        partition = self.partition_for_key(key)
        if partition is None:  # use_partitioner tables are not ours to batch
            raise TypeError(f"table {self.name}: changelog partition unknown")
        name = self._changelog_name
        if name is None:
            name = self._changelog_name = self.changelog_topic.get_topic_name()
        key_serializer = self.key_serializer
        if _raw(key, key_serializer) and (value is None or _raw(value, value_serializer)):
            raw_key, raw_value = key, value  # what Faust's raw codec returns, without its calls
        elif _json(key, key_serializer) and (value is None or _json(value, value_serializer)):
            # the window tables: the bytes Faust's json codec gives at the end of the same
            # schema and registry calls (a changelog key must never change its bytes, or
            # compaction and tombstones would miss the records written before)
            raw_key = _json_bytes(key)
            raw_value = None if value is None else _json_bytes(value)
        else:
            topic = self.changelog_topic
            raw_key, _ = topic.prepare_key(key, self.key_serializer)
            raw_value = None
            if value is not None:
                raw_value, _ = topic.prepare_value(value, value_serializer)
        assert self.outbox is not None
        self.outbox.add(name, raw_key, raw_value, partition)
        return partition


_JSON = codecs.get_codec("json")


def _faust_orjson(obj: Any) -> bytes:
    """The orjson call Faust's json codec ends in (``faust.utils.json.dumps`` when orjson is
    installed), without the codec's three Python calls around it (a third of a ledger
    outcome's table writes, issue 29)."""
    return orjson.dumps(
        obj, default=faust_json.on_default, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z
    )


# the same bytes as Faust's codec, or Faust's codec itself (if this Faust encodes otherwise);
# tests/unit/tables/test_changelog.py compares the window records with Faust's own bytes
_SAMPLE = [("c1", (1767225600.0, 1767311999.9)), {"o1": [120, 0], "é": None}]
_json_bytes: Callable[[Any], bytes] = (
    _faust_orjson if _faust_orjson(_SAMPLE) == _JSON.dumps(_SAMPLE) else _JSON.dumps
)
_ABSENT = object()


def _restore(data: Any, key: Any, old: Any) -> None:
    if old is _ABSENT:
        if key in data:
            del data[key]
    else:
        data[key] = old


def _raw(data: Any, serializer: Any) -> bool:
    return serializer == "raw" and type(data) is bytes


def _json(data: Any, serializer: Any) -> bool:
    return serializer == "json" and type(data) is not bytes  # Faust passes bytes through
