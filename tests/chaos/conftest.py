"""Prints the reliability table: one line per scenario run (see harness.py)."""

from __future__ import annotations

from typing import Any

from tests.chaos.harness import LONG, TALLIES

COLUMNS = (
    ("scenario", "scenario", 44),
    ("events in", "events_in", 10),
    ("distinct", "distinct_valid", 9),
    ("applied", "applied", 8),
    ("dup skipped", "duplicates_skipped", 11),
    ("DLQ", "dead_lettered", 5),
    ("customers", "customers", 9),
    ("differing", "differing", 9),
    ("triggers", "triggers", 8),
    ("missing", "triggers_missing", 7),
    ("other id", "triggers_other_id", 8),
    ("verdict", "verdict_differs", 7),
    ("linked late", "linked_late", 11),
    ("wall s", "wall_s", 7),
)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLIES:
        return
    write = terminalreporter.write_line
    terminalreporter.section(f"reliability scenarios ({'long' if LONG else 'short'} form)")
    write(
        "  ".join(
            title.rjust(width) if i else title.ljust(width)
            for i, (title, _, width) in enumerate(COLUMNS)
        )
    )
    for tally in TALLIES:
        cells = []
        for i, (_, name, width) in enumerate(COLUMNS):
            value = getattr(tally, name)
            text = (
                f"{value:,.1f}"
                if isinstance(value, float)
                else (f"{value:,}" if isinstance(value, int) else str(value))
            )
            cells.append(text.rjust(width) if i else text.ljust(width))
        write("  ".join(cells))
