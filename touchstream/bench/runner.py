"""``touchstream bench``: one broker, one data set, three consumers of it, then latency.

(a) raw aiokafka + orjson, (b) a naive Faust app with one table update per event,
(c) the Touchstream worker, measured on its own output timestamps; then live traffic at half
of (c)'s throughput for the latency percentiles. Start-up is excluded from every number.
The broker is Apache Kafka unless ``--broker embedded`` asks for Tansu; the report names it.
Every process started here is stopped on the way out, whatever the way out is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import signal
import site
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

import touchstream
from touchstream.bench import phases
from touchstream.bench.phases import BenchError
from touchstream.bench.report import BenchResult, percentile
from touchstream.config.rules import load_rules
from touchstream.runtime import brokers
from touchstream.runtime.apache_kafka import KafkaUnavailable
from touchstream.runtime.brokers import Broker
from touchstream.runtime.embedded import start_redis
from touchstream.runtime.processes import Child, free_port
from touchstream.runtime.stack import WorkerProcess, clean_env, worker_env
from touchstream.simulator.traffic import Traffic, generate
from touchstream.streams.topics import (
    CUSTOMER_EVENTS,
    OUTPUTS,
    PRIVILEGED,
    PROFILES_UPDATES,
    TOUCHPOINTS,
)

DATA_SEED = 11
STEP_MS = 50  # event time between consecutive records of the data set
LIVE_SEED = 12
READY_TIMEOUT_S = 60.0
# the drain after the latency phase: outputs still missing after this are reported unmatched
DRAIN_TIMEOUT_S = 30.0
RECANCEL_S = 0.5


def _budget(base_s: float, events: int, slowest_eps: float) -> float:
    """A phase deadline: fixed overhead plus the events at a rate far below any expected one."""
    return base_s + events / slowest_eps


class _Clock:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f}s] {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so every ``finally`` stops what it started.

    This handler covers the synchronous parts; inside the event loop SIGTERM cancels the
    main task instead (see ``_cancel_on_signals``), and so does SIGINT.
    """

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_bench(args: argparse.Namespace) -> int:
    if (
        args.events < 1
        or args.customers < 1
        or not 0 < args.latency_seconds < math.inf
        or args.workers < 1
        or (args.latency_rate is not None and not 0 < args.latency_rate < math.inf)
    ):
        print(
            "touchstream bench: --events, --customers, --latency-seconds, --latency-rate and "
            "--workers must be finite numbers > 0",
            file=sys.stderr,
        )
        return 2
    args.rules = args.rules or os.environ.get("TOUCHSTREAM_RULES") or None
    if args.rules and not Path(args.rules).is_file():
        print(f"touchstream bench: rules file {args.rules}: no such file", file=sys.stderr)
        return 2
    load_rules(args.rules)  # a bad rules file fails here, naming the key, not after phase (b)
    clock = _Clock()
    result = BenchResult(
        events=args.events,
        customers=args.customers,
        workers=args.workers,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        broker=args.broker,
    )
    workdir = Path(tempfile.mkdtemp(prefix="touchstream-bench-"))
    keep_workdir = False
    try:
        with _sigterm_as_interrupt(), contextlib.ExitStack() as stack:
            clock.say(f"logs in {workdir} (removed unless the bench fails)")
            clock.say(f"starting the broker ({args.broker}) and Redis")
            try:
                broker = brokers.start(args.broker, workdir)
                stack.callback(broker.stop)
                result.broker_version = broker.version
                clock.say(
                    f"broker: {brokers.describe(broker.kind, broker.version)} on {broker.bootstrap}"
                )
                redis = start_redis(log_path=workdir / "redis.log")
                stack.callback(redis.stop)
            except KafkaUnavailable as exc:
                # nothing was measured: no logs worth keeping, and the message says it all
                print(brokers.unavailable("bench", exc), file=sys.stderr)
                return 1
            except (RuntimeError, TimeoutError) as exc:
                raise BenchError(f"the broker or Redis did not start: {exc}") from None
            try:
                asyncio.run(
                    _cancel_on_signals(
                        _bench(args, result, broker, redis.url(0), workdir, stack, clock)
                    )
                )
            except asyncio.CancelledError:
                raise KeyboardInterrupt from None
    except BenchError as exc:
        keep_workdir = True
        print(f"touchstream bench: FAILED: {exc}", file=sys.stderr)
        print(f"touchstream bench: logs kept in {workdir}", file=sys.stderr)
        return 1
    finally:
        if not keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    result.wall_seconds = time.monotonic() - clock.start
    clock.say("done; every process stopped")
    print(result.text())
    if args.json:
        result.write_json(args.json)
        print(f"\n  JSON written to {args.json}")
    return 0


