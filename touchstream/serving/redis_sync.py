"""Keeps Redis profiles current: coalesced, versioned, retried writes.

The agent hands over the newest profile of a customer and moves on; a background loop writes
batches through one pipeline. A write only lands if its version is newer than the stored one,
so a replay or a late retry never moves a profile backwards. A failed batch stays pending
(newer versions replace older ones) and is retried with backoff: a Redis outage delays the
view, it never loses an update.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from touchstream import metrics
from touchstream.serving.keys import alias_key, profile_key
from touchstream.streams.isolation import Undo

log = logging.getLogger(__name__)

# KEYS the profile keys of a batch; ARGV[1] one JSON array with, per key, [version, 1 for a
# redirect (an absorbed id) or 0, the fields as an object of strings]. One call per batch:
# a call per profile, and before that ~40 field/value pairs as separate arguments, was most
# of the sync loop's time in the bench (issue 10). Returns how many profiles were written.
#
# A hash is replaced whole: a profile that became a redirect after a merge keeps none of its
# old fields. An absorbed id never comes back to life (only an erasure or expiry deletes its
# key), so a redirect replaces a live profile whatever their versions, and a live profile
# never replaces a redirect: after a crash, a replay that reads the records in another order
# can number the redirect lower than a live version Redis got before the crash.
WRITE_IF_NEWER = """
local batch = cjson.decode(ARGV[1])
local written = 0
for i, key in ipairs(KEYS) do
  local version, is_redirect, fields = batch[i][1], batch[i][2] == 1, batch[i][3]
  local newer = true
  local stored = redis.call('HGET', key, 'version')
  if stored then
    local was_redirect = redis.call('HEXISTS', key, 'merged_into') == 1
    if was_redirect and not is_redirect then newer = false end
    if was_redirect == is_redirect and tonumber(stored) >= version then newer = false end
  end
  if newer then
    local flat = {}
    for name, value in pairs(fields) do
      flat[#flat + 1] = name
      flat[#flat + 1] = value
    end
    redis.call('DEL', key)
    redis.call('HSET', key, unpack(flat))
    written = written + 1
  end
end
return written
"""

# KEYS alias keys; ARGV[1] customer id: an alias is removed only while it still points here
DELETE_ALIASES = """
local removed = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then removed = removed + redis.call('DEL', key) end
end
return removed
"""

MAX_BATCH = 500
MAX_BACKOFF_S = 2.0


class RedisSync:
    def __init__(self, client: aioredis.Redis, flush_interval_s: float) -> None:
        self._client = client
        self._interval = flush_interval_s
        # a None profile means: remove the profile and these aliases
        self._pending: dict[str, tuple[dict[str, Any] | None, list[tuple[str, str]], float]] = {}
        self._script = client.register_script(WRITE_IF_NEWER)
        self._delete_aliases = client.register_script(DELETE_ALIASES)
        self._wake = asyncio.Event()
        self._stopping = False
        self.undo: Undo | None = None  # the topology's, shared with the outbox

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(
        self,
        customer_id: str,
        profile: dict[str, Any],
        aliases: list[tuple[str, str]] | None = None,
    ) -> None:
        """Queue the newest profile; ``aliases`` are (kind, value) keys to point at it."""
        previous = self._queue(customer_id)
        undo = self.undo.entries if self.undo is not None else None
        if undo is not None:
            undo.append((self._put_back, customer_id, previous))
        merged_aliases = list(previous[1]) if previous else []
        merged_aliases.extend(a for a in aliases or () if a not in merged_aliases)
        self._pending[customer_id] = (profile, merged_aliases, self._since(previous))
        if len(self._pending) >= MAX_BATCH:
            self._wake.set()

    def remove(self, customer_id: str, aliases: list[tuple[str, str]]) -> None:
        """Queue the removal of a profile (dropped or erased) and of its alias keys."""
        previous = self._queue(customer_id)
        undo = self.undo.entries if self.undo is not None else None
        if undo is not None:
            undo.append((self._put_back, customer_id, previous))
        self._pending[customer_id] = (None, list(aliases), self._since(previous))
        self._wake.set()

    def _put_back(self, customer_id: str, previous: Any) -> None:
        """Undo a batch's submit (streams.isolation): the queue entry as it was before it."""
        self._pending.pop(customer_id, None)
        if previous is not None:
            self._pending[customer_id] = previous  # the batch runs again, queues the rest anew

    def _queue(self, customer_id: str) -> Any:
        # taken out and re-inserted at the end: batches flush in submission order, so when a
        # merge moves an alias from the absorbed id to the survivor, the survivor's write lands
        # last
        return self._pending.pop(customer_id, None)

    @staticmethod
    def _since(previous: Any) -> float:
        return float(previous[2]) if previous else time.monotonic()

    async def run(self) -> None:
        backoff = 0.05
        while not self._stopping or self._pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            self._wake.clear()
            try:
                await self.flush()
                backoff = 0.05
            except (RedisError, OSError) as exc:
                metrics.REDIS_SYNC_ERRORS.inc()
                log.warning("Redis profile sync failed, retrying in %.2fs: %s", backoff, exc)
                if self._stopping:
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            self._observe()

    async def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping = True
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        while self._pending and time.monotonic() < deadline:
            try:
                await self.flush()
            except (RedisError, OSError):
                await asyncio.sleep(0.1)

    async def flush(self) -> None:
        while self._pending:
            batch = list(self._pending.items())[:MAX_BATCH]
            keys: list[str] = []
            writes: list[Any] = []
            async with self._client.pipeline(transaction=False) as pipe:
                for customer_id, (profile, _, _) in batch:
                    if profile is not None:
                        keys.append(profile_key(customer_id))
                        redirect = int("merged_into" in profile)
                        writes.append((profile["version"], redirect, _strings(profile)))
                if keys:  # profiles first: an alias never names a profile not in Redis yet
                    await self._script(keys=keys, args=[orjson.dumps(writes)], client=pipe)
                for customer_id, (profile, aliases, _) in batch:
                    if profile is None:
                        pipe.delete(profile_key(customer_id))
                        gone = [alias_key(kind, value) for kind, value in aliases]
                        if gone:
                            await self._delete_aliases(keys=gone, args=[customer_id], client=pipe)
                        continue
                    for kind, value in aliases:
                        pipe.set(alias_key(kind, value), customer_id)
                results = await pipe.execute()
            for customer_id, entry in batch:
                if self._pending.get(customer_id) is entry:
                    del self._pending[customer_id]
            written = int(results[0]) if keys else 0
            metrics.REDIS_WRITES.labels("written").inc(written)
            metrics.REDIS_WRITES.labels("older_version_kept").inc(len(keys) - written)

    def _observe(self) -> None:
        metrics.REDIS_SYNC_PENDING.set(len(self._pending))
        if self._pending:
            oldest = min(entry[2] for entry in self._pending.values())
            metrics.REDIS_SYNC_LAG.set(time.monotonic() - oldest)
        else:
            metrics.REDIS_SYNC_LAG.set(0)


def _strings(profile: dict[str, Any]) -> dict[str, str]:
    """The hash's fields as Redis stores them: strings, None as empty (as redis-py encodes)."""
    return {k: v if type(v) is str else "" if v is None else str(v) for k, v in profile.items()}
