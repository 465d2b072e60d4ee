"""The profiles waiting for Redis stay under the cap through an outage of any length; beyond it
they are dropped for a re-sync, erasures are kept, and the lag the alert watches stays up."""

from __future__ import annotations

from typing import Any

from touchstream import metrics
from touchstream.serving.redis_sync import RedisSync


class NoRedis:  # nothing is flushed here: only what waits is looked at
    def register_script(self, script: str) -> Any:
        return None


def profile(cid: str, version: int = 1) -> dict[str, Any]:
    return {"customer_id": cid, "version": version}


def test_beyond_the_cap_profiles_are_dropped_for_a_resync_and_erasures_kept() -> None:
    sync = RedisSync(NoRedis(), 0.02, max_pending=3)  # type: ignore[arg-type]
    overflows = metrics.REDIS_SYNC_OVERFLOWS._value.get()
    sync.remove("erased-1", [("email", "x")])
    for i in range(3):
        sync.submit(f"c{i}", profile(f"c{i}"))
    sync.submit("c0", profile("c0", 2))  # the same customer again: latest wins, no overflow
    assert sync.pending == 4 and not sync.resync_needed
    sync.submit("c3", profile("c3"))  # one customer more than the cap
    assert sync.resync_needed
    assert metrics.REDIS_SYNC_OVERFLOWS._value.get() == overflows + 1
    assert sync.pending == 1  # the erasure, never dropped
    sync.submit("c4", profile("c4"))  # dropped too: the re-sync writes it from the table
    sync.remove("erased-2", [])
    assert sync.pending == 2
    sync._observe()
    assert metrics.REDIS_SYNC_LAG._value.get() > 0  # TouchstreamRedisSyncFailing sees it
    sync.begin_resync()
    sync.submit("c4", profile("c4"))
    assert not sync.resync_needed and sync.pending == 3


def test_a_customer_created_again_after_its_removal_keeps_both() -> None:
    sync = RedisSync(NoRedis(), 0.02, max_pending=10)  # type: ignore[arg-type]
    sync.submit("c1", profile("c1", 7))
    sync.remove("c1", [("email", "x")])
    sync.submit("c1", profile("c1", 1))  # numbered from 1 again: the removal must land first
    assert list(sync._removals) == ["c1"]
    assert sync._pending["c1"][0]["version"] == 1


def test_writes_waiting_for_revoked_partitions_are_dropped_removals_kept() -> None:
    """A worker losing partitions in a rebalance must not write their profiles late, after
    their new owner (which may have erased one): they go, and the removals stay."""
    from touchstream.streams.timer_index import partition_for

    sync = RedisSync(NoRedis(), 0.02)  # type: ignore[arg-type]
    customers = [f"c{i}" for i in range(40)]
    for cid in customers:
        sync.submit(cid, profile(cid))
    sync.remove("erased-1", [("email", "x")], version=3, erased_at=1)
    revoked = {0, 2}
    gone = [c for c in customers if partition_for(c.encode(), 4) in revoked]
    assert 0 < len(gone) < len(customers)
    assert sync.drop_revoked(revoked, 4) == len(gone)
    assert sync.pending == len(customers) - len(gone) + 1
    assert sync.erasures_waiting == [1]
