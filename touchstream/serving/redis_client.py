"""One place that turns settings into a Redis client (ACL user, TLS)."""

from __future__ import annotations

import redis.asyncio as aioredis

from touchstream.config.settings import Settings


def redis_client(settings: Settings) -> aioredis.Redis:
    kwargs: dict[str, object] = {
        "socket_timeout": 2.0,
        "socket_connect_timeout": 2.0,
        "health_check_interval": 10,
    }
    if settings.redis_username:
        kwargs["username"] = settings.redis_username
    if settings.redis_password:
        kwargs["password"] = settings.redis_password
    if settings.secure_redis and settings.redis_ssl_cafile:
        kwargs["ssl_ca_certs"] = settings.redis_ssl_cafile
    return aioredis.Redis.from_url(settings.redis_url, **kwargs)  # type: ignore[arg-type]
