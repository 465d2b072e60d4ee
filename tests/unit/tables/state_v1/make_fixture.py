"""Writes ``table.bin`` and ``expected.json`` of state format 1 (run once, with the code of
that format: commit 25e3abb): ``python -m tests.unit.tables.state_v1.make_fixture``.

``table.bin``: the customers table after ``journey.before()``, each value exactly as the
changelog carried it (``state_codec.encode``), as orjson {key: base64 value}.
``expected.json``: what format 1 served for each profile, and the decisions and profiles
after ``journey.after()``. The migration test reads both with the current code.
"""

from __future__ import annotations

from pathlib import Path

from tests.unit.tables import state_fixture
from tests.unit.tables.state_v1 import journey
from touchstream.offline import OfflineStage

HERE = Path(__file__).parent


def main() -> None:
    stage = OfflineStage(journey.RULES)
    for e in journey.numbered(journey.before(), start=0):
        stage.submit([e])
        stage.drain()
    state_fixture.write(HERE, journey, stage.table)


if __name__ == "__main__":
    main()
