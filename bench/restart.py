"""How long a worker takes to be ready with N customers in its changelog, and what it costs:
``python bench/restart.py [customers] [memory|rocksdb]`` (default 1,000,000, memory).

The customers changelog is filled with N states copied from the bench data set replayed
through the pure core (1.6 KiB of JSON each, the size the bench's shoppers reach), stored as a
worker stores them (``tables.state_codec``), then a worker starts on it. Printed: seconds until ``/readyz`` is 200, seconds until its Redis re-sync of
every profile is logged, and the worker's peak RSS. With ``rocksdb`` the worker is then
stopped and started again, and the same is printed for the restart from its disk.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

from touchstream.bench import phases
from touchstream.bench.replay import replayed
from touchstream.runtime.embedded import start_broker, start_redis
from touchstream.runtime.processes import Child, free_port
from touchstream.runtime.stack import worker_env
from touchstream.simulator.traffic import Record
from touchstream.tables import state_codec

CHANGELOG = "touchstream-customers-changelog"
CHUNK = 50_000


def templates() -> list[dict]:
    return [s for s in replayed(20_000, 2_000).table.values() if isinstance(s, dict)]  # live


async def fill(bootstrap: str, customers: int) -> int:
    shapes = templates()
    await phases.create_topics(bootstrap, [CHANGELOG])
    size = 0
    for start in range(0, customers, CHUNK):
        chunk = []
        for i in range(start, min(start + CHUNK, customers)):
            cid = f"bench-{i:08d}"
            value = state_codec.encode(dict(shapes[i % len(shapes)], customer_id=cid))
            size += len(value)
            chunk.append(Record(cid.encode(), value))
        await phases.produce_all(bootstrap, CHANGELOG, chunk, 600)
    return size


def start(
    broker_url: str, redis_url: str, data_dir: Path, store: str, log: Path
) -> tuple[Child, int]:
    port = free_port()
    env = worker_env(
        broker_url, redis_url, port, str(data_dir), partitions="8", store=store, log_level="info"
    )
    child = Child([sys.executable, "-m", "touchstream", "worker"], "worker", env=env, log_path=log)
    return child, port


async def measure(child: Child, port: int, log: Path, label: str) -> None:
    started = time.monotonic()
    ready_s = await phases.wait_ready(child, port, 1800)
    while "re-synced" not in log.read_text(errors="replace"):
        if not child.alive():
            raise phases.BenchError("the worker stopped during its re-sync", child)
        await asyncio.sleep(0.2)
    synced_s = time.monotonic() - started
    print(
        f"{label}: ready in {ready_s:,.1f} s, Redis re-sync logged after {synced_s:,.1f} s, "
        f"peak RSS {phases.read_vmhwm_mib(child.pid):,.0f} MiB",
        flush=True,
    )


async def main(customers: int, store: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="touchstream-restart-"))
    broker = start_broker(log_path=workdir / "broker.log")
    redis = start_redis(log_path=workdir / "redis.log")
    try:
        began = time.monotonic()
        size = await fill(broker.bootstrap, customers)
        print(
            f"{customers:,} customer states, {size / customers:,.0f} bytes each, "
            f"{size / 2**20:,.0f} MiB, produced in {time.monotonic() - began:,.1f} s",
            flush=True,
        )
        for run in ("first start", "restart")[: 2 if store == "rocksdb" else 1]:
            log = workdir / f"worker-{run.replace(' ', '-')}.log"
            child, port = start(broker.url, redis.url(0), workdir / "data", store, log)
            try:
                await measure(child, port, log, f"{store} {run}")
            finally:
                child.stop(60)
    finally:
        redis.stop()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000,
            sys.argv[2] if len(sys.argv) > 2 else "memory",
        )
    )
