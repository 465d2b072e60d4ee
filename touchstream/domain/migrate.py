"""The customer state's format version, and the one function that brings an older one up.

Every stored live profile carries ``fmt``; a state without it was written before formats were
numbered (format 1). ``migrate`` runs on every state read from the table (``tables.customers``)
and is a no-op on the current format. To change the format: bump ``FORMAT``, add a
``_to_<n>`` step below that turns format n-1 into n, and add a fixture of the old format to
the migration test (``tests/unit/tables/test_state_migration.py``). Redirects and erasure
markers (no ledger) carry no format and need none: they are read as their records
(``domain.records.Redirect``, ``Erased``), told apart by their keys (``into``, ``erased_at``).
"""

from __future__ import annotations

from collections.abc import Callable

from touchstream.domain.records import marker_of
from touchstream.domain.state import State, Stored

FORMAT = 2


def _to_2(state: State) -> None:
    """Format 2 (bounded state, issue 27): ``past`` aggregates of folded orders, ``ids`` of
    folded orders and returns, and each redemption id with its event time (format 1 kept the
    points only: the profile's clock stands in, so the id lives a full ``ID_SPAN`` on)."""
    state["past"] = None
    state["ids"] = None
    at = int(state["last_event_at"] or 0)
    state["redemptions"] = {
        rid: v if isinstance(v, list) else [v, at] for rid, v in state["redemptions"].items()
    }


STEPS: dict[int, Callable[[State], None]] = {2: _to_2}


def version(state: State) -> int:
    return int(state.get("fmt", 1))


def read(state: State) -> Stored:
    """A customers-table value just decoded (``tables.customers.decode_state``): a redirect or
    an erasure marker as its record, a live profile in the current format (``migrate``)."""
    if "orders" not in state:  # a redirect or an erasure marker
        return marker_of(state) or state
    return migrate(state)


def migrate(state: State) -> State:
    """``state`` in the current format (changed in place: it was just decoded)."""
    if "orders" not in state:  # a redirect or an erasure marker (``read`` makes it a record)
        return state
    fmt = state.get("fmt", 1)
    if fmt == FORMAT:
        return state
    if fmt > FORMAT:
        from touchstream.errors import TouchstreamError

        raise TouchstreamError(
            f"customer state of format {fmt}: written by a newer Touchstream (this one reads "
            f"up to {FORMAT})"
        )
    for n in range(fmt + 1, FORMAT + 1):
        STEPS[n](state)
        state["fmt"] = n
    return state
