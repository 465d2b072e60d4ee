"""What the stored-format fixtures (``state_v1/``, ``state_v2/``) share: each holds a customers
table as a worker of that format wrote it (``table.bin``) and what that worker served and did
next (``expected.json``); its ``make_fixture.py`` writes both once, with the code of that
format, and its test reads them with the current code.

A fixture module (``journey``) provides ``RULES``, ``stage_with(table)`` (an offline stage
holding a table, its timers indexed as a worker's recovery does) and ``replay_after(stage)``
(what happens next)."""

from __future__ import annotations

import base64
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

from touchstream.domain.profile import view
from touchstream.domain.timers import next_due
from touchstream.offline import OfflineStage, partition_of
from touchstream.tables import state_codec

OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2


def stage_holding(
    table: dict[str, dict[str, Any]], rules: Any, partitions: int | None = None
) -> OfflineStage:
    """An offline stage holding ``table``, its timers indexed as a worker's recovery does
    (``partitions``: the stage's default unless given)."""
    stage = (
        OfflineStage(rules) if partitions is None else OfflineStage(rules, partitions=partitions)
    )
    stage.table.update(table)
    for cid, state in table.items():
        due = next_due(state, rules)
        if due is not None:
            stage._timers.track(partition_of(cid, stage.partitions), due, cid)
    return stage


def write(here: Path, journey: ModuleType, written: dict[str, dict[str, Any]]) -> None:
    """``table.bin`` and ``expected.json`` of the table ``written`` (states as the stage holds
    them): each value exactly as the changelog carries it (``state_codec.encode``), as orjson
    {key: base64 value}; the profiles served, then the decisions and profiles after
    ``journey.replay_after`` on a stage recovered from the stored values."""
    rules = journey.RULES
    table = {cid: state_codec.encode(s) for cid, s in written.items()}
    (here / "table.bin").write_bytes(
        orjson.dumps({k: base64.b64encode(v).decode() for k, v in table.items()}, option=OPTIONS)
    )
    replayed = journey.stage_with({k: state_codec.decode(v) for k, v in table.items()})
    journey.replay_after(replayed)
    expected = {
        "profiles": {cid: view(s, rules) for cid, s in written.items()},
        "decisions": [[d.kind, d.payload] for d in replayed.decisions],
        "profiles_after": {cid: view(s, rules) for cid, s in replayed.table.items()},
    }
    (here / "expected.json").write_bytes(orjson.dumps(expected, option=OPTIONS))


def stored_table(here: Path) -> dict[str, bytes]:
    stored = orjson.loads((here / "table.bin").read_bytes())
    return {k: base64.b64decode(v) for k, v in stored.items()}


def expected(here: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads((here / "expected.json").read_bytes())
    return loaded


def normal(value: Any) -> Any:
    """``value`` as ``expected.json`` holds it (JSON types, keys sorted)."""
    return orjson.loads(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


def served_after(journey: ModuleType, table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The decisions and profiles after ``journey.replay_after`` on a stage holding ``table``,
    as ``expected.json`` holds them."""
    stage = journey.stage_with(table)
    journey.replay_after(stage)
    return {
        "decisions": normal([[d.kind, d.payload] for d in stage.decisions]),
        "profiles_after": normal({cid: view(s, journey.RULES) for cid, s in stage.table.items()}),
    }
