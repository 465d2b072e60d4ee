"""Writes ``table.bin`` and ``expected.json`` of state format 1 (run once, with the code of
that format: commit 25e3abb): ``python -m tests.unit.tables.state_v1.make_fixture``.

``table.bin``: the customers table after ``journey.before()``, each value exactly as the
changelog carried it (``state_codec.encode``), as orjson {key: base64 value}.
``expected.json``: what format 1 served for each profile, and the decisions and profiles
after ``journey.after()``. The migration test reads both with the current code.
"""

from __future__ import annotations

import base64
from pathlib import Path

import orjson

from tests.unit.tables.state_v1 import journey
from touchstream.domain.profile import view
from touchstream.offline import OfflineStage
from touchstream.tables import state_codec

HERE = Path(__file__).parent


def main() -> None:
    stage = OfflineStage(journey.RULES)
    for e in journey.numbered(journey.before(), start=0):
        stage.submit([e])
        stage.drain()
    table = {cid: state_codec.encode(s) for cid, s in stage.table.items()}
    (HERE / "table.bin").write_bytes(
        orjson.dumps(
            {k: base64.b64encode(v).decode() for k, v in table.items()},
            option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2,
        )
    )
    profiles = {cid: view(s, journey.RULES) for cid, s in stage.table.items()}
    replayed = journey.stage_with({k: state_codec.decode(v) for k, v in table.items()})
    journey.replay_after(replayed)
    expected = {
        "profiles": profiles,
        "decisions": [[d.kind, d.payload] for d in replayed.decisions],
        "profiles_after": {cid: view(s, journey.RULES) for cid, s in replayed.table.items()},
    }
    (HERE / "expected.json").write_bytes(
        orjson.dumps(expected, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    )


if __name__ == "__main__":
    main()
