"""The measurements themselves: Kafka I/O of the benchmark, one coroutine per phase.

Every wait has a deadline and raises ``BenchError`` (with the tail of the process log that
explains it) instead of hanging.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from touchstream.runtime.kafka_io import ensure_topics, events_named
from touchstream.runtime.processes import Child
from touchstream.runtime.stack import WorkerProcess
from touchstream.simulator.traffic import Record, Traffic, topic_for

PARTITIONS = 8
# no new output for this long means the pipeline is stuck, not slow
STALL_S = 30.0
SETTLED_POLLS = 3
SETTLED_POLL_S = 0.25
CLIENT_ID = "touchstream-bench"
# a producer batch is one record set on the broker: under Kafka's default message.max.bytes
# (1 MiB), as the worker's 512 KiB (settings.producer_max_batch_bytes) is
PRODUCE_BATCH_BYTES = 256 * 1024


class BenchError(Exception):
    def __init__(self, message: str, process: Child | None = None) -> None:
        tail = process.tail(40) if process is not None else ""
        if tail:
            message = f"{message}\n--- last lines of the {process.name} log ---\n{tail}"  # type: ignore[union-attr]
        super().__init__(message)


def _check_alive(process: Child | None, what: str) -> None:
    if process is not None and not process.alive():
        raise BenchError(
            f"{process.name} exited with code {process.proc.returncode} during {what}", process
        )


def event_id(value: bytes) -> str:
    return str(orjson.loads(value)["event_id"])


async def create_topics(bootstrap: str, names: Sequence[str], timeout_s: float = 30.0) -> None:
    try:
        await ensure_topics(bootstrap, names, PARTITIONS, timeout_s)
    except TimeoutError:
        raise BenchError(f"creating topics {list(names)} took over {timeout_s:.0f}s") from None


async def produce_all(
    bootstrap: str, topic: str, records: Sequence[Record], timeout_s: float
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=CLIENT_ID,
        linger_ms=20,
        max_batch_size=PRODUCE_BATCH_BYTES,
        acks=1,
    )
    try:
        await producer.start()

        async def send_all() -> None:
            # privileged commands (consent grants) to the privileged input, as a deployment
            pending = [
                await producer.send(topic_for(r, topic), r.value, key=r.key) for r in records
            ]
            await producer.flush()
            for future in pending:
                future.result()  # raises if the broker refused a batch

        await asyncio.wait_for(send_all(), timeout_s)
    except TimeoutError:
        raise BenchError(f"producing {len(records):,} records took over {timeout_s:.0f}s") from None
    finally:
        await producer.stop()


async def raw_consume(bootstrap: str, topics: Sequence[str], n: int, timeout_s: float) -> float:
    """(a) The ceiling: aiokafka + orjson.loads, nothing else; events/s first to last record
    (of both inputs: ``topics``)."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        client_id=CLIENT_ID,
        group_id=f"touchstream-bench-raw-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        max_poll_records=20_000,
        fetch_max_wait_ms=100,
    )
    try:
        await consumer.start()
        deadline = time.monotonic() + timeout_s
        count = 0
        t_first = t_last = 0.0
        loads = orjson.loads
        while count < n:
            if time.monotonic() > deadline:
                raise BenchError(f"raw consume read {count:,} of {n:,} records in {timeout_s:.0f}s")
            batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
            if not batches:
                continue
            if not count:
                t_first = time.perf_counter()
            for messages in batches.values():
                for message in messages:
                    loads(message.value)
                count += len(messages)
            t_last = time.perf_counter()
        return n / max(t_last - t_first, 1e-6)
    finally:
        await consumer.stop()


async def wait_for_file(path: Path, process: Child, what: str, timeout_s: float) -> bytes:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        _check_alive(process, what)
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: no result after {timeout_s:.0f}s", process)
        await asyncio.sleep(0.1)
    return path.read_bytes()


async def wait_ready(process: Child, port: int, timeout_s: float) -> float:
    """Seconds until GET /readyz answers 200 (the same poll the demo and the tests use)."""
    worker = WorkerProcess(process, 0, "", ops_port=port)
    try:
        return await asyncio.to_thread(worker.wait_ready, timeout_s)
    except (RuntimeError, TimeoutError) as exc:
        raise BenchError(
            f"the worker did not get ready: {str(exc).splitlines()[0]}", process
        ) from None


@dataclass
class OutputReader:
    """Reads ``profiles.updates`` from the beginning, remembering each event id's first output.

    Manual assignment (no consumer group): nothing to wait for, nothing left behind.
    """

    bootstrap: str
    topic: str
    arrivals: dict[str, int] = field(default_factory=dict)  # event_id -> record timestamp (ms)
    records: int = 0
    duplicates: int = 0
    _new: list[str] = field(default_factory=list)
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=CLIENT_ID,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            max_poll_records=10_000,
        )
        await self._consumer.start()
        partitions = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the bench itself is being cancelled (Ctrl-C): not ours to swallow
        if self._consumer is not None:
            await self._consumer.stop()

    def failed(self) -> BaseException | None:
        if self._task is not None and self._task.done() and not self._task.cancelled():
            return self._task.exception()
        return None

    def take_new(self) -> list[str]:
        new, self._new = self._new, []
        return new

    async def _run(self) -> None:
        assert self._consumer is not None
        loads = orjson.loads
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            for messages in batches.values():
                for message in messages:
                    self.records += 1
                    # each event an update covers counts as arrived with it
                    for eid in events_named(loads(message.value)):
                        if eid in self.arrivals:
                            self.duplicates += 1
                            continue
                        self.arrivals[eid] = message.timestamp
                        self._new.append(eid)