async def _cancel_on_signals(main: Coroutine[Any, Any, None]) -> None:
    """Ctrl-C or SIGTERM cancels the bench, which stops everything it started on the way out.

    A cancellation can be swallowed by whatever is awaited when it lands (aiokafka's
    ``close`` awaits its own cancelled task inside ``suppress(CancelledError)``), so until
    the bench has ended it is cancelled again every half second, and it ends as interrupted
    even if it ran to completion meanwhile.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    interrupted = False

    def cancel() -> None:
        nonlocal interrupted
        interrupted = True
        if not task.done():
            task.cancel()
            loop.call_later(RECANCEL_S, cancel)

    handled = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        try:
            loop.add_signal_handler(sig, cancel)
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / Unix
            break
    try:
        await main
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
            signal.signal(sig, previous[sig])
    if interrupted:
        raise KeyboardInterrupt


async def _bench(
    args: argparse.Namespace,
    result: BenchResult,
    broker: Broker,
    redis_url: str,
    workdir: Path,
    stack: contextlib.ExitStack,
    clock: _Clock,
) -> None:
    n = args.events
    bootstrap = broker.bootstrap
    # the data ends now, as a live stream's backlog does: had it ended earlier, the first live
    # record would move each partition's event-time clock over the gap at once
    start_ms = int(time.time() * 1000) - n * STEP_MS
    records = generate(n, args.customers, seed=DATA_SEED, start_ms=start_ms, step_ms=STEP_MS)
    expected = {phases.event_id(r.value) for r in records}
    if len(expected) != n:
        raise BenchError(f"the generator repeated event ids ({len(expected)} unique of {n})")

    clock.say(f"producing {n:,} events of {args.customers:,} customers to {TOUCHPOINTS}")
    # every topic the worker reads or writes, with the worker's partition count. Left to the
    # broker, Kafka creates the outputs with 1 partition and Tansu with 4, and the brokers'
    # numbers would differ by the producer batches as much as by the broker; and on Kafka
    # the worker's group could be assigned before customer-events shows (kafka_io.ensure_topics)
    await phases.create_topics(bootstrap, [TOUCHPOINTS, PRIVILEGED, CUSTOMER_EVENTS, *OUTPUTS])
    await phases.produce_all(bootstrap, TOUCHPOINTS, records, _budget(30, n, 2_000))
    del records

    clock.say("(a) raw aiokafka + orjson consume")
    # both inputs: the data set's consent grants are on the privileged one (domain.privileged)
    inputs = [TOUCHPOINTS, PRIVILEGED]
    result.raw_eps = await phases.raw_consume(bootstrap, inputs, n, _budget(30, n, 2_000))
    clock.say(f"(a) {result.raw_eps:,.0f} events/s")

    clock.say("(b) naive Faust app, one table update per event")
    result.naive_faust_eps = await _naive_phase(broker, n, workdir, stack)
    clock.say(f"(b) {result.naive_faust_eps:,.0f} events/s")

    clock.say("(c) Touchstream worker")
    workers: list[tuple[Child, int]] = []
    for index in range(args.workers):
        port = free_port()
        child = _start_worker(args, broker, redis_url, port, workdir, index)
        stack.callback(child.stop)
        workers.append((child, port))
    worker = workers[0][0]  # watched by the phases below; another one dying shows as a stall
    reader = phases.OutputReader(bootstrap, PROFILES_UPDATES)
    try:
        await reader.start()
        ready_s = await _all_ready(workers)
        ready_at_ms = time.time() * 1000
        clock.say(
            f"(c) {len(workers)} worker(s) ready after {ready_s:.1f}s; "
            f"waiting for {n:,} profile updates"
        )
        await phases.await_outputs(
            reader,
            expected,
            worker,
            "the pipeline phase",
            _budget(60, n, 250),
            broker=broker.child,
        )
        first_ms = min(reader.arrivals[eid] for eid in expected)
        clock.say(f"(c) first output {(first_ms - ready_at_ms) / 1000:.1f}s after /readyz said 200")
        result.pipeline_eps = phases.pipeline_eps(reader, expected)
        result.pipeline_duplicate_outputs = reader.duplicates
        clock.say(
            f"(c) {result.pipeline_eps:,.0f} events/s applied "
            f"({reader.duplicates:,} duplicate outputs skipped); waiting for identity links"
        )
        settled_ms = await phases.wait_settled(workers, _budget(60, n, 250))
        result.settled_eps = phases.pipeline_eps(reader, expected, settled_ms)
        clock.say(f"(c) {result.settled_eps:,.0f} events/s with every link settled")

        rate = latency_rate_for(args.latency_rate, result.settled_eps)
        result.latency_rate_eps = rate
        result.latency_rate_fixed = args.latency_rate is not None
        clock.say(f"latency: live traffic at {rate:,.0f} events/s for {args.latency_seconds:g}s")
        sent = await phases.offer_live_traffic(
            bootstrap,
            TOUCHPOINTS,
            Traffic(customers=args.customers, seed=LIVE_SEED),
            rate,
            args.latency_seconds,
            worker,
        )
        live = set(sent)
        await phases.await_outputs(
            reader,
            live,
            worker,
            "the latency drain",
            DRAIN_TIMEOUT_S,
            stall_s=DRAIN_TIMEOUT_S,
            on_stall=lambda done: clock.say(
                f"latency: {len(live) - done:,} outputs still missing after the drain"
            ),
            broker=broker.child,
        )
        latencies = [reader.arrivals[eid] - sent[eid] for eid in live if eid in reader.arrivals]
        result.latency_sent = len(sent)
        result.latency_matched = len(latencies)
        if not latencies:
            raise BenchError("the latency phase matched no output to its input", worker)
        result.latency_p50_ms = percentile(latencies, 50)
        result.latency_p99_ms = percentile(latencies, 99)
        result.latency_max_ms = max(latencies)
        clock.say(
            f"latency: p50 {result.latency_p50_ms:.0f} ms, p99 {result.latency_p99_ms:.0f} ms "
            f"over {len(latencies):,} events"
        )
        result.worker_peak_rss_mib = max(phases.read_vmhwm_mib(c.pid) for c, _ in workers)
    finally:
        await reader.stop()
        for child, _ in workers:
            child.stop()


def latency_rate_for(fixed: float | None, settled_eps: float) -> float:
    """The latency phase's offered rate: ``--latency-rate`` if given, else half of what the
    worker sustained in this run, identity links included (docs/domain.md, "Targets")."""
    return fixed if fixed is not None else settled_eps / 2


async def _naive_phase(broker: Broker, n: int, workdir: Path, stack: contextlib.ExitStack) -> float:
    result_path = workdir / "naive-result.json"
    env = _child_env(
        TOUCHSTREAM_BENCH_BROKER=broker.url,
        TOUCHSTREAM_BENCH_TOPIC=f"{TOUCHPOINTS},{PRIVILEGED}",
        TOUCHSTREAM_BENCH_EVENTS=str(n),
        TOUCHSTREAM_BENCH_RESULT=str(result_path),
        TOUCHSTREAM_BENCH_WEB_PORT=str(free_port()),
        TOUCHSTREAM_BENCH_DATADIR=str(workdir / "naive-data"),
    )
    naive = python_child(
        ["-m", "touchstream.bench.naive"], "naive Faust app", env, workdir, "naive.log"
    )
    stack.callback(naive.stop)
    try:
        raw = await phases.wait_for_file(
            result_path, naive, "the naive Faust phase", _budget(60, n, 1_000)
        )
    finally:
        naive.stop()
    data = orjson.loads(raw)
    return float(n / max(data["t_last"] - data["t_first"], 1e-6))


async def _all_ready(workers: list[tuple[Child, int]]) -> float:
    """Seconds until every worker's /readyz is 200 at once: a worker joining after another was
    ready sets off a rebalance, which turns the first one's readiness off again."""
    started = time.monotonic()
    while True:
        for child, port in workers:
            await phases.wait_ready(child, port, READY_TIMEOUT_S)
        probes = [WorkerProcess(child, 0, "", ops_port=port) for child, port in workers]
        codes = [await asyncio.to_thread(_readyz, probe) for probe in probes]
        if all(code == 200 for code in codes):
            return time.monotonic() - started
        if time.monotonic() - started > READY_TIMEOUT_S:
            raise BenchError("the workers were never ready together", workers[0][0])
        await asyncio.sleep(0.5)


