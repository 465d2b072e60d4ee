"""RocksDB store, kill -9 with failover: the killed worker's partitions move to the other one,
and when it comes back on its own data directory, what its local RocksDB files hold is never
ahead of the changelog (runtime/worker.py ``discard_unclean_state``). Held to the oracle."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.chaos.harness import (
    LONG,
    Tally,
    records_for,
    send_chunks,
    settle_and_compare,
    wait_applied,
)
from touchstream.config.rules import load_rules
from touchstream.runtime.stack import Stack
from touchstream.simulator.traffic import Traffic

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
EVENTS = 12_000 if LONG else 4_000
CUSTOMERS = 600 if LONG else 200
RULES = load_rules(None)


def test_rocksdb_kill_9_fails_over_and_the_killed_worker_comes_back_on_its_disk(
    stack: Stack,
) -> None:
    started = time.monotonic()
    workers = [stack.start_worker(name=name, store="rocksdb") for name in ("w1", "w2")]
    for worker in workers:
        worker.wait_ready()
    records = records_for(Traffic(customers=CUSTOMERS, seed=33), EVENTS, 100)
    killed = workers[0]

    def between(i: int) -> None:
        if i == 0:
            wait_applied(workers, EVENTS // 8)
            killed.child.kill()  # kill -9 mid-stream: w2 takes its partitions over
            assert list(Path(killed.data_dir).rglob("CURRENT")), "no RocksDB files left"
        elif i == 1:
            wait_applied(workers[1:], EVENTS // 4, timeout_s=120)
            back = stack.start_worker(name="w1", store="rocksdb")  # its own data directory
            back.wait_ready()
            workers[0] = back

    send_chunks(stack, records, 3, between)
    tally = Tally("RocksDB kill -9, failover, back on its disk")
    settle_and_compare(stack, RULES, tally, workers, len(records), started)
    assert all(w.child.alive() for w in workers), "a worker died"
    log = (stack.workdir / "w1.log").read_text(errors="replace")
    assert "unclean shutdown found" in log, "the restarted worker read its local tables as is"
