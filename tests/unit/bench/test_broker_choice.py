"""``--broker kafka|embedded``: the bench measures Apache Kafka unless told otherwise, the demo
runs on the zero-install embedded broker unless told otherwise, and both say which one ran."""

from __future__ import annotations

import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from touchstream.bench import runner
from touchstream.bench.report import BenchResult
from touchstream.bench.runner import bench_worker_env
from touchstream.runtime import demo
from touchstream.runtime.apache_kafka import INSTALL_HINT
from touchstream.runtime.cli import build_parser, main


def test_the_bench_runs_on_apache_kafka_and_the_demo_on_the_embedded_broker_by_default() -> None:
    parser = build_parser()
    assert parser.parse_args(["bench"]).broker == "kafka"
    assert parser.parse_args(["demo"]).broker == "embedded"
    assert parser.parse_args(["bench", "--broker", "embedded"]).broker == "embedded"
    assert parser.parse_args(["demo", "--broker", "kafka"]).broker == "kafka"


@pytest.mark.parametrize("command", ["bench", "demo"])
def test_an_unknown_broker_is_refused_naming_the_choices(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([command, "--broker", "redpanda"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "'redpanda'" in err and "'kafka'" in err and "'embedded'" in err


@pytest.fixture
def no_jdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without Java: JAVA_HOME names a JDK that is not there, and the jar cache is
    empty, so neither a cached download nor a java on PATH can start Kafka."""
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    monkeypatch.setenv("TOUCHSTREAM_KAFKA_CACHE", str(tmp_path / "kafka-cache"))


@pytest.fixture
def sigterm_restored() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_the_bench_without_a_jdk_names_the_install_command_and_the_embedded_broker(
    no_jdk: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "start_redis", lambda *a, **k: pytest.fail("Redis started"))
    assert main(["bench", "--events", "10", "--customers", "2"]) == 1
    err = capsys.readouterr().err
    assert INSTALL_HINT in err
    assert "touchstream bench --broker embedded" in err
    assert "Traceback" not in err


def test_the_demo_on_kafka_without_a_jdk_names_the_install_command_and_the_default(
    no_jdk: None,
    sigterm_restored: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(demo.Stack, "start_worker", lambda *a, **k: pytest.fail("started"))
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    assert main(["demo", "--broker", "kafka", "--duration", "1"]) == 1
    err = capsys.readouterr().err
    assert INSTALL_HINT in err
    assert "touchstream demo --broker embedded" in err
    assert list(temp.iterdir()) == []  # no demo directory left behind for nothing


def test_the_report_and_the_json_name_the_broker_and_its_version() -> None:
    kafka = BenchResult(
        events=1, customers=1, started_at="t", broker="kafka", broker_version="3.9.1"
    )
    tansu = BenchResult(
        events=1, customers=1, started_at="t", broker="embedded", broker_version="0.6.0"
    )
    assert "broker:  Apache Kafka 3.9.1" in kafka.text()
    assert "broker:  embedded Tansu 0.6.0" in tansu.text()
    assert kafka.as_dict()["broker"] == "kafka"
    assert kafka.as_dict()["broker_version"] == "3.9.1"
    assert tansu.as_dict()["broker"] == "embedded"


def test_tansus_end_offset_probe_is_set_for_the_measured_worker_on_tansu_only() -> None:
    # on Apache Kafka the worker measured must be configured as in production
    args = ("kafka://127.0.0.1:9092", "redis://127.0.0.1:6379/0", 8000, "/tmp/data")
    on_kafka = bench_worker_env("kafka", *args)
    on_tansu = bench_worker_env("embedded", *args)
    assert "TOUCHSTREAM_PROBE_END_OFFSETS" not in on_kafka
    assert on_tansu["TOUCHSTREAM_PROBE_END_OFFSETS"] == "true"
    assert on_kafka["TOUCHSTREAM_BROKER"] == "kafka://127.0.0.1:9092"
    assert on_kafka["TOUCHSTREAM_PARTITIONS"] == on_tansu["TOUCHSTREAM_PARTITIONS"] == "8"
