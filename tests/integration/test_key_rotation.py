"""HMAC key rotation on Apache Kafka and a real Redis (issue 28): after `touchstream keys
rotate` and a restart on the new key set, the same email and phone find the same customers by
lookup, and a new purchase under the new key is applied to the same profile in the stream (one
profile, both orders), not to a new one; no alias under the old key is left in Redis."""

from __future__ import annotations

import subprocess
import sys
import time
from urllib.parse import urlencode

import pytest
import redis

from touchstream.domain.identity import home_of
from touchstream.runtime.kafka_io import produce, read_topic
from touchstream.runtime.stack import Stack, worker_env
from touchstream.simulator.factory import purchase

pytestmark = pytest.mark.integration

NEW_KEY = "new-hmac-key-after-rotation-0123456789"
T0 = int(time.time() * 1000) - 3_600_000


def topic(stack: Stack, name: str) -> str:
    return stack.settings["topic_prefix"] + name


def lookup(kind: str, value: str) -> str:
    return "/customers/lookup?" + urlencode({"kind": kind, "value": value})


def send(stack: Stack, events: list[dict[str, object]]) -> None:
    produce(
        stack.broker.bootstrap,
        topic(stack, "touchpoints"),
        [(str(e["event_id"]).encode(), e) for e in events],
    )


def rotate(stack: Stack) -> subprocess.CompletedProcess[str]:
    env = worker_env(
        stack.broker.url,
        stack.redis.url(stack.redis_db),
        0,
        str(stack.workdir / "rotate"),
        embedded_broker=stack.broker.kind == "embedded",
        **stack.settings,
        hmac_keys=f"v2:{NEW_KEY}",  # version 1: the development secret the workers ran on
    )
    return subprocess.run(
        [sys.executable, "-m", "touchstream", "keys", "rotate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_after_rotation_the_same_email_finds_the_same_customer_in_lookups_and_the_stream(
    stack: Stack,
) -> None:
    old = stack.start_worker()
    old.wait_ready()
    ann = {"email": "Ann.Lee@example.com"}
    bo = {"loyalty_id": "LC-2002", "phone": "+49 170 1234567"}
    send(stack, [purchase(ann, "W-1", 12_000, channel="web", occurred_at=T0)])
    send(stack, [purchase(bo, "S-1", 5_500, occurred_at=T0 + 60_000)])
    before = old.poll(lookup("email", "ann.lee@example.com"), lambda v: v["orders"] == 1)
    bo_id = home_of("loyalty_id", "LC-2002")
    old.poll(lookup("phone", "+491701234567"), lambda v: v["customer_id"] == bo_id)

    result = rotate(stack)

    assert result.returncode == 0, result.stderr
    assert "aliases moved to v2: 2 (rekey records sent for 2 customers)" in result.stdout
    old.stop()
    new = stack.start_worker(hmac_keys=f"v2:{NEW_KEY}")
    new.wait_ready()
    later = purchase(ann, "W-2", 3_000, channel="web", occurred_at=T0 + 120_000)
    send(stack, [later])

    view = new.poll(
        lookup("email", " ANN.LEE@example.com"),
        lambda v: v["orders"] == 2 and v["customer_id"] == before["customer_id"],
        timeout_s=60,
    )
    assert view["qualifying_spend_minor"] == 15_000
    new.poll(lookup("phone", "+49 170 1234567"), lambda v: v["customer_id"] == bo_id)
    updates = read_topic(stack.broker.bootstrap, topic(stack, "profiles.updates"))
    applied = [u.json() for u in updates if later["event_id"] in u.json().get("event_ids", ())]
    assert applied and {u["customer_id"] for u in applied} == {before["customer_id"]}
    client = redis.Redis.from_url(stack.redis.url(stack.redis_db), decode_responses=True)
    hashed = [*client.scan_iter("ts:alias:email:*"), *client.scan_iter("ts:alias:phone:*")]
    assert hashed and all(k.split(":", 3)[3].startswith("v2:") for k in hashed)
    live = [k for k in client.scan_iter("ts:profile:*") if not client.hget(k, "merged_into")]
    assert sorted(live) == sorted(f"ts:profile:{c}" for c in (before["customer_id"], bo_id))
