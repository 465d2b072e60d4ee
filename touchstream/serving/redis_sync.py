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
from touchstream.serving.keys import PROFILE_PREFIX, alias_key, profile_key
from touchstream.streams.isolation import Undo
from touchstream.streams.timer_index import partition_for

log = logging.getLogger(__name__)

# KEYS the profile keys of a batch; ARGV[1] one JSON array with, per key, [version, 1 for a
# redirect (an absorbed id) or 0, the fields as an object of strings, the alias keys to point
# at it]. One call per batch: a call per profile, and before that ~40 field/value pairs as
# separate arguments, was most of the sync loop's time in the bench (issue 10). Returns how
# many profiles were written.
#
# A hash is replaced whole: a profile that became a redirect after a merge keeps none of its
# old fields. An absorbed id never comes back to life (only an erasure or expiry deletes its
# key), so a redirect replaces a live profile whatever their versions, and a live profile
# never replaces a redirect: after a crash, a replay that reads the records in another order
# can number the redirect lower than a live version Redis got before the crash.
#
# A tombstone (an erased or dropped profile, serving.keys) is replaced only by a version
# above its own: a stale write, one still queued by a worker that owned the partition before,
# or a redirect written late, never brings an erased profile or its alias keys back.
WRITE_IF_NEWER = """
local batch = cjson.decode(ARGV[1])
local written = 0
for i, key in ipairs(KEYS) do
  local version, is_redirect, fields = batch[i][1], batch[i][2] == 1, batch[i][3]
  local newer = true
  local buried = false
  local stored = redis.call('HGET', key, 'version')
  if stored then
    if redis.call('HEXISTS', key, 'erased') == 1 then
      buried = tonumber(stored) >= version
      newer = not buried
    else
      local was_redirect = redis.call('HEXISTS', key, 'merged_into') == 1
      if was_redirect and not is_redirect then newer = false end
      if was_redirect == is_redirect and tonumber(stored) >= version then newer = false end
    end
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
  if not buried then
    local id = string.sub(key, string.len(ARGV[2]) + 1)
    for _, alias in ipairs(batch[i][4]) do redis.call('SET', alias, id) end
  end
end
return written
"""

# ARGV[1] customer id, ARGV[2] tombstone TTL (ms), ARGV[3] a JSON array of [profile key,
# version] (version -1: the version stored there, the key of another record's profile; -2:
# deleted, no tombstone: a dropped anonymous profile, which may start again from version 1);
# KEYS the alias keys, removed only while they still point at the customer. Each profile key
# becomes a tombstone of its version unless a newer profile is already there (created again
# after the removal). Returns how many alias keys were removed.
BURY = """
local ttl = tonumber(ARGV[2])
for _, entry in ipairs(cjson.decode(ARGV[3])) do
  local key, version = entry[1], entry[2]
  local stored = tonumber(redis.call('HGET', key, 'version') or '-1')
  if version == -2 then
    redis.call('DEL', key)
  else
    if version < 0 then version = math.max(stored, 0) end
    if stored <= version then
      redis.call('DEL', key)
      redis.call('HSET', key, 'erased', '1', 'version', version)
      redis.call('PEXPIRE', key, ttl)
    end
  end
end
local removed = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then removed = removed + redis.call('DEL', key) end
end
return removed
"""

MAX_BATCH = 500
STORED = -1  # a tombstone of the version Redis holds
DELETE = -2  # deleted, no tombstone
MAX_BACKOFF_S = 2.0


