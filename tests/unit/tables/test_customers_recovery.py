"""Recovery of the customers table from its changelog: a state older than the one already held
is a late write (a worker whose group session expired while the broker was away still
delivers its last batch) and is left out, so an absorbed profile never comes back live."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import faust

from touchstream import metrics
from touchstream.domain.records import Redirect
from touchstream.tables import state_codec
from touchstream.tables.customers import customers_table, decode_state, newest_versions

KEY = b"ts-absorbed"


def live(version: int, opens: int) -> bytes:
    state = {"customer_id": "ts-absorbed", "version": version, "events": {"email_open": opens}}
    return state_codec.encode(state)


def absorbed(version: int) -> bytes:
    marker = Redirect(
        customer_id="ts-absorbed", into="ts-survivor", rank=(1, 0, ""), version=version
    )
    return state_codec.encode(marker)


def record(value: bytes | None, offset: int, key: bytes = KEY) -> Any:
    """What Faust's recovery hands a table: the event and its changelog message."""
    message = SimpleNamespace(key=key, value=value, partition=0, offset=offset, tp=("cl", 0))
    return SimpleNamespace(key=key, value=value, message=message)


def stale_count() -> float:
    return metrics.CHANGELOG_STALE._value.get()


def test_a_late_write_older_than_the_redirect_before_it_is_left_out() -> None:
    batch = [record(live(2, 2), 200), record(absorbed(3), 1074), record(live(1, 1), 1724)]
    before = stale_count()
    kept = newest_versions(batch, {}.get)
    assert [r.message.offset for r in kept] == [200, 1074]
    assert stale_count() == before + 1


def test_a_late_write_older_than_the_value_held_is_left_out() -> None:
    kept = newest_versions([record(live(1, 1), 1724)], {KEY: absorbed(3)}.get)
    assert kept == []


def test_newer_and_equal_versions_are_applied_in_order() -> None:
    # a link's reservation made and released keeps the version: the later record wins
    batch = [record(live(4, 1), 1), record(live(4, 2), 2), record(live(5, 2), 3)]
    assert [r.message.offset for r in newest_versions(batch, {KEY: live(3, 1)}.get)] == [1, 2, 3]


def test_a_deletion_is_applied_and_a_profile_started_after_it_is_not_compared_with_the_old() -> (
    None
):
    # an anonymous profile dropped, then the same device seen again: a new profile, version 0
    batch = [record(None, 5), record(live(0, 1), 6)]
    assert [r.message.offset for r in newest_versions(batch, {KEY: live(9, 9)}.get)] == [5, 6]


def test_a_value_no_codec_reads_is_applied_as_it_is() -> None:
    batch = [record(b"\x7f garbage", 1)]
    assert newest_versions(batch, {KEY: live(3, 1)}.get) == batch


def test_the_table_recovers_the_redirect_not_the_late_live_state(table_app: faust.App) -> None:
    table = customers_table(table_app, partitions=1)
    other = record(live(7, 3), 3, key=b"ts-other")
    table.apply_changelog_batch([record(live(2, 2), 200), record(absorbed(3), 1074), other])
    table.apply_changelog_batch([record(live(1, 1), 1724)])  # the late write, a batch later
    assert decode_state(table.data[KEY]) == decode_state(absorbed(3))
    assert decode_state(table.data[b"ts-other"])["version"] == 7
