"""Faust tables in memory whose changelog records the outbox collects (nothing is sent)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import faust
import pytest

from touchstream.streams.delivery import partition_event
from touchstream.streams.outbox import Outbox
from touchstream.tables.changelog import OutboxTable


class Message(NamedTuple):  # what Faust reads of the current event's record here
    topic: str
    partition: int


@pytest.fixture
def table_app() -> faust.App:
    return faust.App(
        "tables-test", broker="kafka://127.0.0.1:9", store="memory://", Table=OutboxTable
    )


@pytest.fixture
def outbox(table_app: faust.App) -> Iterator[Outbox]:
    """Every table of ``table_app`` made so far writes its changelog here, inside a record of
    partition 0 (create the tables before asking for this fixture)."""
    collected = Outbox(table_app)
    for table in table_app.tables.values():
        table.use_outbox(collected)
    with partition_event(Message("customer-events", 0)):
        yield collected
