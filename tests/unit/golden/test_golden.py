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

from tests.golden.datasets import DATASETS
from tests.golden.projection import differences
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
            "(docs/testing.md; paths: /profiles/<customer id>/<field>, "
            "/outputs/<topic>/<record key>[n]/<field>, /sequences/<sequence>/...); "
            f"the first {len(problems)}:\n  " + "\n  ".join(problems),
            pytrace=False,
        )
