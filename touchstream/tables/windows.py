"""One tumbling window of a Faust windowed table, read and written by key and event time.

The same keys and values as Faust's ``table.relative_to(ts)[key]`` API, without the wrapper,
window set and relative-time handler it builds on every access (about 5% of the worker in
the bench's py-spy profile, issue 10). Reads go to the table's store, as ``Table.__getitem__``
does after its sensor call and ``__missing__`` check; writes go through the table, whose
changelog and window expiry must see them.
"""

from __future__ import annotations

from typing import Any

from touchstream.tables.store import Reader, store_reader, table_writer


def window_value(wrapper: Any, key: Any, at_s: float, read: Reader | None = None) -> Any:
    """The value of ``key`` in the window containing ``at_s`` (the table's default if none);
    ``read``: the table's ``store_reader``, if the caller keeps it."""
    table = wrapper.table
    held = (read or store_reader(table))((key, table.window.current(at_s)))
    return table.default() if held is None else held


def set_window_value(wrapper: Any, key: Any, at_s: float, value: Any) -> None:
    table = wrapper.table
    table[key, table.window.current(at_s)] = value


def add_once(
    wrapper: Any,
    key: Any,
    at_s: float,
    entry_id: str,
    entry: Any,
    kept: int,
    read: Reader | None = None,
) -> None:
    """Hold ``entry`` under ``entry_id`` in the window containing ``at_s``, unless it is there
    already (a redelivered outcome or session counts once), keeping the newest ``kept``
    (``window_value`` then ``set_window_value``, the window's key worked out once)."""
    table = wrapper.table
    windowed = (key, table.window.current(at_s))
    held = (read or store_reader(table))(windowed)
    if held is None:
        held = table.default()
    if entry_id not in held:
        table_writer(table)(windowed, with_entry(held, entry_id, entry, kept))


def column_sums(held: dict[str, list[int]], width: int) -> list[int]:
    """The sum of each of the ``width`` figures of a window's entries (zeros if none)."""
    sums = [0] * width
    for entry in held.values():
        for i in range(width):
            sums[i] += entry[i]
    return sums


def with_entry(held: dict[str, Any], entry_id: str, entry: Any, kept: int) -> dict[str, Any]:
    """A new window value (never the table's own, changed in place): ``held`` plus one entry
    held by its id, keeping the newest ``kept``."""
    added = dict(held)
    added[entry_id] = entry
    return added if len(added) <= kept else dict(list(added.items())[-kept:])