def _readyz(probe: WorkerProcess) -> int:
    try:
        return probe.get("/readyz")[0]
    except OSError:
        return 0


def _start_worker(
    args: argparse.Namespace,
    broker: Broker,
    redis_url: str,
    port: int,
    workdir: Path,
    index: int,
) -> Child:
    data_dir = str(workdir / f"worker-{index}-data")
    env = bench_worker_env(broker.kind, broker.url, redis_url, port, data_dir)
    argv = ["-m", "touchstream", "worker"]
    if args.rules:
        argv += ["--rules", str(Path(args.rules).resolve())]
    return python_child(argv, f"worker {index}", env, workdir, f"worker-{index}.log")


def bench_worker_env(
    broker_kind: str, broker_url: str, redis_url: str, port: int, data_dir: str
) -> dict[str, str]:
    """The environment of a measured worker: the one the demo and the tests run it with
    (runtime.stack), with Tansu's workarounds only on Tansu, so that on Apache Kafka the
    worker measured is configured as a production worker is. ``port`` is its operations
    listener (readiness, metrics); its customer API gets a free port of its own."""
    return worker_env(
        broker_url,
        redis_url,
        free_port(),
        data_dir,
        embedded_broker=broker_kind == brokers.EMBEDDED,
        ops_port=port,
        partitions="8",
        log_level="warning",
    )


