"""One tumbling window of a Faust windowed table, read and written by key and event time.

The same keys and values as Faust's ``table.relative_to(ts)[key]`` API, without the wrapper,
window set and relative-time handler it builds on every access (about 5% of the worker in
the bench's py-spy profile, issue 10).
"""

from __future__ import annotations

from typing import Any


def window_value(wrapper: Any, key: Any, at_s: float) -> Any:
    """The value of ``key`` in the window containing ``at_s`` (the table's default if none)."""
    table = wrapper.table
    return table[key, table.window.current(at_s)]


def set_window_value(wrapper: Any, key: Any, at_s: float, value: Any) -> None:
    table = wrapper.table
    table[key, table.window.current(at_s)] = value
