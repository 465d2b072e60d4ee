"""Erasure end to end on Apache Kafka and a real Redis: the receipt holds counts and kinds,
never an identifier, and goes out only once Redis confirmed the deletion; Redis keeps
versioned tombstones; nothing comes back after a restart, a Redis outage or a rebalance; an
event from before the erasure is dropped whenever it arrives; the erased identifiers stay
suppressed until the shopper signs up again."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
import redis

from touchstream.config.settings import DEV_HMAC_SECRET
from touchstream.domain.identity import IdentityNormaliser, home_of
from touchstream.runtime.embedded import start_redis
from touchstream.runtime.kafka_io import Out, produce_inputs, read_topic
from touchstream.runtime.stack import Stack, WorkerProcess
from touchstream.simulator.factory import event, purchase

pytestmark = pytest.mark.integration

CARD = {"loyalty_id": "LC-8080"}
WEB = {"device_id": "web-8080", "email": "eve@example.com"}
EMAIL_HMAC = IdentityNormaliser(DEV_HMAC_SECRET, (), "").normalise({"email": "eve@example.com"})[
    "email"
]
ROOT = home_of("loyalty_id", "LC-8080")
HOMES = [ROOT, home_of("device_id", "web-8080"), home_of("email", EMAIL_HMAC)]


def lookup(kind: str, value: str) -> str:
    return "/customers/lookup?" + urlencode({"kind": kind, "value": value})


def wait_status(worker: WorkerProcess, path: str, status: int, timeout_s: float = 30) -> bytes:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got, body = worker.get(path)
        if got == status:
            return body
        time.sleep(0.2)
    raise AssertionError(f"{path} did not answer {status}")


def wait_metric(
    workers: list[WorkerProcess], name: str, done: Callable[[float], bool], timeout_s: float = 60
) -> float:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = sum(w.metrics().get(name, 0.0) for w in workers if w.child.alive())
        except OSError:  # not listening yet
            value = float("nan")
        if done(value):
            return value
        assert time.monotonic() < deadline, f"{name} stayed at {value}"
        time.sleep(0.2)


def traces(client: redis.Redis) -> list[str]:
    """Every Redis key still holding something of her: a profile (a tombstone holds only its
    version), an alias naming one of her homes, anything naming her ids."""
    found = []
    for home in HOMES:
        held = client.hgetall(f"ts:profile:{home}")
        if held and set(held) != {"erased", "version"}:
            found.append(f"ts:profile:{home} {held}")
    found += [k for k in client.scan_iter("ts:alias:*") if client.get(k) in HOMES]
    return found + [k for k in client.scan_iter("*8080*")] + list(client.scan_iter("*eve*"))


def assert_no_identifier(receipt: Out) -> None:
    text = (receipt.value or b"").decode().lower()
    for value in ("lc-8080", "web-8080", "eve@example.com", EMAIL_HMAC.lower(), *HOMES[1:]):
        assert value not in text, f"the receipt holds {value}: {text}"


def shopper(stack: Stack, worker: WorkerProcess) -> str:
    """Eve: card, web device and email linked, an order and an open cart."""
    source = stack.settings["topic_prefix"] + "touchpoints"
    cart = {"cart_id": "C-80", "sku": "SKU-8", "quantity": 1, "unit_price_minor": 3_000}
    before = [
        event("identify", {**WEB, **CARD}),
        purchase(CARD, "O-80", 12_000),
        event("add_to_cart", WEB, dict(cart, currency="EUR")),
    ]
    produce_inputs(stack.broker.bootstrap, source, [(b"eve", e) for e in before])
    worker.poll(
        f"/customers/{ROOT}",
        lambda v: v.get("touchpoints") == 3 and v.get("points") == 120,
    )
    return source


def erase(
    stack: Stack, source: str, request_id: str, occurred_at: int | None = None
) -> dict[str, Any]:
    props = {"request_id": request_id}
    request = event(
        "erasure_requested", {"email": "Eve@Example.com"}, props, occurred_at=occurred_at
    )
    produce_inputs(stack.broker.bootstrap, source, [(b"eve", request)])
    return request


def test_an_erased_shopper_leaves_nothing_behind_and_stays_erased_until_she_signs_up_again(
    stack: Stack,
) -> None:
    worker = stack.start_worker(name="first")
    worker.wait_ready()
    source = shopper(stack, worker)
    # the requester's clock runs a minute ahead of ours (within the tolerance)
    request = erase(stack, source, "DSR-1", occurred_at=int(time.time() * 1000) + 60_000)

    receipts = read_topic(
        stack.broker.bootstrap, stack.settings["topic_prefix"] + "privacy.receipts", expect=1
    )
    assert len(receipts) == 1
    receipt = receipts[0].json()
    assert receipt["request_id"] == "DSR-1" and receipt["customer_id"] == ROOT
    # counts and the kinds removed, never an identifier (raw, hashed, or an identifier's home)
    assert receipt["removed"]["identifiers"] == {"loyalty_id": 1, "email": 1, "device_id": 1}
    assert receipt["kinds_removed"] == ["device_id", "email", "loyalty_id"]
    assert receipt["removed"]["orders"] == 1 and receipt["removed"]["carts"] == 1
    assert receipt["removed"]["redis_keys"] == 6  # 3 profiles, 3 alias keys
    assert receipt["requested_at"] <= receipt["completed_at"]
    assert_no_identifier(receipts[0])
    assert worker.metrics()["touchstream_erasure_latency_seconds_count"] == 1

    client = redis.Redis.from_url(stack.redis.url(stack.redis_db), decode_responses=True)
    wait_status(worker, f"/customers/{ROOT}", 404)
    wait_status(worker, lookup("email", "eve@example.com"), 404)
    wait_status(worker, lookup("device_id", "web-8080"), 404)
    # the deletion Redis confirmed before the receipt: versioned tombstones, no data
    assert client.hgetall(f"ts:profile:{ROOT}")["erased"] == "1"
    time.sleep(1.0)  # identity messages of the erasure travel a hop or two more
    assert traces(client) == []

    # a fresh worker restores the tables from the changelogs and rewrites Redis from them
    worker.stop()
    restarted = stack.start_worker(name="second")
    restarted.wait_ready()
    deadline = time.monotonic() + 30
    while restarted.metrics().get("touchstream_redis_resyncs_total", 0) < 1:
        assert time.monotonic() < deadline, "the restarted worker never re-synced Redis"
        time.sleep(0.2)
    assert restarted.get(f"/customers/{ROOT}")[0] == 404
    assert traces(client) == []

    # her card at a till next week: suppressed, no profile
    name = "touchstream_erasure_drops_total"
    dropped = restarted.metrics().get(name, 0.0)
    produce_inputs(
        stack.broker.bootstrap, source, [(b"eve", event("page_view", CARD, {"url": "u"}))]
    )
    wait_metric([restarted], name, lambda v: v > dropped)
    assert restarted.get(f"/customers/{ROOT}")[0] == 404
    # she signs up again: a new customer, nothing of the old one
    produce_inputs(stack.broker.bootstrap, source, [(b"eve", event("loyalty_signup", CARD))])
    fresh = orjson.loads(wait_status(restarted, f"/customers/{ROOT}", 200))
    assert fresh["orders"] == 0 and fresh["open_cart_value_minor"] == 0
    assert fresh["points"] == 100  # the sign-up bonus only
    assert restarted.get(lookup("email", "eve@example.com"))[0] == 404
    # an offline till's order from before the erasure, arriving now: dropped
    old = int(time.time() * 1000) - 3_600_000
    till = purchase(CARD, "O-81", 50_000, occurred_at=old)
    dropped = restarted.metrics().get(name, 0.0)
    produce_inputs(stack.broker.bootstrap, source, [(b"eve", till)])
    wait_metric([restarted], name, lambda v: v > dropped)
    assert orjson.loads(restarted.get(f"/customers/{ROOT}")[1])["orders"] == 0
    # the same request again (a producer's retry): dated after the erasure took effect, so
    # only its id tells it from a new request; it erases nothing and sends no second receipt
    skipped = "touchstream_duplicates_skipped_total"
    before = restarted.metrics().get(skipped, 0.0)
    produce_inputs(stack.broker.bootstrap, source, [(b"eve", request)])
    wait_metric([restarted], skipped, lambda v: v > before)
    assert orjson.loads(restarted.get(f"/customers/{ROOT}")[1])["points"] == 100
    receipts = read_topic(
        stack.broker.bootstrap, stack.settings["topic_prefix"] + "privacy.receipts", expect=1
    )
    assert [r.json()["request_id"] for r in receipts] == ["DSR-1"]


class OwnRedis:
    """A Redis of the test's own, which it can freeze (SIGSTOP: it keeps its data and answers
    nothing) and thaw; stopped, thawed first, when the test ends."""

    def __init__(self, stack: Stack) -> None:
        self.server = start_redis(log_path=stack.workdir / "own-redis.log")
        stack.redis, stack.redis_db = self.server, 0
        self.frozen = False

    def freeze(self) -> None:
        os.kill(self.server.child.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        os.kill(self.server.child.proc.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        if self.frozen:
            self.thaw()
        self.server.stop()


def erased_while_frozen(
    stack: Stack, own: OwnRedis, request_id: str
) -> tuple[WorkerProcess, str, str]:
    """Eve, then Redis frozen, then her erasure, waiting for Redis: the worker, the input
    topic and the receipts topic."""
    worker = stack.start_worker(name="first")
    worker.wait_ready()
    source = shopper(stack, worker)
    own.freeze()
    erase(stack, source, request_id)
    wait_metric([worker], "touchstream_erasures_pending", lambda v: v == 1)
    return worker, source, stack.settings["topic_prefix"] + "privacy.receipts"


def test_an_erasure_while_redis_is_down_waits_durably_and_its_receipt_follows_redis(
    stack: Stack,
) -> None:
    own = OwnRedis(stack)
    try:
        worker, _, receipts_topic = erased_while_frozen(stack, own, "DSR-2")
        assert worker.metrics()["touchstream_erasure_pending_age_seconds"] > 0
        # no receipt while Redis has not confirmed the deletion
        assert read_topic(stack.broker.bootstrap, receipts_topic, settle_s=2.0) == []

        # a restart while Redis is down: the erasure waits in the changelogged marker
        worker.stop()
        second = stack.start_worker(name="second")
        # partitions assigned, tables restored (/readyz waits for Redis too)
        wait_metric([second], "touchstream_ready", lambda v: v == 1)
        assert read_topic(stack.broker.bootstrap, receipts_topic, settle_s=2.0) == []

        own.thaw()
        (receipt,) = read_topic(stack.broker.bootstrap, receipts_topic, expect=1, settle_s=2.0)
        assert receipt.json()["request_id"] == "DSR-2"
        assert receipt.json()["removed"]["orders"] == 1
        assert_no_identifier(receipt)
        client = redis.Redis.from_url(own.server.url(0), decode_responses=True)
        assert client.hgetall(f"ts:profile:{ROOT}")["erased"] == "1"
        wait_status(second, f"/customers/{ROOT}", 404)
        wait_status(second, lookup("device_id", "web-8080"), 404)
        wait_metric([second], "touchstream_erasures_pending", lambda v: v == 0)
        assert traces(client) == []
    finally:
        own.stop()


def test_an_erasure_during_a_rebalance_stays_done(stack: Stack) -> None:
    first = stack.start_worker(name="first")
    first.wait_ready()
    source = shopper(stack, first)
    # a second worker joins as the erasure arrives, then the first one leaves
    second = stack.start_worker(name="second")
    erase(stack, source, "DSR-3")
    second.wait_ready()
    receipts_topic = stack.settings["topic_prefix"] + "privacy.receipts"
    receipts = read_topic(stack.broker.bootstrap, receipts_topic, expect=1, settle_s=2.0)
    first.stop()
    wait_status(second, f"/customers/{ROOT}", 404, timeout_s=90)
    # at least once, each the same receipt, none naming her
    assert receipts and {r.json()["request_id"] for r in receipts} == {"DSR-3"}
    for receipt in receipts:
        assert_no_identifier(receipt)
    # her card seen again once the partitions moved: suppressed
    dropped = second.metrics().get("touchstream_erasure_drops_total", 0.0)
    produce_inputs(
        stack.broker.bootstrap, source, [(b"eve", event("page_view", CARD, {"url": "u"}))]
    )
    name = "touchstream_erasure_drops_total"
    wait_metric([second], name, lambda v: v > dropped, timeout_s=90)
    client = redis.Redis.from_url(stack.redis.url(stack.redis_db), decode_responses=True)
    time.sleep(1.0)  # identity messages of the erasure travel a hop or two more
    assert traces(client) == []
    assert second.get(f"/customers/{ROOT}")[0] == 404
    assert second.get(lookup("email", "eve@example.com"))[0] == 404
