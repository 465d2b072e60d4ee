"""Keeps Redis profiles current: coalesced, versioned, retried writes.

The agent hands over the newest profile of a customer and moves on; a background loop writes
batches through one pipeline. A write only lands if its version is newer than the stored one,
so a replay or a late retry never moves a profile backwards. A failed batch stays pending
(newer versions replace older ones) and is retried with backoff: a Redis outage delays the
view, it never loses an update.

Memory stays bounded through an outage of any length: at most ``max_pending`` profiles wait
(one per customer, the newest wins). One more and every waiting profile is dropped and the
sync asks for a re-sync (``resync_needed``): the worker rewrites every profile from its table
once Redis answers again (streams/topology.py). Removals (drops and erasures) wait apart, are
never dropped (an erased customer is no longer in the table, so a re-sync could not remove
its keys) and are written before any profile: a customer created again after its removal is
written after the removal.
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
    def __init__(
        self, client: aioredis.Redis, flush_interval_s: float, max_pending: int = 50_000
    ) -> None:
        self._client = client
        self._interval = flush_interval_s
        self._max_pending = max_pending
        # customer id -> (profile, alias keys to point at it, when it started waiting)
        self._pending: dict[str, tuple[dict[str, Any], list[tuple[str, str]], float]] = {}
        # customer id -> (alias keys to remove if they still point at it, since when)
        self._removals: dict[str, tuple[list[tuple[str, str]], float]] = {}
        # monotonic time of the first profile dropped since the last re-sync began, or None
        self._dropped_since: float | None = None
        self._script = client.register_script(WRITE_IF_NEWER)
        self._delete_aliases = client.register_script(DELETE_ALIASES)
        self._wake = asyncio.Event()
        self._stopping = False
        self.undo: Undo | None = None  # the topology's, shared with the outbox

    @property
    def pending(self) -> int:
        """Profiles and removals waiting to be written."""
        return len(self._pending) + len(self._removals)

    @property
    def resync_needed(self) -> bool:
        """Profiles were dropped at the cap: only a re-sync from the table brings them back."""
        return self._dropped_since is not None

    def begin_resync(self) -> None:
        """The caller is about to rewrite every profile from a settled table: what was
        dropped is in it, and profiles are queued again from here on."""
        self._dropped_since = None

    def submit(
        self,
        customer_id: str,
        profile: dict[str, Any],
        aliases: list[tuple[str, str]] | None = None,
    ) -> None:
        """Queue the newest profile; ``aliases`` are (kind, value) keys to point at it."""
        if self._dropped_since is not None:
            return  # the re-sync that follows writes it from the table
        previous = self._queue(customer_id)
        if previous is None and len(self._pending) >= self._max_pending:
            self._overflow()
            return
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
        removal = self._removals.pop(customer_id, None)
        undo = self.undo.entries if self.undo is not None else None
        if undo is not None:
            undo.append((self._take_back_removal, customer_id, previous, removal))
        gone = list(removal[0]) if removal else []
        gone.extend(a for a in aliases if a not in gone)
        since = min(self._since(previous), removal[1]) if removal else self._since(previous)
        self._removals[customer_id] = (gone, since)
        self._wake.set()

    def _overflow(self) -> None:
        log.warning(
            "%d profiles waiting for Redis, the cap: dropped, re-synced from the table once "
            "Redis answers",
            len(self._pending),
        )
        metrics.REDIS_SYNC_OVERFLOWS.inc()
        self._dropped_since = min(
            (entry[2] for entry in self._pending.values()), default=time.monotonic()
        )
        self._pending.clear()
        self._observe()

    def _put_back(self, customer_id: str, previous: Any) -> None:
        """Undo a batch's submit (streams.isolation): the queue entry as it was before it."""
        self._pending.pop(customer_id, None)
        if previous is not None:
            self._pending[customer_id] = previous  # the batch runs again, queues the rest anew

    def _take_back_removal(self, customer_id: str, previous: Any, removal: Any) -> None:
        """Undo a batch's remove: the profile it superseded waits again, and the removal
        waiting before it (if any) is as it was."""
        self._put_back(customer_id, previous)
        self._removals.pop(customer_id, None)
        if removal is not None:
            self._removals[customer_id] = removal

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
        while not self._stopping or self.pending:
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
        while self.pending and time.monotonic() < deadline:
            try:
                await self.flush()
            except (RedisError, OSError):
                await asyncio.sleep(0.1)

    async def flush(self) -> None:
        # removals first: a profile queued after a removal of the same customer (created
        # again) was queued later, and a removal only deletes alias keys still naming it
        while self._removals or self._pending:
            if self._removals:
                await self._flush_removals()
            else:
                await self._flush_profiles()

    async def _flush_removals(self) -> None:
        removals = list(self._removals.items())[:MAX_BATCH]
        async with self._client.pipeline(transaction=False) as pipe:
            for customer_id, (aliases, _) in removals:
                pipe.delete(profile_key(customer_id))
                gone = [alias_key(kind, value) for kind, value in aliases]
                if gone:
                    await self._delete_aliases(keys=gone, args=[customer_id], client=pipe)
            await pipe.execute()
        for customer_id, removal in removals:
            if self._removals.get(customer_id) is removal:
                del self._removals[customer_id]

    async def _flush_profiles(self) -> None:
        batch = list(self._pending.items())[:MAX_BATCH]
        keys: list[str] = []
        writes: list[Any] = []
        async with self._client.pipeline(transaction=False) as pipe:
            for customer_id, (profile, _, _) in batch:
                keys.append(profile_key(customer_id))
                redirect = int("merged_into" in profile)
                writes.append((profile["version"], redirect, _strings(profile)))
            # profiles first: an alias never names a profile not in Redis yet
            await self._script(keys=keys, args=[orjson.dumps(writes)], client=pipe)
            for customer_id, (_, aliases, _) in batch:
                for kind, value in aliases:
                    pipe.set(alias_key(kind, value), customer_id)
            results = await pipe.execute()
        for customer_id, entry in batch:
            if self._pending.get(customer_id) is entry:
                del self._pending[customer_id]
        written = int(results[0])
        metrics.REDIS_WRITES.labels("written").inc(written)
        metrics.REDIS_WRITES.labels("older_version_kept").inc(len(keys) - written)

    def _observe(self) -> None:
        metrics.REDIS_SYNC_PENDING.set(self.pending)
        waiting = [entry[2] for entry in self._pending.values()]
        waiting.extend(entry[1] for entry in self._removals.values())
        if self._dropped_since is not None:  # dropped profiles are waiting for the re-sync
            waiting.append(self._dropped_since)
        metrics.REDIS_SYNC_LAG.set(time.monotonic() - min(waiting) if waiting else 0)


def _strings(profile: dict[str, Any]) -> dict[str, str]:
    """The hash's fields as Redis stores them: strings, None as empty (as redis-py encodes)."""
    return {k: v if type(v) is str else "" if v is None else str(v) for k, v in profile.items()}
