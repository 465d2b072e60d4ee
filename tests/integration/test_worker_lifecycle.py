"""Start-up refuses bad settings naming the key; health and readiness tell the truth."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from touchstream.runtime.processes import free_port
from touchstream.runtime.stack import Stack, worker_env

pytestmark = pytest.mark.integration


def run_worker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "touchstream", "worker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def unreachable_env(tmp_path: Path) -> dict[str, str]:
    """A worker's environment naming a broker and a Redis that nobody serves."""
    return worker_env(
        "kafka://127.0.0.1:9",
        "redis://127.0.0.1:9/0",
        free_port(),
        str(tmp_path),
        embedded_broker=False,
    )


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("PARTITIONS", "eight"),
        ("BROKER", "localhost"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("LOG_LEVEL", "chatty"),
        ("STORE", "floppy"),
    ],
)
def test_a_malformed_setting_stops_the_worker_naming_it(tmp_path, setting: str, value: str) -> None:
    env = unreachable_env(tmp_path)
    env[f"TOUCHSTREAM_{setting}"] = value
    result = run_worker(env)
    assert result.returncode != 0
    assert f"TOUCHSTREAM_{setting}" in result.stderr
    assert "Traceback" not in result.stderr


def test_production_refuses_to_start_without_an_hmac_secret(tmp_path) -> None:
    env = unreachable_env(tmp_path)
    env["TOUCHSTREAM_ENV"] = "production"
    env.pop("TOUCHSTREAM_HMAC_SECRET", None)
    result = run_worker(env)
    assert result.returncode != 0
    assert "TOUCHSTREAM_HMAC_SECRET" in result.stderr


def test_a_bad_rules_file_stops_the_worker_naming_the_rule(tmp_path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("[carts]\nreminder_delays_minutes = [60, 30]\n")
    env = unreachable_env(tmp_path)
    result = run_worker(env, "--rules", str(rules))
    assert result.returncode != 0
    assert "rules.carts.reminder_delays_minutes" in result.stderr


def test_readiness_reports_an_unreachable_redis_while_health_stays_alive(stack: Stack) -> None:
    worker = stack.start_worker(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    worker.wait_for("/healthz")
    status, body = worker.get("/readyz")
    assert status == 503
    assert orjson.loads(body)["checks"]["redis"] is False


def test_ready_worker_answers_health_readiness_and_metrics(stack: Stack) -> None:
    worker = stack.start_worker()
    worker.wait_ready()
    assert worker.get("/healthz")[0] == 200
    status, body = worker.get("/readyz")
    assert status == 200 and orjson.loads(body)["checks"] == {
        "partitions_recovered": True,
        "output_delivered": True,
        "redis": True,
        "kafka_access": True,
        "no_partition_halted": True,
        "customer_api": True,
    }
    status, body = worker.get("/metrics")
    assert status == 200 and b"touchstream_events_in_total" in body


def test_a_recovery_that_times_out_stops_the_worker_for_its_supervisor_to_restart(
    stack: Stack,
) -> None:
    """Faust's recovery gives up on a broker step that outlasts ``broker_request_timeout`` and
    then never recovers an assignment again: left running, the worker would answer not ready
    for ever. It exits non-zero instead, saying why (streams/recovery.py); a restarted worker
    recovers and gets ready."""
    worker = stack.start_worker(
        faults="seek:1",  # the first generation's seek never ends: a broker that went silent
        broker_request_timeout_s="8",
    )
    deadline = time.monotonic() + 60
    while worker.child.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not worker.child.alive(), "the worker stayed up after its recovery gave up"
    assert worker.child.proc.returncode != 0
    log = worker.child.tail(400)
    assert "seek never ends" in log  # the fault was met, not some other failure
    assert "table recovery waited 8.0 s" in log and "RecoveryTimedOut" in log

    restarted = stack.start_worker(broker_request_timeout_s="8")
    restarted.wait_ready()
    assert restarted.get("/readyz")[0] == 200
