"""Erasure end to end: receipt, nothing left in Redis or the tables, also after a restart."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import orjson
import pytest
import redis

from touchstream.domain.identity import home_of
from touchstream.runtime.kafka_io import produce_inputs, read_topic
from touchstream.runtime.stack import Stack, WorkerProcess
from touchstream.simulator.factory import event, purchase

pytestmark = pytest.mark.integration

CARD = {"loyalty_id": "LC-8080"}
WEB = {"device_id": "web-8080", "email": "eve@example.com"}


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


def traces(client: redis.Redis, homes: list[str]) -> list[str]:
    found = [k for k in client.scan_iter("ts:profile:*") if k.split(":", 2)[2] in homes]
    found += [k for k in client.scan_iter("ts:alias:*") if client.get(k) in homes]
    return found + [k for k in client.scan_iter("*8080*")]


def test_an_erased_shopper_leaves_nothing_behind_and_comes_back_as_a_stranger(
    stack: Stack,
) -> None:
    worker = stack.start_worker(name="first")
    worker.wait_ready()
    source = stack.settings["topic_prefix"] + "touchpoints"
    cart = {"cart_id": "C-80", "sku": "SKU-8", "quantity": 1, "unit_price_minor": 3_000}
    before = [
        event("identify", {**WEB, **CARD}),
        purchase(CARD, "O-80", 12_000),
        event("add_to_cart", WEB, dict(cart, currency="EUR")),
    ]
    produce_inputs(stack.broker.bootstrap, source, [(b"eve", e) for e in before])
    root = home_of("loyalty_id", "LC-8080")
    body = wait_status(worker, f"/customers/{root}", 200)
    deadline = time.monotonic() + 30
    while orjson.loads(body)["open_cart_value_minor"] != 3_000 and time.monotonic() < deadline:
        body = wait_status(worker, f"/customers/{root}", 200)
    assert orjson.loads(body)["points"] == 120

    request = event("erasure_requested", {"email": "Eve@Example.com"}, {"request_id": "DSR-1"})
    produce_inputs(stack.broker.bootstrap, source, [(b"eve", request)])

    receipts = read_topic(
        stack.broker.bootstrap, stack.settings["topic_prefix"] + "privacy.receipts", expect=1
    )
    assert len(receipts) == 1
    receipt = receipts[0].json()
    assert receipt["request_id"] == "DSR-1" and receipt["customer_id"] == root
    assert receipt["removed"]["identifiers"] == {"loyalty_id": 1, "email": 1, "device_id": 1}
    assert receipt["removed"]["orders"] == 1 and receipt["removed"]["carts"] == 1
    assert "eve@example.com" not in receipts[0].value.decode().lower()

    profiles = [k for k in receipt["removed"]["redis_keys"] if k.startswith("ts:profile:")]
    homes = [k.split(":", 2)[2] for k in profiles]
    assert {root, home_of("device_id", "web-8080")} < set(homes)  # and the email's home
    client = redis.Redis.from_url(stack.redis.url(stack.redis_db), decode_responses=True)
    wait_status(worker, f"/customers/{root}", 404)
    wait_status(worker, lookup("email", "eve@example.com"), 404)
    wait_status(worker, lookup("device_id", "web-8080"), 404)
    time.sleep(1.0)  # identity messages of the erasure travel a hop or two more
    assert traces(client, homes) == []

    # a fresh worker restores the tables from the changelogs and rewrites Redis from them
    worker.stop()
    restarted = stack.start_worker(name="second")
    restarted.wait_ready()
    deadline = time.monotonic() + 30
    while restarted.metrics().get("touchstream_redis_resyncs_total", 0) < 1:
        assert time.monotonic() < deadline, "the restarted worker never re-synced Redis"
        time.sleep(0.2)
    assert restarted.get(f"/customers/{root}")[0] == 404
    assert traces(client, homes) == []

    # her card at a till next week: a new customer, nothing of the old one
    produce_inputs(
        stack.broker.bootstrap, source, [(b"eve", event("page_view", CARD, {"url": "u"}))]
    )
    fresh = orjson.loads(wait_status(restarted, f"/customers/{root}", 200))
    assert fresh["points"] == 0 and fresh["orders"] == 0 and fresh["open_cart_value_minor"] == 0
    assert restarted.get(lookup("email", "eve@example.com"))[0] == 404
