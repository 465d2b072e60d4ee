"""Every setting is documented, with the default the worker really uses.

An operator reads a default in the README's configuration table (or a table of docs/) and
plans around it; a table that says 5 where the worker uses 15 is a wrong plan.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from touchstream.config.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
DOCUMENTED = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
VARIABLE = re.compile(r"`(TOUCHSTREAM_[A-Z0-9_]+|_[A-Z0-9_]+)`")
SETTINGS = {f"TOUCHSTREAM_{f.name.upper()}": f.name for f in fields(Settings)}


def shown(value: object) -> str:
    """A default as the tables write it: `false`, `5`, `0.5`, `var/touchstream`."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def expand(names: list[str]) -> list[str]:
    """`TOUCHSTREAM_WEB_HOST` / `_WEB_PORT` -> both full names: a short name replaces the
    trailing words of the first one, as many as make a known setting."""
    first, out = names[0], [names[0]]
    words = first.split("_")
    for short in names[1:]:
        candidates = ["_".join(words[:-k]) + short for k in range(1, len(words))]
        out.append(next((c for c in candidates if c in SETTINGS), candidates[0]))
    return out


def table_defaults(doc: Path) -> list[tuple[str, str, str]]:
    """(variable, default shown, where) of every row of a table whose second column is
    `default` and whose first names settings."""
    rows = []
    in_table = False
    for n, line in enumerate(doc.read_text().splitlines(), 1):
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 2 and cells[1] == "default":
            in_table = True
            continue
        names = VARIABLE.findall(cells[0])
        if not in_table or not names or not names[0].startswith("TOUCHSTREAM_"):
            continue
        values = re.findall(r"`([^`]*)`", cells[1].split("(dev:")[0].split("(image:")[0])
        for i, name in enumerate(expand(names)):
            rows.append((name, values[i] if i < len(values) else "", f"{doc.name}:{n}"))
    return rows


def test_the_tables_find_the_settings() -> None:
    # guards the test itself: a parser that finds no row would let every default pass
    found = {name for name, _, _ in table_defaults(ROOT / "README.md")}
    assert {"TOUCHSTREAM_WEB_PORT", "TOUCHSTREAM_API_RATE_BURST", "TOUCHSTREAM_STORE"} <= found


def test_every_setting_has_a_row_in_the_readme_configuration_table() -> None:
    found = {name for name, _, _ in table_defaults(ROOT / "README.md")}
    assert sorted(set(SETTINGS) - found) == []


def test_every_documented_default_is_the_settings_default() -> None:
    defaults = Settings()
    wrong = []
    for doc in DOCUMENTED:
        for name, value, where in table_defaults(doc):
            if name not in SETTINGS:
                wrong.append(f"{where}: {name} is no setting")
            elif value != shown(getattr(defaults, SETTINGS[name])):
                want = shown(getattr(defaults, SETTINGS[name]))
                wrong.append(f"{where}: {name} says {value!r}, the worker uses {want!r}")
    assert wrong == []