class RedisSync:
    def __init__(
        self,
        client: aioredis.Redis,
        flush_interval_s: float,
        max_pending: int = 50_000,
        tombstone_ttl_s: int = 7 * 24 * 3600,
    ) -> None:
        self._client = client
        self._interval = flush_interval_s
        self._max_pending = max_pending
        self._tombstone_ttl_ms = tombstone_ttl_s * 1000
        # customer id -> (profile, alias keys to point at it, when it started waiting)
        self._pending: dict[str, tuple[dict[str, Any], list[tuple[str, str]], float]] = {}
        # customer id -> (alias keys to remove if they still point at it, since when, the
        # version of its tombstone (-1: the version stored), other records' profile keys to
        # bury with it (an erasure's identifier homes), the erasure's time (ms) if Redis must
        # confirm it (None: a drop))
        self._removals: dict[str, tuple[list[tuple[str, str]], float, int, list[str], Any]] = {}
        # erasures whose deletion Redis confirmed: (customer id, marker version, erased at),
        # for the topology to send to the customer stage (the receipt goes out from there)
        self.confirmed: list[tuple[str, int, int]] = []
        # monotonic time of the first profile dropped since the last re-sync began, or None
        self._dropped_since: float | None = None
        self._script = client.register_script(WRITE_IF_NEWER)
        self._bury = client.register_script(BURY)
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
        pending = self._pending
        previous = pending.pop(customer_id, None)  # (``_queue``, inlined: once per profile)
        if previous is None and len(pending) >= self._max_pending:
            self._overflow()
            return
        undo = self.undo.entries if self.undo is not None else None
        if undo is not None:
            undo.append((self._put_back, customer_id, previous))
        merged_aliases = list(previous[1]) if previous else []
        if aliases:  # (most updates change no identifier: None)
            merged_aliases.extend(a for a in aliases if a not in merged_aliases)
        pending[customer_id] = (profile, merged_aliases, self._since(previous))
        if len(pending) >= MAX_BATCH:
            self._wake.set()

    def remove(
        self,
        customer_id: str,
        aliases: list[tuple[str, str]],
        version: int = DELETE,
        homes: list[str] | None = None,
        erased_at: int | None = None,
    ) -> None:
        """Queue the removal of a profile (dropped or erased) and of its alias keys: its key
        is deleted (``DELETE``: a dropped anonymous profile) or becomes a tombstone of
        ``version`` (``STORED``: the version Redis holds), as do the profile keys of ``homes``
        (tombstones of their stored versions). With ``erased_at`` (an erasure), Redis's confirmation is reported
        in ``confirmed`` once the removal is written."""
        previous = self._queue(customer_id)
        removal = self._removals.pop(customer_id, None)
        undo = self.undo.entries if self.undo is not None else None
        if undo is not None:
            undo.append((self._take_back_removal, customer_id, previous, removal))
        gone = list(removal[0]) if removal else []
        gone.extend(a for a in aliases if a not in gone)
        since = min(self._since(previous), removal[1]) if removal else self._since(previous)
        buried = list(removal[3]) if removal else []
        buried.extend(h for h in homes or () if h not in buried)
        if removal is not None:
            version = max(version, removal[2])
            erased_at = erased_at if erased_at is not None else removal[4]
        self._removals[customer_id] = (gone, since, version, buried, erased_at)
        self._wake.set()

    def drop_revoked(self, revoked: set[int], partitions: int) -> int:
        """Drop the profile writes still waiting for the customers of partitions this worker
        no longer owns: their new owner writes them from its table, and a write of ours
        landing after its newer ones (or after an erasure it applied) must not happen.
        Removals stay: a tombstone never brings anything back. Returns how many dropped."""
        gone = [c for c in self._pending if partition_for(c.encode(), partitions) in revoked]
        for customer_id in gone:
            del self._pending[customer_id]
        if gone:
            metrics.REDIS_WRITES.labels("revoked_dropped").inc(len(gone))
        return len(gone)

    @property
    def erasures_waiting(self) -> list[int]:
        """When each erasure still waiting for Redis was requested (ms)."""
        return [r[4] for r in self._removals.values() if r[4] is not None]

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
        ttl = self._tombstone_ttl_ms
        async with self._client.pipeline(transaction=False) as pipe:
            for customer_id, (aliases, _, version, homes, _) in removals:
                buried = [[profile_key(customer_id), version]]
                buried += [[profile_key(home), STORED] for home in homes]
                gone = [alias_key(kind, value) for kind, value in aliases]
                args: list[str | int | bytes] = [customer_id, ttl, orjson.dumps(buried)]
                await self._bury(keys=gone, args=args, client=pipe)
            await pipe.execute()
        for customer_id, removal in removals:
            if self._removals.get(customer_id) is removal:
                del self._removals[customer_id]
            if removal[4] is not None:  # an erasure: Redis confirmed it
                self.confirmed.append((customer_id, removal[2], removal[4]))

    async def _flush_profiles(self) -> None:
        batch = list(self._pending.items())[:MAX_BATCH]
        keys: list[str] = []
        writes: list[Any] = []
        async with self._client.pipeline(transaction=False) as pipe:
            for customer_id, (profile, aliases, _) in batch:
                keys.append(profile_key(customer_id))
                redirect = int("merged_into" in profile)
                # each profile before its aliases (an alias never names a profile not in
                # Redis yet), and no alias for a profile a tombstone refused
                names = [alias_key(kind, value) for kind, value in aliases]
                writes.append((profile["version"], redirect, _strings(profile), names))
            await self._script(keys=keys, args=[orjson.dumps(writes), PROFILE_PREFIX], client=pipe)
            results = await pipe.execute()
        for customer_id, entry in batch:
            if self._pending.get(customer_id) is entry:
                del self._pending[customer_id]
        written = int(results[0])
        metrics.REDIS_WRITES.labels("written").inc(written)
        metrics.REDIS_WRITES.labels("older_version_kept").inc(len(keys) - written)

    def _observe(self) -> None:
        metrics.REDIS_SYNC_PENDING.set(self.pending)
        erasures = self.erasures_waiting
        metrics.ERASURES_PENDING.set(len(erasures))
        oldest = (time.time() * 1000 - min(erasures)) / 1000 if erasures else 0.0
        metrics.ERASURE_PENDING_AGE.set(max(oldest, 0.0))
        waiting = [entry[2] for entry in self._pending.values()]
        waiting.extend(entry[1] for entry in self._removals.values())
        if self._dropped_since is not None:  # dropped profiles are waiting for the re-sync
            waiting.append(self._dropped_since)
        metrics.REDIS_SYNC_LAG.set(time.monotonic() - min(waiting) if waiting else 0)


def _strings(profile: dict[str, Any]) -> dict[str, str]:
    """The hash's fields as Redis stores them: strings, None as empty (as redis-py encodes)."""
    return {k: v if type(v) is str else "" if v is None else str(v) for k, v in profile.items()}