def python_child(
    argv: list[str], name: str, env: dict[str, str], workdir: Path, log_name: str
) -> Child:
    """A Python process of the bench, running the touchstream code this bench runs.

    ``python -m`` puts the current directory first on ``sys.path``: started from a checkout, a
    worker would import that checkout's code whatever PYTHONPATH says, and an A/B of two trees
    (``PYTHONPATH=<tree> touchstream bench``) would measure one worker twice. So the children
    run in the bench's temporary directory, with the root this bench imported touchstream
    from first on their PYTHONPATH (unless it is an installed package's site directory). The
    other entries are made absolute: relative ones would resolve against that directory."""
    env = dict(env)
    inherited = [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    root = code_root()
    entries = ([root] if root is not None else []) + inherited
    if entries:
        env["PYTHONPATH"] = os.pathsep.join(entries)
    return Child(
        [sys.executable, *argv], name=name, env=env, log_path=workdir / log_name, cwd=str(workdir)
    )


def code_root() -> str | None:
    """The directory this process imported touchstream from, if it is not a site directory."""
    root = str(Path(touchstream.__file__).resolve().parent.parent)
    sites = {str(Path(p).resolve()) for p in (*site.getsitepackages(), site.getusersitepackages())}
    return None if root in sites else root


def _child_env(**overrides: str) -> dict[str, str]:
    # the caller's TOUCHSTREAM_* settings (topic prefix, app id, ...) must not leak into the
    # measured processes; the rules file travels as --rules
    env = clean_env()
    env.update(overrides)
    return env
