"""Bearer tokens of the customer API: issue, hash, check scopes, revoke; and the per-token rate
limit.

A token is ``ts_<id>_<secret>``: ``id`` (12 hex digits) names it in the audit log and in
``touchstream tokens revoke``; ``secret`` is 32 random bytes (``secrets.token_urlsafe``).
Redis keeps, per id, only the SHA-256 of the whole token with its name and scopes, in the hash
``ts:api:tokens`` that every worker reads. A plain hash is enough here: a slow password hash
(bcrypt, Argon2) protects low-entropy secrets people choose against guessing from a leaked
hash; a 256-bit random secret cannot be guessed, slowly or fast, so the fast hash costs the
attacker nothing more to try and the worker one microsecond a request. Whoever reads Redis
learns no token that works.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

TOKENS_KEY = "ts:api:tokens"
PREFIX = "ts"
PROFILE_READ = "profile:read"
LOOKUP = "lookup"
ADMIN = "admin"
# admin holds every other scope
SCOPES = (PROFILE_READ, LOOKUP, ADMIN)


class TokenError(ValueError):
    """A token or a scope that cannot be issued or parsed."""


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    scopes: frozenset[str]
    sha256: str
    created_at: str

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or ADMIN in self.scopes

    def public(self) -> dict[str, Any]:
        """What ``tokens list`` shows: no hash, no secret."""
        return {
            "id": self.id,
            "name": self.name,
            "scopes": sorted(self.scopes),
            "created_at": self.created_at,
        }

    def stored(self) -> bytes:
        return orjson.dumps(
            {
                "name": self.name,
                "scopes": sorted(self.scopes),
                "sha256": self.sha256,
                "created_at": self.created_at,
            }
        )

    @classmethod
    def load(cls, token_id: str, raw: bytes | str) -> TokenRecord:
        data = orjson.loads(raw)
        return cls(
            token_id,
            str(data["name"]),
            frozenset(str(s) for s in data["scopes"]),
            str(data["sha256"]),
            str(data.get("created_at", "")),
        )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(scopes)
    unknown = sorted(chosen - set(SCOPES))
    if unknown or not chosen:
        raise TokenError(f"scopes must be among {', '.join(SCOPES)}, got {sorted(chosen)}")
    return chosen


def new_token(
    name: str, scopes: Iterable[str], now: datetime | None = None
) -> tuple[str, TokenRecord]:
    """A fresh token and the record to store (the token itself is stored nowhere)."""
    if not name or len(name) > 200 or not name.isprintable():
        raise TokenError("a token needs a printable name of at most 200 characters")
    chosen = check_scopes(scopes)
    token_id = secrets.token_hex(6)
    token = f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
    created = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    return token, TokenRecord(token_id, name, chosen, hash_token(token), created)


def token_id_of(token: str) -> str | None:
    """The id a presented token claims, or None when it is not shaped like one of ours."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or len(parts[1]) != 12 or not parts[2]:
        return None
    return parts[1]


def verify(token: str, records: Mapping[str, TokenRecord]) -> TokenRecord | None:
    """The record of a presented token, or None (unknown, revoked or forged)."""
    token_id = token_id_of(token)
    record = records.get(token_id) if token_id else None
    if record is None:
        return None
    if not hmac.compare_digest(record.sha256, hash_token(token)):
        return None
    return record


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


# a presented token id missing from a worker's copy reads the set again, at most this often
MISS_RELOAD_S = 1.0


class TokenCache:
    """The token set as a worker sees it: read from Redis again once it is ``ttl_s`` old, so
    a revocation takes effect on every worker within ``ttl_s`` (plus one Redis read). When
    Redis cannot be read and the copy is too old, ``records`` raises: no stale token set is
    trusted past its time (the caller answers 503)."""

    def __init__(
        self,
        load: Callable[[], Awaitable[dict[str, TokenRecord]]],
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl_s = ttl_s
        self._clock = clock
        self._records: dict[str, TokenRecord] = {}
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self._loaded_at is not None and self._clock() - self._loaded_at < self._ttl_s

    async def records(self, wanted: str | None = None) -> dict[str, TokenRecord]:
        """The token set; read again when older than ``ttl_s``, or when ``wanted`` (a token id
        just presented) is not in it and the copy is at least ``MISS_RELOAD_S`` old, so that a
        token just issued works at once without letting unknown ids cost a Redis read each."""
        if self._fresh() and (wanted is None or wanted in self._records or self._recent()):
            return self._records
        async with self._lock:
            missing = wanted is not None and wanted not in self._records
            if not self._fresh() or (missing and not self._recent()):
                started = self._clock()
                self._records = await self._load()
                self._loaded_at = started  # the copy is as old as the moment it was asked for
        return self._records

    def _recent(self) -> bool:
        return self._loaded_at is not None and self._clock() - self._loaded_at < MISS_RELOAD_S


class RateLimiter:
    """A token bucket per key (a token id): ``rate_per_s`` refill, ``burst`` at most. Keys are
    authenticated token ids, so the table is as large as the token set at most."""

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """0 when the request may go ahead (one unit taken), else the seconds until it may."""
        now = self._clock()
        level, at = self._buckets.get(key, (float(self.burst), now))
        level = min(float(self.burst), level + (now - at) * self.rate_per_s)
        if level >= 1.0:
            self._buckets[key] = (level - 1.0, now)
            return 0.0
        self._buckets[key] = (level, now)
        return (1.0 - level) / self.rate_per_s

    def forget_except(self, keys: Iterable[str]) -> None:
        keep = set(keys)
        for key in [k for k in self._buckets if k not in keep]:
            del self._buckets[key]


def retry_after(wait_s: float) -> str:
    """The Retry-After header: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(wait_s)))


# -- the store, in Redis ---------------------------------------------------------------------


async def load_records(redis: Any) -> dict[str, TokenRecord]:
    raw = await redis.hgetall(TOKENS_KEY)
    out: dict[str, TokenRecord] = {}
    for k, v in raw.items():
        token_id = k.decode() if isinstance(k, bytes) else str(k)
        try:
            out[token_id] = TokenRecord.load(token_id, v)
        except (ValueError, KeyError, TypeError):
            continue  # a damaged record authorises nothing
    return out


async def store_record(redis: Any, record: TokenRecord) -> None:
    await redis.hset(TOKENS_KEY, record.id, record.stored())


async def revoke(redis: Any, token_id: str) -> bool:
    return bool(await redis.hdel(TOKENS_KEY, token_id))
