"""Reading a Faust table's store directly, for the hot paths of the customer stage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def store_reader(table: Any) -> Callable[[Any], Any]:
    """``table.get`` without Faust's per-access wrappers (``ManagedUserDict`` calls a sensor
    and a ``__missing__`` check on every read): the store's own lookup. A plain mapping (unit
    tests) is read as it is."""
    store = getattr(table, "data", None)
    if store is None:
        return table.get
    inner = getattr(store, "data", None)  # the memory store keeps a dict
    return inner.get if type(inner) is dict else store.get
