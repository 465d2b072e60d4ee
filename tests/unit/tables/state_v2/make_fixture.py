"""Writes ``table.bin`` and ``expected.json`` of state format 2 (run once, with the code of
that format, the flat dict stored with codec byte 0x01: the commit that added this fixture):
``python -m tests.unit.tables.state_v2.make_fixture``.

``table.bin``: the customers table after ``journey.before()``, each value exactly as the
changelog carried it (``state_codec.encode``), as orjson {key: base64 value}.
``expected.json``: what format 2 served for each profile, and the decisions and profiles
after ``journey.after()``. ``tests/unit/tables/test_state_v2.py`` reads both with the current
code: the typed-state rewrite (docs/design/typed-state.md) must keep reading this table.
"""

from __future__ import annotations

from pathlib import Path

from tests.unit.tables import state_fixture
from tests.unit.tables.state_v2 import journey

HERE = Path(__file__).parent


def main() -> None:
    state_fixture.write(HERE, journey, journey.written().table)


if __name__ == "__main__":
    main()
