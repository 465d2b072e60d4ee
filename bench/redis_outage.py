"""A worker's memory through a long Redis outage, and Redis converging afterwards:
``python bench/redis_outage.py [events] [customers] [max_pending]`` (default 1,000,000 events of
200,000 customers, the worker's default ``TOUCHSTREAM_REDIS_MAX_PENDING``).

One worker (memory store, 8 partitions) runs on Apache Kafka. Once it is ready, Redis is
frozen (SIGSTOP: it keeps its data and the worker's re-sync marker, so only the sync's own
cap can ask for a re-sync) and the events are produced while the worker applies them. Then
Redis is thawed (SIGCONT). Printed: the worker's peak RSS (VmHWM) before Redis came back, the
highest ``touchstream_redis_sync_pending`` sampled, the overflows counted, the seconds until
Redis converged, and how many profiles differ between Redis and the newest version of each
customer the worker published on profiles.updates (what its table holds).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import redis
from aiokafka import AIOKafkaConsumer, TopicPartition

from touchstream.bench import phases
from touchstream.bench.runner import bench_worker_env, python_child
from touchstream.runtime import brokers
from touchstream.runtime.embedded import start_redis
from touchstream.runtime.processes import Child, free_port
from touchstream.runtime.stack import WorkerProcess
from touchstream.serving.keys import PROFILE_PREFIX
from touchstream.simulator.traffic import Traffic
from touchstream.streams import topics

CHUNK = 50_000
STEP_MS = 50
SEED = 27
TOUCHPOINTS = "touchpoints"
CONVERGE_TIMEOUT_S = float(os.environ.get("CONVERGE_TIMEOUT_S", 1800))


class Sampler:
    """Samples the worker's pending gauge and peak RSS every 0.5 s in the background."""

    def __init__(self, child: Child, port: int) -> None:
        self.probe = WorkerProcess(child, port, data_dir="")
        self.child = child
        self.max_pending = 0.0
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            try:
                values = await asyncio.to_thread(self.probe.metrics)
                self.max_pending = max(
                    self.max_pending, values.get("touchstream_redis_sync_pending", 0.0)
                )
                self.samples += 1
            except OSError:
                pass
            await asyncio.sleep(0.5)

    def metric(self, name: str) -> float:
        return self.probe.metrics().get(name, 0.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def produce_stream(bootstrap: str, events: int, customers: int) -> float:
    traffic = Traffic(customers=customers, seed=SEED)
    start_ms = int(time.time() * 1000) - events * STEP_MS
    began = time.monotonic()
    for first in range(0, events, CHUNK):
        records = [
            traffic.next(start_ms + i * STEP_MS) for i in range(first, min(first + CHUNK, events))
        ]
        await phases.produce_all(bootstrap, TOUCHPOINTS, records, 600)
    return time.monotonic() - began


class Published:
    """The newest version of each customer on profiles.updates (an erasure notice included),
    read up to the topic's end at each ``catch_up``: the worker goes on publishing after the
    traffic (timers fire as its idle ticks move the clocks on)."""

    def __init__(self, bootstrap: str) -> None:
        self.newest: dict[str, dict[str, Any]] = {}
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_bytes=32 * 2**20,
        )

    async def start(self) -> None:
        await self._consumer.start()
        tps = [TopicPartition(topics.PROFILES_UPDATES, p) for p in range(phases.PARTITIONS)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)

    async def catch_up(self) -> None:
        consumer = self._consumer
        ends = await consumer.end_offsets(list(consumer.assignment()))
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batch.values():
                for r in records:
                    update = orjson.loads(r.value)
                    held = self.newest.get(update["customer_id"])
                    if held is None or update["version"] >= held["version"]:
                        self.newest[update["customer_id"]] = update

    async def stop(self) -> None:
        await self._consumer.stop()


