"""``touchstream demo``: the whole product on one machine, with simulated shoppers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import redis
from aiokafka import AIOKafkaConsumer

from touchstream.config.settings import load_all
from touchstream.runtime import brokers
from touchstream.runtime.apache_kafka import KafkaUnavailable
from touchstream.runtime.kafka_io import ensure_topics
from touchstream.runtime.stack import Stack, WorkerProcess, issue_token
from touchstream.serving import tokens
from touchstream.serving.keys import PROFILE_PREFIX
from touchstream.simulator.produce import ProduceStats, produce
from touchstream.simulator.traffic import Traffic
from touchstream.streams import topics

DRAIN_TIMEOUT_S = 60.0


def say(text: str) -> None:
    print(text, flush=True)


class Terminated(Exception):
    """SIGTERM arrived: stop everything we started, then exit."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def run_demo(args: argparse.Namespace) -> int:
    # validate the rules before starting anything, so a bad file fails fast and names the key
    settings, _ = load_all({"TOUCHSTREAM_ENV": "development"}, rules=args.rules)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        stack = Stack.start(broker_kind=args.broker)
    except KafkaUnavailable as exc:
        print(brokers.unavailable("demo", exc), file=sys.stderr)
        return 1
    except Terminated:  # during Apache Kafka's few seconds of start-up; it stopped what it began
        return 143
    try:
        # the worker's topics, before the worker: on Apache Kafka a group assigned before a
        # topic it just created shows would wait minutes for it (kafka_io.ensure_topics)
        names = [*topics.INPUTS, topics.CUSTOMER_EVENTS, *topics.OUTPUTS]
        asyncio.run(ensure_topics(stack.broker.bootstrap, names, settings.partitions))
        worker = stack.start_worker(rules=args.rules)
        worker.token = _demo_token(stack)
        # scripts read HOST:PORT from the first three lines, so the broker's name comes after
        say(f"broker: {stack.broker.bootstrap}")
        say(f"redis: {stack.redis.url(0)}")
        say(f"http: {worker.http}")
        say(f"ops: {worker.ops}")
        say(f"token: {worker.token}")
        say(f"broker software: {brokers.describe(stack.broker.kind, stack.broker.version)}")
        say(f"logs: {stack.workdir}")
        ready_s = worker.wait_ready()
        say(f"worker ready in {ready_s:.1f}s")
        if args.no_traffic:
            say("customer API (scopes profile:read, lookup):")
            say(
                f'  curl -H "Authorization: Bearer {worker.token}" '
                f"{worker.http}/customers/CUSTOMER_ID"
            )
            say(
                f'  curl -H "Authorization: Bearer {worker.token}" -H "Content-Type: '
                f'application/json" -d \'{{"kind": "email", "value": "EMAIL"}}\' '
                f"{worker.http}/customers/lookup"
            )
            say(f"operations (no token): {worker.ops}/metrics /healthz /readyz")
            say("running until Ctrl-C (SIGINT) or SIGTERM")
            try:
                while True:
                    # not signal.pause(): a signal that lands after the interpreter's last
                    # check for pending handlers and before pause() blocks is left pending,
                    # and pause() waits for another that never comes (a CI run hung so, its
                    # worker never stopped); a sleep ends, and the handler runs, within 1 s
                    time.sleep(1.0)
            except (Terminated, KeyboardInterrupt):
                return 0
        summary = asyncio.run(_traffic(args, stack, worker))
        signal.signal(signal.SIGTERM, _on_sigterm)  # asyncio.run reset it to the default
        _print_summary(summary, brokers.describe(stack.broker.kind, stack.broker.version))
        if args.summary_json:
            Path(args.summary_json).write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
            say(f"summary written to {args.summary_json}")
        return 0 if summary["drained"] else 1
    except (Terminated, KeyboardInterrupt) as exc:
        # with --no-traffic a signal is the normal way to stop, whenever it arrives
        if args.no_traffic:
            return 0
        if isinstance(exc, Terminated):
            return 143
        raise
    finally:
        say("stopping worker, Redis and broker ...")
        stack.stop()


