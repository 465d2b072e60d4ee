"""The core's outputs equal its golden outputs: the safety net of issue 29's rewrite.

Each data set (tests/golden/datasets.py: the bench data, the chaos data, the hostile
sequences) is replayed through the core at fixed times and compared, field by field under
the documented projection (tests/golden/projection.py, docs/testing.md), with the outputs the
core gave before the rewrite (tests/golden/*.json.gz): each customer's served profile,
redirect or erased marker, and every record its decisions publish (loyalty outcomes,
triggers and their audit under their trigger ids, merges, refusals, sessions, receipts,
exports), with what goes to the DLQ. A failure names the first differing customer and field.
"""

from __future__ import annotations

import pytest

from tests.golden import regenerate
from tests.golden.datasets import DATASETS
from tests.golden.projection import _short, differences
from tests.golden.regenerate import load, normalised

LIMIT = 12  # differences shown


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_the_core_gives_its_golden_outputs(name: str) -> None:
    golden = load(name)
    now = normalised(DATASETS[name]())
    assert now["inputs_sha256"] == golden["inputs_sha256"], (
        f"the {name} data set's inputs changed (the generator, not the core): the golden "
        "outputs no longer describe them; see docs/testing.md before regenerating"
    )
    problems = differences(golden, now, LIMIT)
    if problems:
        pytest.fail(
            f"the core's outputs over the {name} data set differ from its golden outputs "
            "(docs/testing.md; paths: /profiles[_when_traffic_stops]/<customer id>/<field>, "
            "/outputs/<topic>/<record key>[n]/<field>, /sequences/<sequence>/...); "
            f"the first {len(problems)}:\n  " + "\n  ".join(problems),
            pytrace=False,
        )


def test_a_changed_field_is_reported_by_customer_and_field() -> None:
    golden = load("adversarial")
    now = normalised(golden)
    sequence = now["sequences"]["redirect_chain"]
    customer = next(c for c, p in sorted(sequence["profiles"].items()) if "points" in p)
    sequence["profiles"][customer]["points"] += 1
    del sequence["outputs"]["loyalty.outcomes"][customer][-1]
    assert differences(golden, now) == [
        f"/sequences/redirect_chain/profiles/{customer}/points: golden "
        f"{golden['sequences']['redirect_chain']['profiles'][customer]['points']}, "
        f"now {sequence['profiles'][customer]['points']}",
        f"/sequences/redirect_chain/outputs/loyalty.outcomes/{customer}: golden has "
        f"{len(sequence['outputs']['loyalty.outcomes'][customer]) + 1} entries, now "
        f"{len(sequence['outputs']['loyalty.outcomes'][customer])} (first unmatched: "
        f"{_short(golden['sequences']['redirect_chain']['outputs']['loyalty.outcomes'][customer][-1])})",
    ]


def test_regenerating_never_overwrites_without_write(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(regenerate, "HERE", tmp_path)
    assert regenerate.main(["adversarial"]) == 1  # no golden file yet: nothing written
    assert list(tmp_path.iterdir()) == []
    assert regenerate.main(["--write", "adversarial"]) == 0
    other = {"inputs_sha256": "x", "sequences": {}}
    regenerate.write("adversarial", other)
    assert regenerate.main(["adversarial"]) == 1
    assert regenerate.load("adversarial") == other  # left as it was
    assert "adversarial: differs from its golden file" in capsys.readouterr().out
