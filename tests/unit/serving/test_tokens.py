"""Bearer tokens of the customer API: hashing, scopes, the cached token set, the rate limit."""

from __future__ import annotations

import hashlib

import pytest

from touchstream.serving import tokens


def records(*pairs: tuple[str, tokens.TokenRecord]) -> dict[str, tokens.TokenRecord]:
    return dict(pairs)


def test_a_token_is_stored_only_as_its_sha256_and_verifies():
    token, record = tokens.new_token("pos-checkout", [tokens.LOOKUP])

    assert token.startswith("ts_") and record.id in token
    assert record.sha256 == hashlib.sha256(token.encode()).hexdigest()
    stored = record.stored().decode()
    # the secret is everything after the id: base64url, so it may hold "_" itself (its last
    # "_"-piece can be a letter any JSON holds, which made this check fail about 1 run in 250)
    secret = token.split("_", 2)[2]
    assert token not in stored and secret not in stored
    assert tokens.verify(token, {record.id: record}) == record


def test_two_tokens_are_never_alike_and_carry_256_random_bits():
    a, ra = tokens.new_token("a", [tokens.ADMIN])
    b, rb = tokens.new_token("a", [tokens.ADMIN])

    assert a != b and ra.id != rb.id
    assert len(a.split("_", 2)[2]) >= 43  # 32 bytes, base64url


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "ts_",
        "not-a-token",
        "ts_000000000000_guess",
    ],
)
def test_an_unknown_or_forged_token_is_refused(presented):
    _, record = tokens.new_token("crm", [tokens.PROFILE_READ])

    assert tokens.verify(presented, {record.id: record}) is None


def test_a_token_with_the_right_id_but_another_secret_is_refused():
    token, record = tokens.new_token("crm", [tokens.PROFILE_READ])
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")

    assert tokens.verify(forged, {record.id: record}) is None


def test_a_revoked_token_no_longer_verifies():
    token, record = tokens.new_token("crm", [tokens.PROFILE_READ])
    assert tokens.verify(token, {record.id: record}) == record

    assert tokens.verify(token, {}) is None


def test_scopes_and_admin_holds_them_all():
    _, lookup = tokens.new_token("pos", [tokens.LOOKUP])
    _, admin = tokens.new_token("ops", [tokens.ADMIN])

    assert lookup.allows(tokens.LOOKUP) and not lookup.allows(tokens.PROFILE_READ)
    assert all(admin.allows(s) for s in tokens.SCOPES)


@pytest.mark.parametrize("scopes", [[], ["read"], ["lookup", "everything"]])
def test_unknown_or_missing_scopes_are_refused(scopes):
    with pytest.raises(tokens.TokenError):
        tokens.new_token("x", scopes)


def test_a_stored_record_round_trips_and_lists_without_its_hash():
    _, record = tokens.new_token("crm", [tokens.PROFILE_READ, tokens.LOOKUP])

    again = tokens.TokenRecord.load(record.id, record.stored())

    assert again == record
    assert "sha256" not in record.public() and record.public()["name"] == "crm"


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("Basic abc", None), ("Bearer ", None), ("bearer ts_x", "ts_x")],
)
def test_bearer_header(header, expected):
    assert tokens.bearer(header) == expected


class Store:
    """The token set in Redis as a TokenCache reads it, counting the reads."""

    def __init__(self, *known: tokens.TokenRecord) -> None:
        self.records = {r.id: r for r in known}
        self.reads = 0

    async def load(self) -> dict[str, tokens.TokenRecord]:
        self.reads += 1
        return dict(self.records)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_token_set_is_read_again_once_the_cache_time_has_passed():
    clock = Clock()
    token, record = tokens.new_token("crm", [tokens.PROFILE_READ])
    store = Store(record)

    cache = tokens.TokenCache(store.load, ttl_s=5.0, clock=clock)
    assert tokens.verify(token, await cache.records(record.id)) == record
    del store.records[record.id]  # revoked
    clock.now += 4.9
    assert tokens.verify(token, await cache.records(record.id)) == record  # the copy of 4.9 s ago
    assert store.reads == 1
    clock.now += 0.1
    assert tokens.verify(token, await cache.records(record.id)) is None  # refused at 5 s
    assert store.reads == 2


async def test_a_stale_token_set_is_not_trusted_when_redis_cannot_be_read():
    clock = Clock()
    calls = 0

    async def load() -> dict[str, tokens.TokenRecord]:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise ConnectionError("redis down")
        return {}

    cache = tokens.TokenCache(load, ttl_s=1.0, clock=clock)
    await cache.records()
    clock.now += 1.0
    with pytest.raises(ConnectionError):
        await cache.records()


def test_the_rate_limit_allows_the_burst_then_asks_to_retry_after_the_refill():
    clock = Clock()
    limiter = tokens.RateLimiter(rate_per_s=2.0, burst=3, clock=clock)

    assert [limiter.take("t1") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("t1")
    assert wait == pytest.approx(0.5)
    assert tokens.retry_after(wait) == "1"
    assert limiter.take("t2") == 0.0  # per token
    clock.now += 0.5
    assert limiter.take("t1") == 0.0
    assert limiter.take("t1") > 0


def test_the_rate_limit_never_holds_more_than_the_burst():
    clock = Clock()
    limiter = tokens.RateLimiter(rate_per_s=10.0, burst=2, clock=clock)
    limiter.take("t")
    clock.now += 3600

    assert [limiter.take("t") > 0 for _ in range(3)] == [False, False, True]


def test_retry_after_is_whole_seconds_rounded_up():
    assert [tokens.retry_after(w) for w in (0.01, 1.0, 1.2, 59.9)] == ["1", "1", "2", "60"]


def test_buckets_of_revoked_tokens_are_forgotten():
    limiter = tokens.RateLimiter(rate_per_s=1.0, burst=1)
    limiter.take("gone")
    limiter.take("kept")

    limiter.forget_except(["kept"])

    assert limiter.take("gone") == 0.0  # a fresh bucket: the old one is gone


async def test_a_token_issued_after_the_last_read_works_without_waiting_for_the_cache():
    clock = Clock()
    store = Store()
    cache = tokens.TokenCache(store.load, ttl_s=60.0, clock=clock)
    await cache.records()
    token, record = tokens.new_token("new", [tokens.LOOKUP])
    store.records[record.id] = record
    clock.now += tokens.MISS_RELOAD_S

    assert tokens.verify(token, await cache.records(record.id)) == record
    # unknown ids read Redis at most once a MISS_RELOAD_S, however many arrive
    for _ in range(100):
        await cache.records("000000000000")
    assert store.reads == 2