async def _traffic(args: argparse.Namespace, stack: Stack, worker: WorkerProcess) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    traffic = Traffic(customers=args.customers, seed=args.seed, malformed=args.malformed)
    stats = ProduceStats()
    outputs = _Outputs(stack.broker.bootstrap)
    await outputs.start()
    say(
        f"simulating {args.customers} shoppers at {args.rate:.0f} events/s for {args.duration:.0f}s "
        f"({args.malformed:.0%} malformed); Ctrl-C stops early"
    )
    started = time.monotonic()
    producer = asyncio.ensure_future(
        produce(
            traffic,
            stack.broker.bootstrap,
            topics.TOUCHPOINTS,
            args.rate,
            stats,
            stop,
            duration_s=args.duration,
        )
    )
    monitor = asyncio.ensure_future(outputs.run())
    try:
        last = (time.monotonic(), 0)
        while not producer.done():
            await asyncio.sleep(1.0)
            now = time.monotonic()
            rate = (stats.produced - last[1]) / max(now - last[0], 1e-6)
            last = (now, stats.produced)
            m = await asyncio.to_thread(_safe_metrics, worker)
            for line in outputs.drain_new_triggers():
                say(f"  trigger {line}")
            say(
                f"[{now - started:5.0f}s] produced {stats.produced} ({rate:.0f}/s)  "
                f"processed {int(m.get('touchstream_events_applied_total', 0))}  "
                f"dlq {outputs.dlq_total}  triggers {sum(outputs.triggers.values())}"
            )
        await producer
        produced_s = time.monotonic() - started
        drained = await _drain(worker, outputs, stats)
    finally:
        monitor.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await monitor
        await outputs.stop()
    # merges started by the last events travel a few more hops after the events are applied
    await asyncio.sleep(IDENTITY_SETTLE_S)
    m = await asyncio.to_thread(_safe_metrics, worker)
    api_read = await asyncio.to_thread(_api_sample, worker, stack.redis.url(0))
    return {
        "broker": stack.broker.kind,
        "broker_version": stack.broker.version,
        "duration_s": round(produced_s, 1),
        "events_produced": stats.produced,
        "events_processed": int(m.get("touchstream_events_applied_total", 0)),
        "duplicates_skipped": int(m.get("touchstream_duplicates_skipped_total", 0)),
        "dlq_events": outputs.dlq_total,
        "dlq_by_reason": dict(outputs.dlq_reasons),
        "malformed_injected": stats.malformed_total,
        "malformed_by_kind": dict(stats.malformed),
        "triggers": dict(outputs.triggers),
        "profile_updates": outputs.profile_updates,
        **_count_profiles(stack.redis.url(0)),
        "drained": drained,
        "api_read": api_read,
    }


def _demo_token(stack: Stack) -> str:
    """A token for the demo's own reads and for the user to try the API with."""
    client = redis.Redis.from_url(stack.redis.url(stack.redis_db))
    try:
        return issue_token(client, "touchstream demo", tokens.PROFILE_READ, tokens.LOOKUP)
    finally:
        client.close()


def _api_sample(worker: WorkerProcess, url: str) -> dict[str, Any]:
    """One live profile read through the customer API with the demo's token."""
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=PROFILE_PREFIX + "*", count=1000):
            if not client.hexists(key, "merged_into"):
                customer_id = key.decode()[len(PROFILE_PREFIX) :]
                break
        else:
            return {}
    finally:
        client.close()
    try:
        status, body = worker.get(f"/customers/{customer_id}")
    except OSError:
        return {"customer_id": customer_id, "status": None}
    read: dict[str, Any] = {"customer_id": customer_id, "status": status}
    if status == 200:
        profile = orjson.loads(body)
        read.update(points=profile.get("points"), tier=profile.get("tier"))
    return read


def _safe_metrics(worker: WorkerProcess) -> dict[str, float]:
    try:
        return worker.metrics()
    except OSError:
        return {}


