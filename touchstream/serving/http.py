"""HTTP views on every worker: health, readiness, metrics and the single customer view."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from faust import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from touchstream.config.rules import IDENTIFIER_KINDS
from touchstream.serving.keys import alias_key, decode_profile, is_tombstone, profile_key

# merges only ever point at a stronger profile, so chains are short; this bounds a bad store
MAX_REDIRECTS = 16

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

    # registered before /customers/{customer_id}, which would otherwise take "lookup" as an id
    @app.page("/customers/lookup")
    class LookupView(web.View):
        async def get(self, request: web.Request) -> web.Response:
            kind = request.query.get("kind", "")
            value = request.query.get("value", "")
            if kind not in IDENTIFIER_KINDS:
                return self.json(
                    {"error": f"kind must be one of {', '.join(IDENTIFIER_KINDS)}"}, status=400
                )
            normalised = t.normaliser.normalise_value(kind, value)
            if normalised is None:
                return self.json({"error": "value is blank, blocked or not usable"}, status=400)
            try:
                found = await t.redis.get(alias_key(kind, normalised))
                customer_id = found.decode() if isinstance(found, bytes) else found
                profile = await _resolve(t, customer_id) if customer_id else None
            except RedisError:
                return self.json({"error": "the profile store is unavailable"}, status=503)
            if profile is None:
                return self.json({"error": "unknown identifier", "kind": kind}, status=404)
            return self.json(profile)

    @app.page("/customers/{customer_id}")
    class CustomerView(web.View):
        async def get(self, request: web.Request, customer_id: str) -> web.Response:
            try:
                profile = await _resolve(t, customer_id)
            except RedisError:
                return self.json({"error": "the profile store is unavailable"}, status=503)
            if profile is None:
                return self.json(
                    {"error": "unknown customer", "customer_id": customer_id}, status=404
                )
            return self.json(profile)

    _ = (healthz, readyz, metrics_view, LookupView, CustomerView)


async def _resolve(t: Topology, customer_id: str) -> dict[str, object] | None:
    """The live profile of a customer id, following merges (an absorbed id, a stale alias)."""
    for _ in range(MAX_REDIRECTS):
        raw = await t.redis.hgetall(profile_key(customer_id))
        if not raw or is_tombstone(raw):  # erased: a versioned tombstone (serving.keys)
            return None
        profile = decode_profile(raw)  # type: ignore[arg-type]
        into = profile.get("merged_into")
        if not into:
            return profile
        customer_id = str(into)
    return None


async def _redis_ok(t: Topology) -> bool:
    try:
        return bool(await asyncio.wait_for(t.redis.ping(), timeout=1.0))
    except (RedisError, OSError, TimeoutError):
        return False
