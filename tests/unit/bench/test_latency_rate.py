"""``--latency-rate``: the latency phase at a load the user names, so that two runs (two
trees, two settings) are compared at the same offered rate, not each at half its own."""

from __future__ import annotations

import pytest

from touchstream.bench import runner
from touchstream.bench.report import BenchResult
from touchstream.bench.runner import latency_rate_for
from touchstream.runtime.cli import main


def test_the_latency_phase_offers_half_the_settled_rate_unless_a_rate_is_given() -> None:
    assert latency_rate_for(None, 3_000.0) == 1_500.0
    assert latency_rate_for(1_200.0, 3_000.0) == 1_200.0


@pytest.mark.parametrize("option", ["--latency-rate", "--latency-seconds"])
@pytest.mark.parametrize("bad", ["0", "-5", "nan", "inf"])
def test_a_latency_option_that_is_not_a_finite_positive_number_stops_the_bench_naming_it(
    option: str, bad: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a regression must fail here, not start a broker and a whole bench
    monkeypatch.setattr(runner.brokers, "start", lambda *a, **k: pytest.fail("bench started"))
    assert main(["bench", option, bad]) == 2
    assert option in capsys.readouterr().err


def test_the_report_says_which_rate_the_latency_was_measured_at() -> None:
    half = BenchResult(events=1, customers=1, started_at="t", latency_rate_eps=1_500.0)
    fixed = BenchResult(
        events=1, customers=1, started_at="t", latency_rate_eps=1_200.0, latency_rate_fixed=True
    )
    assert "at 1,500 ev/s (half of c settled)" in half.text()
    assert "at 1,200 ev/s (fixed by --latency-rate)" in fixed.text()
    assert fixed.as_dict()["latency_rate_fixed"] is True
    assert half.as_dict()["latency_rate_fixed"] is False