async def _drain(worker: WorkerProcess, outputs: _Outputs, stats: ProduceStats) -> bool:
    """Wait until every produced record is accounted for: applied, skipped or dead-lettered."""
    say("traffic stopped; waiting for the worker to catch up ...")
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        m = await asyncio.to_thread(_safe_metrics, worker)
        accepted = m.get("touchstream_events_in_total", 0)
        done = m.get("touchstream_events_applied_total", 0) + m.get(
            "touchstream_duplicates_skipped_total", 0
        )
        if accepted + outputs.dlq_total >= stats.produced and done >= accepted:
            return True
        await asyncio.sleep(0.5)
    say(f"worker did not catch up within {DRAIN_TIMEOUT_S:.0f}s")
    return False


IDENTITY_SETTLE_S = 1.5


def _count_profiles(url: str) -> dict[str, int]:
    """Customers (live profiles) and the ids merged into them (redirect hashes)."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=PROFILE_PREFIX + "*", count=1000))
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hexists(key, "merged_into")
            merged = sum(1 for absorbed in pipe.execute() if absorbed)
        return {"profiles_in_redis": len(keys) - merged, "merged_ids_in_redis": merged}
    finally:
        client.close()


class _Outputs:
    """Reads the output topics the demo reports on."""

    def __init__(self, bootstrap: str) -> None:
        self.dlq_total = 0
        self.dlq_reasons: Counter[str] = Counter()
        self.triggers: Counter[str] = Counter()
        self.profile_updates = 0
        self._new_triggers: list[str] = []
        names = [topics.DLQ, topics.PROFILES_UPDATES, *topics.TRIGGER_TOPICS.values()]
        self._consumer = AIOKafkaConsumer(
            *names,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    self._observe(tp.topic, record.value)

    def _observe(self, topic: str, value: bytes | None) -> None:
        if topic == topics.DLQ:
            self.dlq_total += 1
            with contextlib.suppress(Exception):
                self.dlq_reasons[orjson.loads(value or b"{}").get("reason", "?")] += 1
        elif topic == topics.PROFILES_UPDATES:
            self.profile_updates += 1
        else:
            kind = topic.removeprefix("triggers.")
            self.triggers[kind] += 1
            with contextlib.suppress(Exception):
                trigger = orjson.loads(value or b"{}")
                self._new_triggers.append(
                    f"{kind} for {trigger.get('customer_id')}: {trigger.get('reason', '')}"
                )

    def drain_new_triggers(self) -> list[str]:
        lines, self._new_triggers = self._new_triggers[-5:], []
        return lines


def _print_summary(s: dict[str, Any], broker: str) -> None:
    say("")
    say("== Touchstream demo summary ==")
    say(f"  broker         {broker}")
    say(
        f"  traffic        {s['events_produced']} events in {s['duration_s']}s "
        f"({s['events_produced'] / max(s['duration_s'], 1e-6):.0f}/s)"
    )
    say(
        f"  processed      {s['events_processed']} applied to customer state, "
        f"{s['duplicates_skipped']} duplicates skipped"
    )
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["dlq_by_reason"].items())) or "none"
    say(
        f"  dead letters   {s['dlq_events']} (injected malformed: {s['malformed_injected']}) "
        f"-> {reasons}"
    )
    trig = ", ".join(f"{k} {v}" for k, v in sorted(s["triggers"].items())) or "none yet"
    say(f"  triggers       {trig}")
    say(
        f"  profiles       {s['profiles_in_redis']} customers in Redis "
        f"({s['merged_ids_in_redis']} more ids merged into them), "
        f"{s['profile_updates']} updates on {topics.PROFILES_UPDATES}"
    )
    verdict = (
        "every malformed event is in the DLQ"
        if s["dlq_events"] == s["malformed_injected"]
        else "DLQ count differs from injected malformed events"
    )
    read = s.get("api_read") or {}
    if read:
        say(
            f"  customer API   GET /customers/{read['customer_id']} with the demo token -> "
            f"{read['status']}"
            + (f" (points {read['points']}, tier {read['tier']})" if read["status"] == 200 else "")
        )
    say(f"  check          {verdict}; caught up: {'yes' if s['drained'] else 'no'}")
    sys.stdout.flush()
