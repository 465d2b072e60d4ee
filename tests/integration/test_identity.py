"""Identity resolution end to end: one shopper across web, login and store is one profile."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import pytest
import redis

from touchstream.domain.identity import home_of
from touchstream.runtime.kafka_io import produce, read_topic
from touchstream.runtime.stack import Stack
from touchstream.simulator.factory import event, purchase

pytestmark = pytest.mark.integration

T0 = int(time.time() * 1000) - 3_600_000


def topic(stack: Stack, name: str) -> str:
    return stack.settings["topic_prefix"] + name


def send(stack: Stack, events: list[dict[str, Any]]) -> None:
    # keyed by event id: the events of one shopper land on different inbound partitions
    produce(
        stack.broker.bootstrap,
        topic(stack, "touchpoints"),
        [(e["event_id"].encode(), e) for e in events],
    )


def lookup(kind: str, value: str) -> str:
    return "/customers/lookup?" + urlencode({"kind": kind, "value": value})


def at(minutes: int) -> int:
    return T0 + minutes * 60_000


def test_anonymous_browsing_login_and_a_store_purchase_are_one_customer(stack: Stack) -> None:
    worker = stack.start_worker()
    worker.wait_ready()
    anon = {"anonymous_id": "anon-5f2c"}
    cart = {"cart_id": "C-9", "currency": "EUR", "unit_price_minor": 2_000}
    send(
        stack,
        [
            event("page_view", anon, {"url": "https://shop.example.com/"}, occurred_at=at(0)),
            event("add_to_cart", anon, dict(cart, sku="SKU-1", quantity=2), occurred_at=at(1)),
            # login: the same browser now carries the shopper's email (mixed case, spaces)
            event(
                "page_view",
                {**anon, "email": " Ann.Lee@Example.com "},
                {"url": "https://shop.example.com/account"},
                occurred_at=at(2),
            ),
            # the CRM had linked her loyalty card to that email
            event(
                "identify",
                {"email": "ann.lee@example.com", "loyalty_id": "LC-4471"},
                occurred_at=at(3),
                channel="call_center",
            ),
        ],
    )
    survivor = home_of("loyalty_id", "LC-4471")
    worker.poll(lookup("anonymous_id", "anon-5f2c"), lambda v: v["customer_id"] == survivor)
    # later she pays in a store with her card; the web cart was for the same goods
    send(stack, [purchase({"loyalty_id": "LC-4471"}, "POS-1", 4_000, occurred_at=at(30))])

    view = worker.poll(lookup("email", "ANN.LEE@example.com"), lambda v: v["orders"] == 1)
    assert view["customer_id"] == survivor
    assert view["points"] == 40
    assert view["open_cart_value_minor"] == 0  # the anonymous cart followed her and was closed
    by_card = worker.poll(lookup("loyalty_id", "LC-4471"), lambda v: True)
    assert by_card == view
    for kind, value in (("anonymous_id", "anon-5f2c"), ("email", "ann.lee@example.com")):
        assert worker.poll(lookup(kind, value), lambda v: True)["customer_id"] == survivor

    client = redis.Redis.from_url(stack.redis.url(stack.redis_db), decode_responses=True)
    live = [k for k in client.scan_iter("ts:profile:*") if not client.hget(k, "merged_into")]
    assert live == [f"ts:profile:{survivor}"]
    assert not [k for k in client.scan_iter("*") if "example.com" in k.lower()]  # no raw email
    assert worker.get(lookup("email", "someone.else@example.com"))[0] == 404
    assert worker.get(lookup("shoe_size", "42"))[0] == 400


def test_an_identify_merges_two_profiles_with_points_into_one(stack: Stack) -> None:
    worker = stack.start_worker()
    worker.wait_ready()
    web = {"email": "bo@example.com"}
    store = {"loyalty_id": "LC-2002"}
    send(stack, [purchase(web, "W-1", 12_000, channel="web", occurred_at=at(0))])
    send(stack, [purchase(store, "S-1", 5_500, occurred_at=at(5))])
    absorbed = worker.poll(lookup("email", "bo@example.com"), lambda v: v["points"] == 120)
    survivor = home_of("loyalty_id", "LC-2002")
    worker.poll(f"/customers/{survivor}", lambda v: v["points"] == 55)

    send(stack, [event("identify", {**web, **store}, occurred_at=at(10))])

    merged = worker.poll(f"/customers/{survivor}", lambda v: v["points"] == 175)
    assert merged["orders"] == 2 and merged["qualifying_spend_minor"] == 17_500
    # the absorbed id answers with the survivor's view
    assert worker.poll(f"/customers/{absorbed['customer_id']}", lambda v: True) == merged
    merges = read_topic(stack.broker.bootstrap, topic(stack, "profiles.merges"), expect=1)
    assert len(merges) == 1
    record = merges[0].json()
    assert (record["survivor"], record["absorbed"]) == (survivor, absorbed["customer_id"])
    assert list(record["identifiers"]) == ["email"]
    assert "bo@example.com" not in merges[0].value.decode()  # the email travels as its HMAC
    assert worker.metrics()["touchstream_identity_merges_total"] == 1


def test_a_shared_device_is_refused_more_emails_than_the_limit(stack: Stack) -> None:
    worker = stack.start_worker()
    worker.wait_ready()
    kiosk = {"device_id": "kiosk-17"}
    for n in range(7):  # default limit: 5 emails per profile
        send(
            stack,
            [
                event(
                    "page_view",
                    {**kiosk, "email": f"visitor{n}@example.com"},
                    {"url": "https://shop.example.com/"},
                    occurred_at=at(n),
                    channel="kiosk",
                )
            ],
        )
        # one at a time, so which five emails made it is well defined
        if n < 5:
            worker.poll(lookup("email", f"visitor{n}@example.com"), lambda v: True)
            worker.poll(
                lookup("device_id", "kiosk-17"),
                lambda v, n=n: (
                    v["customer_id"]
                    == worker.poll(lookup("email", "visitor0@example.com"), lambda v: True)[
                        "customer_id"
                    ]
                ),
            )

    refusals = read_topic(stack.broker.bootstrap, topic(stack, "identity.refusals"), expect=2)
    assert len(refusals) == 2
    assert {r.json()["limit"] for r in refusals} == {"email"}
    first = worker.poll(lookup("email", "visitor0@example.com"), lambda v: True)
    assert worker.poll(lookup("device_id", "kiosk-17"), lambda v: True) == first
    for n in (5, 6):  # the refused emails keep their own profiles
        own = worker.poll(lookup("email", f"visitor{n}@example.com"), lambda v: True)
        assert own["customer_id"] != first["customer_id"]
    metrics = worker.metrics()
    assert metrics["touchstream_identity_link_refusals_total"] == 2


def shopper_events(tag: str) -> list[dict[str, Any]]:
    """One shopper's identifiers met in several events, each on its own inbound partition."""
    email = {"email": f"{tag}@example.com"}
    card = {"loyalty_id": f"LC-{tag}"}
    app = {"device_id": f"app-{tag}"}
    return [
        purchase(app, f"{tag}-A", 3_000, channel="app", occurred_at=at(0)),
        event("page_view", {**app, **email}, {"url": "u"}, channel="app", occurred_at=at(1)),
        purchase(email, f"{tag}-W", 7_000, channel="web", occurred_at=at(2)),
        event("loyalty_signup", {**email, **card}, occurred_at=at(3), channel="pos"),
        purchase(card, f"{tag}-P", 11_000, occurred_at=at(4)),
    ]


