"""A Redis outage longer than the sync's cap: the profiles waiting for Redis never exceed
``TOUCHSTREAM_REDIS_MAX_PENDING``, the overflow is counted, and once Redis answers again it
converges to the oracle (the workers re-sync from their tables). The full-size measurement, a
million events with the worker's peak memory, is ``bench/redis_outage.py``."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from tests.chaos.harness import (
    LONG,
    Tally,
    metric,
    records_for,
    send_chunks,
    settle_and_compare,
    wait_applied,
)
from touchstream.config.rules import load_rules
from touchstream.runtime.embedded import start_redis
from touchstream.runtime.stack import Stack, WorkerProcess
from touchstream.simulator.traffic import Traffic

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
EVENTS = 20_000 if LONG else 6_000
CUSTOMERS = 2_000 if LONG else 800
CAP = 100
RULES = load_rules(None)


class PendingWatch:
    """The highest ``touchstream_redis_sync_pending`` each worker reports, polled."""

    def __init__(self, workers: list[WorkerProcess]) -> None:
        self.workers = workers
        self.highest = 0.0
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for worker in self.workers:
                try:
                    pending = worker.metrics().get("touchstream_redis_sync_pending", 0.0)
                except OSError:
                    continue
                self.highest = max(self.highest, pending)
                self.polls += 1
            time.sleep(0.1)

    def __enter__(self) -> PendingWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_redis_outage_beyond_the_cap_stays_bounded_and_converges(stack: Stack) -> None:
    started = time.monotonic()
    own = start_redis(log_path=stack.workdir / "own-redis.log")
    stack.redis = own
    stack.redis_db = 0
    frozen = False
    try:
        workers = [
            stack.start_worker(name=name, redis_max_pending=str(CAP)) for name in ("w1", "w2")
        ]
        for worker in workers:
            worker.wait_ready()
        records = records_for(Traffic(customers=CUSTOMERS, seed=27), EVENTS, 100)

        with PendingWatch(workers) as watch:

            def between(i: int) -> None:
                nonlocal frozen
                if i == 0:
                    wait_applied(workers, 200)
                    # frozen, not stopped: Redis keeps its data and the workers' re-sync
                    # markers, so only the cap can ask for the re-sync
                    os.kill(own.child.proc.pid, signal.SIGSTOP)
                    frozen = True
                elif i == 2:
                    wait_applied(workers, EVENTS * 0.6, timeout_s=180)  # 3 of 4 parts sent
                    os.kill(own.child.proc.pid, signal.SIGCONT)
                    frozen = False

            send_chunks(stack, records, 4, between)
            tally = Tally(f"Redis frozen beyond a cap of {CAP} profiles")
            settle_and_compare(stack, RULES, tally, workers, len(records), started)

        overflows = metric(workers, "touchstream_redis_sync_overflows_total")
        assert overflows >= 1, "the outage never reached the cap"
        assert watch.polls > 0
        assert watch.highest <= CAP, f"{watch.highest:.0f} profiles waited, the cap is {CAP}"
        assert all(w.child.alive() for w in workers), "a worker died with Redis"
    finally:
        if frozen:
            os.kill(own.child.proc.pid, signal.SIGCONT)
        stack.redis.stop()
