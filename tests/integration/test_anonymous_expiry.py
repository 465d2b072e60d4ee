"""Anonymous-only profiles idle for the TTL are dropped everywhere, in event time."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import orjson
import pytest
import redis

from touchstream.domain.clock import MS_PER_DAY
from touchstream.domain.identity import home_of
from touchstream.runtime.kafka_io import produce
from touchstream.runtime.stack import Stack
from touchstream.simulator.factory import event
from touchstream.streams.timer_index import partition_for

pytestmark = pytest.mark.integration

NOW = int(time.time() * 1000)
OLD = NOW - 40 * MS_PER_DAY  # the default TTL is 30 days


def lookup(kind: str, value: str) -> str:
    return "/customers/lookup?" + urlencode({"kind": kind, "value": value})


def _served_as(worker, kind: str, value: str, customer_id: str | None) -> bool:
    status, body = worker.get(lookup(kind, value))
    return status == 200 and (
        customer_id is None or orjson.loads(body)["customer_id"] == customer_id
    )


def wait(check, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def test_idle_anonymous_profiles_are_dropped_and_known_customers_kept(stack: Stack) -> None:
    worker = stack.start_worker()
    worker.wait_ready()
    source = stack.settings["topic_prefix"] + "touchpoints"
    view = {"url": "https://shop.example.com/"}
    old = [
        event("page_view", {"anonymous_id": "anon-lone"}, view, occurred_at=OLD),
        # two anonymous ids of one browser, linked: a profile plus a redirect
        event("page_view", {"device_id": "dev-7", "anonymous_id": "anon-7"}, view, occurred_at=OLD),
        # an email makes a profile known: never dropped, however idle
        event(
            "page_view",
            {"email": "kim@example.com", "anonymous_id": "anon-k"},
            view,
            occurred_at=OLD,
        ),
    ]
    produce(stack.broker.bootstrap, source, [(e["event_id"].encode(), e) for e in old])
    browser = home_of("device_id", "dev-7")  # the device outranks the anonymous id
    for kind, value, customer_id in (
        ("anonymous_id", "anon-lone", home_of("anonymous_id", "anon-lone")),
        ("anonymous_id", "anon-7", browser),  # linked, not just seen
        ("email", "kim@example.com", None),
    ):
        wait(lambda k=kind, v=value, c=customer_id: _served_as(worker, k, v, c))
    client = redis.Redis.from_url(stack.redis.url(stack.redis_db), decode_responses=True)
    assert client.exists("ts:alias:anonymous_id:anon-7") and client.exists(
        "ts:alias:device_id:dev-7"
    )

    # today's traffic of other shoppers moves every partition's event-time clock past the TTL
    today = [
        event("page_view", {"customer_id": f"crm-{n}"}, view, occurred_at=NOW) for n in range(40)
    ]
    covered = {partition_for(f"crm-{n}".encode(), 4) for n in range(40)}
    assert covered == {0, 1, 2, 3}
    produce(stack.broker.bootstrap, source, [(e["event_id"].encode(), e) for e in today])

    wait(lambda: worker.get(lookup("anonymous_id", "anon-lone"))[0] == 404)
    wait(lambda: worker.get(lookup("device_id", "dev-7"))[0] == 404)
    wait(lambda: worker.get(lookup("anonymous_id", "anon-7"))[0] == 404)
    wait(lambda: not client.exists(f"ts:profile:{home_of('anonymous_id', 'anon-7')}"))
    assert not client.exists(f"ts:profile:{home_of('anonymous_id', 'anon-lone')}")
    assert not client.keys("ts:alias:*anon-7") and not client.keys("ts:alias:device_id:*")
    assert worker.get(lookup("email", "kim@example.com"))[0] == 200
    assert worker.get(lookup("anonymous_id", "anon-k"))[0] == 200
    assert worker.metrics()["touchstream_anonymous_profiles_expired_total"] == 2

    # the same browser back today starts afresh: nothing of the old profile comes back
    again = event("page_view", {"device_id": "dev-7"}, view, occurred_at=NOW)
    produce(stack.broker.bootstrap, source, [(b"dev-7", again)])
    wait(lambda: worker.get(lookup("device_id", "dev-7"))[0] == 200)
    _, body = worker.get(lookup("device_id", "dev-7"))
    assert b'"version":1' in body.replace(b" ", b"")
