"""Profile writes to a real Redis server: newer versions win, and an absorbed id stays absorbed.

DB 0 of the session Redis: the stacks of other tests use DBs 1-15.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis
import redis.asyncio as aioredis

from touchstream.runtime.embedded import EmbeddedRedis
from touchstream.serving.keys import profile_key
from touchstream.serving.redis_sync import RedisSync

CID = "ts-0123456789abcdef01234567"


def live(version: int, points: int) -> dict[str, Any]:
    return {"customer_id": CID, "points": points, "version": version}


def redirect(version: int) -> dict[str, Any]:
    return {"customer_id": CID, "merged_into": "ts-survivor", "version": version}


def served(server: EmbeddedRedis, flushes: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Submit each list of profiles and flush it, in order; what Redis serves afterwards, by
    customer id."""

    async def run() -> None:
        client = aioredis.Redis.from_url(server.url(0))
        try:
            sync = RedisSync(client, flush_interval_s=0.05)
            for profiles in flushes:
                for profile in profiles:
                    sync.submit(profile["customer_id"], profile)
                await sync.flush()
        finally:
            await client.aclose()

    plain = redis.Redis.from_url(server.url(0), decode_responses=True)
    try:
        plain.flushdb()
        asyncio.run(run())
        ids = {p["customer_id"] for profiles in flushes for p in profiles}
        return {cid: plain.hgetall(profile_key(cid)) for cid in ids}
    finally:
        plain.close()


def written(server: EmbeddedRedis, *profiles: dict[str, Any]) -> dict[str, str]:
    """Write the profiles one flush each, in order; what Redis serves afterwards."""
    return served(server, [[p] for p in profiles])[CID]  # type: ignore[no-any-return]


def test_a_newer_profile_replaces_an_older_one_and_not_the_other_way_round(redis_server):
    assert written(redis_server, live(3, 10), live(4, 20))["points"] == "20"
    assert written(redis_server, live(4, 20), live(3, 10))["points"] == "20"


def test_a_redirect_replaces_a_live_profile_even_numbered_lower(redis_server):
    # Redis got v5 before a crash; the replay read the merge earlier and numbered it 4
    served = written(redis_server, live(5, 30), redirect(4))
    assert served == {"customer_id": CID, "merged_into": "ts-survivor", "version": "4"}


def test_a_live_profile_never_replaces_a_redirect(redis_server):
    served = written(redis_server, redirect(4), live(9, 30))
    assert served.get("merged_into") == "ts-survivor" and "points" not in served


def test_one_flush_of_many_customers_judges_each_by_its_own_version(redis_server):
    ids = [f"ts-{i:024x}" for i in range(300)]
    first = [{"customer_id": cid, "points": 1, "version": 5} for cid in ids]
    second = [  # every third older, every third a redirect numbered lower, the rest newer
        {"customer_id": cid, "points": 2, "version": 4}
        if i % 3 == 0
        else {"customer_id": cid, "merged_into": "ts-x", "version": 1}
        if i % 3 == 1
        else {"customer_id": cid, "points": 3, "version": 6}
        for i, cid in enumerate(ids)
    ]
    after = served(redis_server, [first, second])
    for i, cid in enumerate(ids):
        expected = [
            {"customer_id": cid, "points": "1", "version": "5"},
            {"customer_id": cid, "merged_into": "ts-x", "version": "1"},
            {"customer_id": cid, "points": "3", "version": "6"},
        ][i % 3]
        assert after[cid] == expected


def test_a_stale_queued_write_never_brings_an_erased_profile_back(redis_server):
    """The worker that owned a customer before a rebalance still has a write of her queued
    when the new owner erases her: the tombstone refuses it, and the redirect written late,
    and keeps her alias keys away; a profile numbered above it (a new sign-up) replaces it."""
    seen: dict[str, Any] = {}

    async def run() -> None:
        client = aioredis.Redis.from_url(redis_server.url(0), decode_responses=True)
        try:
            old_owner, new_owner = RedisSync(client, 0.05), RedisSync(client, 0.05)
            old_owner.submit(CID, live(5, 10), [("loyalty_id", "L-1")])
            await old_owner.flush()
            old_owner.submit(CID, live(6, 20), [("device_id", "d-1")])  # queued, not written
            new_owner.remove(CID, [("loyalty_id", "L-1")], version=7, erased_at=1_000)
            await new_owner.flush()
            seen["confirmed"] = list(new_owner.confirmed)
            await old_owner.flush()  # lands late
            old_owner.submit(CID, redirect(6))
            await old_owner.flush()
            seen["buried"] = await client.hgetall(profile_key(CID))
            seen["ttl"] = await client.ttl(profile_key(CID))
            seen["aliases"] = await client.keys("ts:alias:*")
            new_owner.submit(CID, live(9, 100), [("loyalty_id", "L-1")])  # signed up again
            await new_owner.flush()
            seen["reborn"] = await client.hgetall(profile_key(CID))
        finally:
            await client.aclose()

    plain = redis.Redis.from_url(redis_server.url(0))
    try:
        plain.flushdb()
    finally:
        plain.close()
    asyncio.run(run())
    assert seen["confirmed"] == [(CID, 7, 1_000)]  # Redis confirmed the erasure's deletion
    assert seen["buried"] == {"erased": "1", "version": "7"}
    assert seen["ttl"] > 0  # TOUCHSTREAM_REDIS_TOMBSTONE_TTL_S
    assert seen["aliases"] == []
    assert seen["reborn"]["points"] == "100" and "erased" not in seen["reborn"]
