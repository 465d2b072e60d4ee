"""Reading a Faust table's store directly, for the hot paths of the customer stage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Reader = Callable[[Any], Any]


def store_reader(table: Any) -> Reader:
    """``table.get`` without Faust's per-access wrappers (``ManagedUserDict`` calls a sensor
    and a ``__missing__`` check on every read): the store's own lookup. A plain mapping (unit
    tests) is read as it is."""
    store = getattr(table, "data", None)
    if store is None:
        return table.get
    inner = getattr(store, "data", None)  # the memory store keeps a dict
    return inner.get if type(inner) is dict else store.get


def table_writer(table: Any) -> Callable[[Any, Any], None]:
    """``table[key] = value``: an ``OutboxTable``'s ``put`` (the same, with fewer calls), or
    the mapping's own ``__setitem__`` (unit tests)."""
    put = getattr(table, "put", None)
    return put if put is not None else table.__setitem__


class Readers:
    """Each table's ``store_reader``, made at its first read and kept: a table's store, once
    Faust has made it, stays the same object for the table's life (the memory store's dict
    too: it is cleared, never replaced)."""

    __slots__ = ("_readers",)

    def __init__(self) -> None:
        self._readers: dict[int, Reader] = {}  # by id(): the owner keeps the tables alive

    def __call__(self, table: Any) -> Reader:
        read = self._readers.get(id(table))
        if read is None:
            read = self._readers[id(table)] = store_reader(table)
        return read
