"""Produce simulated traffic into any Kafka-protocol broker at a chosen rate."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from touchstream.config.settings import load_client_settings
from touchstream.simulator.traffic import Traffic, topic_for
from touchstream.streams.kafka_client import security_kwargs


@dataclass
class ProduceStats:
    produced: int = 0
    malformed: Counter[str] = field(default_factory=Counter)

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())


async def produce(
    traffic: Traffic,
    bootstrap: str,
    topic: str,
    rate: float,
    stats: ProduceStats,
    stop: asyncio.Event,
    duration_s: float | None = None,
    max_events: int | None = None,
    security: Mapping[str, Any] | None = None,
) -> ProduceStats:
    """Send records until ``stop`` is set, ``duration_s`` passes or ``max_events`` are sent;
    privileged commands (consent grants) to its privileged input (``traffic.topic_for``).

    ``security``: aiokafka login arguments (``kafka_client.security_kwargs``)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=5,
        acks="all",
        max_request_size=4 * 1024 * 1024,
        **(security or {}),
    )
    await producer.start()
    started = time.monotonic()
    try:
        while not stop.is_set():
            elapsed = time.monotonic() - started
            if duration_s is not None and elapsed >= duration_s:
                break
            if max_events is not None and stats.produced >= max_events:
                break
            due = int(elapsed * rate) + 1 if rate > 0 else stats.produced + 500
            burst = max(due - stats.produced, 0)
            if max_events is not None:
                burst = min(burst, max_events - stats.produced)
            if burst == 0:
                await asyncio.sleep(min(0.01, 1 / rate) if rate > 0 else 0)
                continue
            now_ms = int(time.time() * 1000)
            for _ in range(burst):
                record = traffic.next(now_ms)
                await producer.send(topic_for(record, topic), record.value, key=record.key)
                stats.produced += 1
                if record.malformed:
                    stats.malformed[record.malformed] += 1
            await asyncio.sleep(0)
        await producer.flush()
    finally:
        await producer.stop()
    return stats


def run_simulate(args: argparse.Namespace) -> int:
    # the worker's TOUCHSTREAM_BROKER and TOUCHSTREAM_KAFKA_* settings; --broker wins
    settings = load_client_settings(broker=args.broker)
    bootstrap = settings.bootstrap_servers()
    security = security_kwargs(settings)
    traffic = Traffic(
        customers=args.customers,
        seed=args.seed,
        malformed=args.malformed,
        malformed_kinds=args.malformed_kind,
    )
    stats = ProduceStats()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await produce(
            traffic,
            bootstrap,
            args.topic,
            args.rate,
            stats,
            stop,
            duration_s=args.duration,
            max_events=args.events,
            security=security,
        )

    asyncio.run(main())
    kinds = ", ".join(f"{k}={v}" for k, v in sorted(stats.malformed.items())) or "none"
    print(
        f"produced {stats.produced} events to {args.topic} ({stats.malformed_total} malformed: {kinds})"
    )
    return 0
