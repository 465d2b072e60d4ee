"""The naive Faust baseline: what a first-time Faust user writes, one table update per event.

Run as ``python -m touchstream.bench.naive``; configured by environment variables only, because
the harness starts it as a child process::

    TOUCHSTREAM_BENCH_BROKER    kafka://HOST:PORT
    TOUCHSTREAM_BENCH_TOPIC     source topics, comma-separated (touchpoints)
    TOUCHSTREAM_BENCH_EVENTS    N: record the wall time of the first and of the N-th event
    TOUCHSTREAM_BENCH_RESULT    where to write {"events", "t_first", "t_last"} once N is reached
    TOUCHSTREAM_BENCH_WEB_PORT  port of Faust's web server
    TOUCHSTREAM_BENCH_DATADIR   Faust data directory
    TOUCHSTREAM_BENCH_APP_ID    consumer group / app id (default touchstream-bench-naive)

It keeps running after writing the result; the harness stops it with SIGTERM.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import faust
import orjson

PARTITIONS = 8


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(f"TOUCHSTREAM_BENCH_{name}", default)
    if value is None:
        raise SystemExit(f"naive bench app: TOUCHSTREAM_BENCH_{name} is not set")
    return value


def build_app() -> faust.App:
    n_events = int(_env("EVENTS"))
    result_path = Path(_env("RESULT"))
    app = faust.App(
        _env("APP_ID", "touchstream-bench-naive"),
        broker=_env("BROKER"),
        store="memory://",
        datadir=_env("DATADIR"),
        autodiscover=False,
        topic_partitions=PARTITIONS,
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        web_port=int(_env("WEB_PORT")),
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
    )
    source = app.topic(
        *_env("TOPIC", "touchpoints").split(","),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    counts = app.Table("counts", default=int, partitions=PARTITIONS)
    seen = {"n": 0, "t_first": 0.0}

    @app.agent(source)
    async def count(stream: Any) -> None:
        async for event in stream.events():
            orjson.loads(event.value)
            counts[event.key or b"-"] += 1
            seen["n"] += 1
            if seen["n"] == 1:
                seen["t_first"] = time.time()
            if seen["n"] == n_events:
                _write_result(result_path, n_events, seen["t_first"], time.time())

    _ = count
    return app


def _write_result(path: Path, events: int, t_first: float, t_last: float) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps({"events": events, "t_first": t_first, "t_last": t_last}))
    tmp.replace(path)  # atomic: the harness never reads a half-written file


def main() -> None:
    app = build_app()
    worker = faust.Worker(app, loglevel="WARNING", stdout=sys.stdout, stderr=sys.stderr)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
