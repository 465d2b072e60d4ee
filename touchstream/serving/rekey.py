"""Re-keying the serving store's identifier aliases to a new HMAC key version.

An email or phone alias key is ``ts:alias:<kind>:<digest>``. ``HmacKeys.rekey`` turns a
digest under version n-1 into the digest under n with key n alone (no raw identifier), so
the alias moves to the key a lookup computes under the new set and keeps naming the same
customer. Idempotent: aliases already under n are left alone; a run stopped half-way is run
again. The procedure around it is in docs/operations.md ("Rotating the HMAC key").
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class RekeyReport:
    moved: int = 0
    already: int = 0
    other: int = 0  # under another version than n-1 or n: a skipped rotation, left for a look


async def rekey_aliases(client: aioredis.Redis, keys: HmacKeys, version: int) -> RekeyReport:
    """Move every email and phone alias from version ``version - 1`` to ``version``."""
    move = client.register_script(MOVE_ALIAS)
    report = RekeyReport()
    for kind in sorted(HASHED_KINDS):
        prefix = alias_key(kind, "")
        async for raw in client.scan_iter(match=prefix + "*", count=SCAN_COUNT):
            name = raw.decode() if isinstance(raw, bytes) else raw
            digest = name[len(prefix) :]
            found = version_of(digest)
            if found == version:
                report.already += 1
            elif found == version - 1:
                moved = await move(keys=[name, alias_key(kind, keys.rekey(digest, version))])
                report.moved += int(moved)
            else:
                report.other += 1
    return report
