"""The operations listener of every worker (TOUCHSTREAM_OPS_HOST/_OPS_PORT, Faust's web
server): health, readiness and metrics, without a token and without customer data. The
customer API is on its own listener (serving/api.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from faust import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError


@dataclass(frozen=True, slots=True)
class Readiness:
    """What ``/readyz`` reports, each asked when it is requested (``streams.topology`` wires
    them to the worker's tables, outbox, access watch, routes, Redis and customer API)."""

    recovered: Callable[[], bool]  # partitions assigned and tables recovered
    output_problem: Callable[[], str | None]  # why output does not reach the broker
    access_problem: Callable[[], str | None]  # what the broker refuses this worker, if any
    halted: Callable[[], dict[Any, int]]  # partitions halted: where (streams.isolation)
    api_serving: Callable[[], bool]
    ping_redis: Callable[[], Awaitable[Any]]


def register_views(app: Any, ready: Readiness) -> None:
    @app.page("/healthz")
    async def healthz(self: web.View, request: web.Request) -> web.Response:
        return self.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(self: web.View, request: web.Request) -> web.Response:
        refused = ready.access_problem()
        output = ready.output_problem()
        halted = ready.halted()
        checks = {
            "partitions_recovered": ready.recovered(),
            "output_delivered": output is None,
            "redis": await _redis_ok(ready),
            "kafka_access": refused is None,
            "no_partition_halted": not halted,
            "customer_api": ready.api_serving(),
        }
        status = 200 if all(checks.values()) else 503
        body: dict[str, object] = {"ready": status == 200, "checks": checks}
        if output is not None:
            body["output"] = output
        if refused is not None:
            body["kafka_access"] = refused
        if halted:  # an internal record failed there (streams.isolation)
            body["halted"] = {f"{tp.topic}[{tp.partition}]": o for tp, o in halted.items()}
        return self.json(body, status=status)

    @app.page("/metrics")
    async def metrics_view(self: web.View, request: web.Request) -> web.Response:
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    _ = (healthz, readyz, metrics_view)


async def _redis_ok(ready: Readiness) -> bool:
    try:
        return bool(await asyncio.wait_for(ready.ping_redis(), timeout=1.0))
    except (RedisError, OSError, TimeoutError):
        return False