def test_two_workers_resolve_a_shopper_the_same_whatever_the_order(stack: Stack) -> None:
    first = stack.start_worker(name="w1")
    second = stack.start_worker(name="w2")
    first.wait_ready()
    second.wait_ready()
    forward, backward = shopper_events("fwd"), shopper_events("bwd")
    for one, other in zip(forward, reversed(backward), strict=True):
        send(stack, [one, other])

    views = {}
    for tag in ("fwd", "bwd"):
        survivor = home_of("loyalty_id", f"LC-{tag}")
        # 30 + 70 + 110 points, signup bonus 100: every part of the shopper on one profile
        views[tag] = first.poll(f"/customers/{survivor}", lambda v: v["points"] == 310)
        for worker in (first, second):
            for kind, value in (("email", f"{tag}@example.com"), ("device_id", f"app-{tag}")):
                assert worker.poll(lookup(kind, value), lambda v: True) == views[tag]
    time.sleep(1.0)  # anything still in flight would change a profile now

    def essentials(view: dict[str, Any]) -> tuple[Any, ...]:
        return view["points"], view["orders"], view["qualifying_spend_minor"], view["tier"]

    again = {
        tag: second.poll(f"/customers/{v['customer_id']}", lambda v: True)
        for tag, v in views.items()
    }
    assert essentials(again["fwd"]) == essentials(again["bwd"]) == (310, 3, 21_000, "member")
