"""HTTP views on every worker: health, readiness, metrics and the single customer view."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from faust import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from touchstream.serving.keys import decode_profile, profile_key

if TYPE_CHECKING:
    from touchstream.streams.topology import Topology


def register_views(t: Topology) -> None:
    app = t.app

    @app.page("/healthz")
    async def healthz(self: web.View, request: web.Request) -> web.Response:
        return self.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(self: web.View, request: web.Request) -> web.Response:
        checks = {"partitions_recovered": t.ready(), "redis": await _redis_ok(t)}
        status = 200 if all(checks.values()) else 503
        return self.json({"ready": status == 200, "checks": checks}, status=status)

    @app.page("/metrics")
    async def metrics_view(self: web.View, request: web.Request) -> web.Response:
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/customers/{customer_id}")
    class CustomerView(web.View):
        async def get(self, request: web.Request, customer_id: str) -> web.Response:
            try:
                raw = await t.redis.hgetall(profile_key(customer_id))
            except RedisError:
                return self.json({"error": "the profile store is unavailable"}, status=503)
            if not raw:
                return self.json(
                    {"error": "unknown customer", "customer_id": customer_id}, status=404
                )
            return self.json(decode_profile(raw))  # type: ignore[arg-type]

    _ = (healthz, readyz, metrics_view, CustomerView)


async def _redis_ok(t: Topology) -> bool:
    try:
        return bool(await asyncio.wait_for(t.redis.ping(), timeout=1.0))
    except (RedisError, OSError, TimeoutError):
        return False
