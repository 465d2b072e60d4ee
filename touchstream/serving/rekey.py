"""``touchstream keys rotate``: re-key the stored email and phone digests to a new HMAC key
version, without the raw identifiers and without splitting profiles.

``HmacKeys.rekey`` turns a digest under version n-1 into the digest under n with key n alone.
Redis holds an alias ``ts:alias:<kind>:<digest>`` for every identifier of every profile, naming
its customer id, so it lists what to re-key. For each chunk of aliases under n-1:

1. a ``rekey`` record per customer goes to the customer-events topic (keyed by the customer
   id, as the workers key it): the profile holds the new digests instead of the old ones and
   the home of each new digest becomes a redirect to it (``domain.linking``), so the customer
   id, the history and the links stay, and events under the new key find the profile;
2. each alias moves to the new digest's key, naming the same customer.

Idempotent: aliases already under n are left alone, a record applied twice changes nothing,
and a run stopped half-way is run again. The procedure around it is in docs/operations.md
("Rotating the HMAC key").
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from touchstream.domain.identity import HASHED_KINDS, HmacKeys, version_of
from touchstream.serving.keys import alias_key

# an alias moves only if it is still there, and never over an alias the stream already wrote
# under the new version (that one is newer): KEYS[1] old, KEYS[2] new
MOVE_ALIAS = """
local target = redis.call('GET', KEYS[1])
if not target then return 0 end
redis.call('SET', KEYS[2], target, 'NX')
redis.call('DEL', KEYS[1])
return 1
"""
SCAN_COUNT = 1000
# aliases re-keyed per round (records sent, then aliases moved): bounds the tool's memory
CHUNK = 10_000

Send = Callable[[list[tuple[str, dict[str, Any]]]], Awaitable[None]]


@dataclass
class RekeyReport:
    moved: int = 0
    customers: int = 0  # rekey records sent
    already: int = 0
    other: int = 0  # under another version than n-1 or n: a skipped rotation, left for a look


def rekey_record(moves: list[list[str]], version: int, now_ms: int) -> dict[str, Any]:
    """The customer-events record re-keying one profile's identifiers: [kind, old, new]."""
    return {
        "k": "rekey",
        "moves": moves,
        "at": now_ms,
        "ts": now_ms,
        "id": f"hmac-rotation-v{version}",
    }


async def rekey(
    client: aioredis.Redis, keys: HmacKeys, version: int, send: Send | None
) -> RekeyReport:
    """Re-key every email and phone alias from ``version - 1`` to ``version``; ``send``
    delivers the rekey records to the workers (None: Redis only)."""
    move = client.register_script(MOVE_ALIAS)
    report = RekeyReport()
    chunk: list[tuple[str, str, str, str]] = []  # kind, old alias key, new digest, customer

    async def flush() -> None:
        by_customer: dict[str, list[list[str]]] = {}
        for kind, name, new, customer_id in chunk:
            old = name[len(alias_key(kind, "")) :]
            by_customer.setdefault(customer_id, []).append([kind, old, new])
        now = int(time.time() * 1000)
        if send is not None and by_customer:
            await send([(c, rekey_record(m, version, now)) for c, m in by_customer.items()])
            report.customers += len(by_customer)
        for kind, name, new, _ in chunk:
            report.moved += int(await move(keys=[name, alias_key(kind, new)]))
        chunk.clear()

    for kind in sorted(HASHED_KINDS):
        prefix = alias_key(kind, "")
        async for raw in client.scan_iter(match=prefix + "*", count=SCAN_COUNT):
            name = raw.decode() if isinstance(raw, bytes) else raw
            digest = name[len(prefix) :]
            found = version_of(digest)
            if found == version:
                report.already += 1
                continue
            if found != version - 1:
                report.other += 1
                continue
            target = await client.get(name)
            if target is None:
                continue  # removed meanwhile
            customer_id = target.decode() if isinstance(target, bytes) else target
            chunk.append((kind, name, keys.rekey(digest, version), customer_id))
            if len(chunk) >= CHUNK:
                await flush()
    await flush()
    return report