def differing(client: redis.Redis, newest: dict[str, dict[str, Any]]) -> list[str]:
    """Customers whose Redis profile is missing, older than their newest publication, or of
    the same version with other fields (a newer one was published after the topic was read)."""
    problems = []
    ids = list(newest)
    for start in range(0, len(ids), 5_000):
        part = ids[start : start + 5_000]
        pipe = client.pipeline(transaction=False)
        for cid in part:
            pipe.hgetall(PROFILE_PREFIX + cid)
        for cid, stored in zip(part, pipe.execute(), strict=True):
            update = newest[cid]
            if update.get("erased"):
                if stored:
                    problems.append(f"{cid}: erased, still in Redis")
                continue
            if not stored:
                problems.append(f"{cid}: not in Redis")
                continue
            if int(stored["version"]) > update["version"]:
                continue  # published after the topic was read: compared on the next round
            want = {
                k: v if type(v) is str else "" if v is None else str(v)
                for k, v in update.items()
                if k != "event_id"
            }
            if stored != want:
                wrong = {k for k in want.keys() | stored.keys() if want.get(k) != stored.get(k)}
                problems.append(f"{cid}: fields differ {sorted(wrong)[:6]}")
    return problems


async def main(events: int, customers: int, max_pending: int | None) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="touchstream-redis-outage-"))
    broker = brokers.start(brokers.KAFKA, workdir)
    store = start_redis(log_path=workdir / "redis.log")
    child: Child | None = None
    sampler: Sampler | None = None
    frozen = False
    try:
        bootstrap = broker.bootstrap
        await phases.create_topics(
            bootstrap, [TOUCHPOINTS, topics.CUSTOMER_EVENTS, *topics.OUTPUTS]
        )
        port = free_port()
        env = bench_worker_env(broker.kind, broker.url, store.url(0), port, str(workdir / "data"))
        env["TOUCHSTREAM_LOG_LEVEL"] = "info"
        if max_pending is not None:
            env["TOUCHSTREAM_REDIS_MAX_PENDING"] = str(max_pending)
        child = python_child(["-m", "touchstream", "worker"], "worker", env, workdir, "w.log")
        log = workdir / "w.log"
        ready_s = await phases.wait_ready(child, port, 300)
        while "re-synced" not in log.read_text(errors="replace"):  # the start-up re-sync
            await asyncio.sleep(0.2)
        sampler = Sampler(child, port)
        sampler.start()
        baseline = phases.read_vmhwm_mib(child.pid)
        os.kill(store.child.proc.pid, signal.SIGSTOP)
        frozen = True
        began = time.monotonic()
        print(f"worker ready in {ready_s:.1f} s ({baseline:,.0f} MiB); Redis frozen", flush=True)
        produced_s = await produce_stream(bootstrap, events, customers)
        print(f"{events:,} events of {customers:,} customers produced in {produced_s:,.0f} s")
        await phases.wait_settled([(child, port)], 3600)
        applied_s = time.monotonic() - began
        peak = phases.read_vmhwm_mib(child.pid)
        overflows = sampler.metric("touchstream_redis_sync_overflows_total")
        print(
            f"applied with Redis frozen after {applied_s:,.0f} s: peak RSS {peak:,.0f} MiB, "
            f"pending at most {sampler.max_pending:,.0f} ({sampler.samples} samples), "
            f"{overflows:,.0f} overflows",
            flush=True,
        )
        os.kill(store.child.proc.pid, signal.SIGCONT)
        frozen = False
        thawed = time.monotonic()
        published = Published(bootstrap)
        await published.start()
        await published.catch_up()
        client = redis.Redis.from_url(store.url(0), decode_responses=True)
        problems = differing(client, published.newest)
        while problems and time.monotonic() - thawed < CONVERGE_TIMEOUT_S:
            await asyncio.sleep(5)
            await published.catch_up()
            problems = differing(client, published.newest)
            print(f"  {len(problems):,} differing, e.g. {problems[:2]}", flush=True)
        await published.stop()
        print(
            f"Redis converged after {time.monotonic() - thawed:,.0f} s: {len(published.newest):,} "
            f"customers published, {len(problems):,} differing in Redis "
            f"{problems[:5]}; peak RSS at the end {phases.read_vmhwm_mib(child.pid):,.0f} MiB; "
            f"re-syncs {sampler.metric('touchstream_redis_resyncs_total'):,.0f}",
            flush=True,
        )
        client.close()
    finally:
        if sampler is not None:
            await sampler.stop()
        if frozen:
            os.kill(store.child.proc.pid, signal.SIGCONT)
        if child is not None:
            child.stop(60)
        store.stop()
        broker.stop()
        if os.environ.get("KEEP_WORKDIR"):
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000,
            int(sys.argv[2]) if len(sys.argv) > 2 else 200_000,
            int(sys.argv[3]) if len(sys.argv) > 3 else None,
        )
    )
