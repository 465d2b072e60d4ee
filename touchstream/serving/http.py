"""The operations listener of every worker (TOUCHSTREAM_OPS_HOST/_OPS_PORT, Faust's web
server): health, readiness and metrics, without a token and without customer data. The
customer API is on its own listener (serving/api.py)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from faust import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from touchstream.streams.topology import Topology


def register_views(t: Topology) -> None:
    app = t.app

    @app.page("/healthz")
    async def healthz(self: web.View, request: web.Request) -> web.Response:
        return self.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(self: web.View, request: web.Request) -> web.Response:
        refused = t.access.problem
        checks = {
            "partitions_recovered": t.recovered(),
            "output_delivered": t.outbox.health is None,
            "redis": await _redis_ok(t),
            "kafka_access": refused is None,
            "no_partition_halted": not t.routes.halted,
            "customer_api": t.api.serving,
        }
        status = 200 if all(checks.values()) else 503
        body: dict[str, object] = {"ready": status == 200, "checks": checks}
        if t.outbox.health is not None:
            body["output"] = t.outbox.health
        if refused is not None:
            body["kafka_access"] = refused
        if t.routes.halted:  # an internal record failed there (streams.isolation)
            body["halted"] = {f"{tp.topic}[{tp.partition}]": o for tp, o in t.routes.halted.items()}
        return self.json(body, status=status)

    @app.page("/metrics")
    async def metrics_view(self: web.View, request: web.Request) -> web.Response:
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    _ = (healthz, readyz, metrics_view)


async def _redis_ok(t: Topology) -> bool:
    try:
        return bool(await asyncio.wait_for(t.redis.ping(), timeout=1.0))
    except (RedisError, OSError, TimeoutError):
        return False
