"""``touchstream kafka fetch|run``: the pinned Apache Kafka, fetched and run without Docker."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from touchstream.runtime.apache_kafka import KAFKA_VERSION, KafkaUnavailable, fetch, start_kafka


def run_kafka(args: argparse.Namespace) -> int:
    try:
        if args.kafka_command == "fetch":
            libs = fetch()
            print(f"Apache Kafka {KAFKA_VERSION}: {libs}")
            return 0
        return _run(args.dir)
    except KafkaUnavailable as exc:
        print(f"touchstream kafka: {exc}", file=sys.stderr)
        return 1


def _run(directory: str | None) -> int:
    tmp = None if directory else tempfile.TemporaryDirectory(prefix="touchstream-kafka-")
    workdir = Path(directory or tmp.name)  # type: ignore[union-attr]
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started = time.monotonic()
    broker = start_kafka(workdir / "kafka")
    try:
        print(f"Apache Kafka {KAFKA_VERSION} started in {time.monotonic() - started:.1f} s")
        print(f"broker: {broker.bootstrap}", flush=True)
        while not stop.wait(0.5):
            if not broker.child.alive():
                print(broker.child.tail(), file=sys.stderr)
                return 1
        return 0
    finally:
        broker.stop()
        if tmp is not None:
            tmp.cleanup()