async def await_outputs(
    reader: OutputReader,
    expected: set[str],
    worker: Child,
    what: str,
    timeout_s: float,
    stall_s: float = STALL_S,
    on_stall: Callable[[int], None] | None = None,
    broker: Child | None = None,
) -> int:
    """Wait until every expected event id has an output; returns how many arrived.

    Raises on a dead worker, a stall or the deadline unless ``on_stall`` is given, in which
    case it is told the count and the wait ends (used for the latency drain).
    """
    started = last_progress = time.monotonic()
    done = sum(1 for eid in reader.take_new() if eid in expected)
    while done < len(expected):
        await asyncio.sleep(0.05)
        error = reader.failed()
        if error is not None:
            raise BenchError(f"{what}: reading {reader.topic} failed: {error!r}", worker)
        _check_alive(worker, what)
        _check_alive(broker, what)
        new = sum(1 for eid in reader.take_new() if eid in expected)
        now = time.monotonic()
        if new:
            done += new
            last_progress = now
            continue
        stalled = now - last_progress > stall_s
        if stalled or now - started > timeout_s:
            if on_stall is not None:
                on_stall(done)
                return done
            cause = f"no new output for {stall_s:.0f}s" if stalled else f"over {timeout_s:.0f}s"
            raise BenchError(
                f"{what}: {done:,} of {len(expected):,} events reached {reader.topic} ({cause}; "
                f"{reader.records:,} records read, {reader.duplicates:,} duplicates)",
                worker,
            )
    return done


async def wait_settled(workers: Sequence[tuple[Child, int]], timeout_s: float) -> float:
    """Wall time (epoch ms) at which the workers had no input left: their consumer lag on both
    input topics (touchpoints and the customer-events they send themselves, where identity
    links travel) read 0 on ``SETTLED_POLLS`` polls in a row. The gauge is refreshed every
    0.25 s and polled as often, so the time found is up to about 0.5 s late: a settled rate
    computed from it errs low (by up to 1.5 s before the refresh went from 1 s to 0.25 s)."""
    probes = [(child, WorkerProcess(child, 0, "", ops_port=port)) for child, port in workers]
    deadline = time.monotonic() + timeout_s
    zero_since: float | None = None
    zeros = 0
    while time.monotonic() < deadline:
        total: float | None = 0.0
        for child, probe in probes:
            _check_alive(child, "waiting for the workers to settle")
            try:
                lag = (await asyncio.to_thread(probe.metrics)).get("touchstream_consumer_lag")
            except OSError:
                lag = None
            total = None if lag is None or total is None else total + lag
        if total == 0:
            zero_since = zero_since or time.time() * 1000
            zeros += 1
            if zeros >= SETTLED_POLLS:
                return zero_since
        else:
            zero_since, zeros = None, 0
        await asyncio.sleep(SETTLED_POLL_S)
    raise BenchError(f"the workers still had input to read after {timeout_s:.0f}s", workers[0][0])


def pipeline_eps(reader: OutputReader, expected: set[str], end_ms: float | None = None) -> float:
    """Events/s from the output records' own timestamps: start-up and our polling excluded.
    Ends at the last event's first output, or at ``end_ms`` (when the worker settled)."""
    stamps = [reader.arrivals[eid] for eid in expected]
    last = max(stamps) if end_ms is None else end_ms
    span_ms = max(last - min(stamps), 1)
    return len(expected) / (span_ms / 1000)


async def offer_live_traffic(
    bootstrap: str,
    topic: str,
    traffic: Traffic,
    rate_eps: float,
    seconds: float,
    worker: Child,
) -> dict[str, int]:
    """Produce at ``rate_eps`` for ``seconds``; returns event id -> input record timestamp."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id=CLIENT_ID, acks=1)
    try:
        await producer.start()
        pending: list[tuple[str, asyncio.Future[object]]] = []
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        while (elapsed := loop.time() - start) < seconds:
            due = int(elapsed * rate_eps) + 1
            while sent < due:
                record = traffic.next(int(time.time() * 1000))
                future = await producer.send(topic_for(record, topic), record.value, key=record.key)
                pending.append((event_id(record.value), future))
                sent += 1
            _check_alive(worker, "the latency phase")
            await asyncio.sleep(0.002)
        await asyncio.wait_for(producer.flush(), 30)
        return {eid: future.result().timestamp for eid, future in pending}  # type: ignore[attr-defined]
    except TimeoutError:
        raise BenchError("the latency phase could not flush its producer in 30s") from None
    finally:
        await producer.stop()


def read_vmhwm_mib(pid: int) -> float:
    """Peak resident set size of a live process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmHWM in /proc/{pid}/status")
