"""Erasure and access requests on the pure core: nothing of the customer survives, records in
flight at the erasure are dropped, and the same identifiers seen later start afresh."""

from dataclasses import replace
from typing import Any

import orjson
import pytest

from touchstream.config.rules import load_rules
from touchstream.domain.customer import request_marks
from touchstream.domain.identity import home_of, mint_customer_id
from touchstream.domain.linking import handle, is_erased
from touchstream.domain.privacy import export_parts, reassemble
from touchstream.domain.records import Erased
from touchstream.domain.timers import pending
from touchstream.offline import OfflineStage
from touchstream.simulator.factory import internal
from touchstream.tables.state_codec import plain

RULES = load_rules(None)
T0 = 1_795_179_807_512
CARD, MAIL, WEB = {"loyalty_id": "L-9"}, {"email": "hash-9"}, {"device_id": "dev-9"}


def marks(n: int, request_id: str) -> list[str]:
    """How the erasure request ``ev(n, ..., request_id=request_id)`` is known again."""
    return request_marks({"id": f"e{n}", "props": {"request_id": request_id}})


def ev(n, ids, type_="page_view", ts=None, **props):
    e = internal(mint_customer_id(ids), ids, type_, f"e{n}", n, at=T0 + n, **props)
    e["ts"] = ts if ts is not None else T0 + n
    return e


def shopper() -> OfflineStage:
    stage = OfflineStage(RULES)
    stage.submit(
        [
            ev(1, {**WEB, **MAIL}),
            ev(2, {**MAIL, **CARD}),
            ev(
                3,
                CARD,
                "purchase",
                order_id="O-1",
                total_minor=5_000,
                currency="EUR",
                items=[],
            ),
            ev(4, WEB, "add_to_cart", cart_id="C-1", sku="S", quantity=1, unit_price_minor=900),
        ]
    )
    return stage.drain()


def receipts_of(stage: OfflineStage) -> list[str]:
    """The request ids of the receipts sent so far, in order."""
    return [d.payload["request_id"] for d in stage.decisions if d.kind == "receipt"]


def unsuppressed(stage: OfflineStage) -> OfflineStage:
    """``stage`` with erased identifiers seen again starting a new profile at once."""
    stage.rules = replace(RULES, identity=replace(RULES.identity, suppress_erased=False))
    return stage


def erased_ahead(stage: OfflineStage) -> dict[str, Any]:
    """R-1, her erasure, applied: dated ahead of the ingest clock (ingested at T0 + 5, dated
    T0 + 500), so event time alone does not tell a second delivery of it from a new request."""
    request = ev(500, CARD, "erasure_requested", ts=T0 + 5, request_id="R-1")
    stage.submit([request])
    stage.drain()
    return request


def test_erasure_leaves_no_profile_no_identifier_and_reports_what_it_removed():
    stage = shopper()
    root = home_of("loyalty_id", "L-9")
    assert stage.live()[root]["points"] == 50

    stage.submit([ev(5, WEB, "erasure_requested", request_id="R-1")])
    stage.drain()

    assert stage.live() == {}
    for home in (root, home_of("email", "hash-9"), home_of("device_id", "dev-9")):
        assert is_erased(stage.table[home])
        stored = orjson.loads(plain(stage.table[home]))  # as the changelog holds it
        # no data: the request is known by a digest of its event id, not its text
        assert set(stored) == {"customer_id", "erased_at", "version", "requests"}
        assert stored["requests"] == marks(5, "R-1")
    # the receipt once Redis confirmed the deletion (the oracle confirms at once)
    (receipt,) = [d.payload for d in stage.decisions if d.kind == "receipt"]
    assert receipt["request_id"] == "R-1" and receipt["customer_id"] == root
    assert receipt["removed"]["identifiers"] == {"loyalty_id": 1, "email": 1, "device_id": 1}
    assert receipt["removed"]["orders"] == 1 and receipt["removed"]["carts"] == 1
    assert receipt["kinds_removed"] == ["device_id", "email", "loyalty_id"]
    # counts and kinds only: no identifier, raw or hashed, and no identifier's home
    text = orjson.dumps(receipt).decode()
    for value in ("L-9", "hash-9", "dev-9", home_of("email", "hash-9")):
        assert value not in text


def test_the_receipt_waits_for_redis_to_confirm_the_deletion():
    stage = shopper()
    root = home_of("loyalty_id", "L-9")
    erasure = ev(5, CARD, "erasure_requested", request_id="R-1")
    step = handle(root, stage.table[root], erasure, RULES)
    assert [d.kind for d in step.decisions] == ["erased"]  # no receipt yet
    waiting = step.store
    assert isinstance(waiting, Erased) and waiting.unconfirmed is not None
    assert waiting.unconfirmed["receipt"]["request_id"] == "R-1"
    # a confirmation of another version (an erasure since replaced) sends nothing
    assert (
        handle(root, waiting, {"k": "confirm", "version": 0, "ts": T0 + 9}, RULES).decisions == []
    )
    done = handle(root, waiting, {"k": "confirm", "version": waiting.version, "ts": T0 + 9}, RULES)
    (receipt,) = done.decisions
    assert receipt.kind == "receipt" and receipt.payload["completed_at"] == T0 + 9
    kept = orjson.loads(plain(done.store))
    assert set(kept) == {"customer_id", "erased_at", "version", "requests"}
    assert kept["requests"] == waiting.requests == marks(5, "R-1")
    # confirmed twice (a redelivery): one receipt
    assert (
        handle(
            root, done.store, {"k": "confirm", "version": waiting.version, "ts": 0}, RULES
        ).decisions
        == []
    )


def test_records_in_flight_at_the_erasure_are_dropped_not_resurrected():
    stage = shopper()
    stage.submit([ev(5, CARD, "erasure_requested", request_id="R-1")])
    stage.drain()
    # ingested before the erasure was applied (older wall time), delivered after it
    late = ev(
        6, CARD, "purchase", ts=T0 + 5, order_id="O-2", total_minor=9_900, currency="EUR", items=[]
    )
    stage.submit([late, ev(7, {**WEB, **MAIL}, ts=T0 + 4)])
    stage.drain()

    assert stage.live() == {}


def test_an_event_from_before_the_erasure_is_dropped_whenever_it_arrives():
    stage = shopper()
    stage.submit([ev(5, CARD, "erasure_requested", request_id="R-1")])
    stage.drain()
    # an offline till's purchase of before the erasure, ingested days later
    till = ev(4, CARD, "purchase", ts=T0 + 10**9, order_id="O-9", total_minor=10_000)
    till["props"].update(currency="EUR", items=[])
    stage.submit([till])
    stage.drain()
    assert stage.live() == {}
    # and once she signed up again: still never part of the new profile
    stage.submit([ev(20, CARD, "loyalty_signup", ts=T0 + 2 * 10**9)])
    stage.drain()
    late = ev(3, CARD, "purchase", ts=T0 + 3 * 10**9, order_id="O-8", total_minor=7_000)
    late["props"].update(currency="EUR", items=[])
    stage.submit([late])
    stage.drain()
    (fresh,) = stage.live().values()
    assert fresh["orders"] == {} and fresh["events"] == {"loyalty_signup": 1}


def test_erased_identifiers_are_suppressed_until_a_new_sign_up_or_consent():
    stage = shopper()
    stage.submit([ev(5, CARD, "erasure_requested", request_id="R-1")])
    stage.drain()
    # her card, device and email seen again: nothing starts a profile
    stage.submit([ev(10, CARD, ts=T0 + 1_000), ev(11, {**WEB, **MAIL}, ts=T0 + 1_001)])
    stage.drain()
    assert stage.live() == {}
    # an explicit new sign-up does
    stage.submit([ev(12, {**CARD, **MAIL}, "loyalty_signup", ts=T0 + 2_000)])
    stage.drain()
    (fresh,) = stage.live().values()
    assert fresh["identifiers"] == {"loyalty_id": ["L-9"], "email": ["hash-9"]}


def test_with_suppression_off_identifiers_seen_again_start_a_new_empty_profile():
    stage = unsuppressed(shopper())
    stage.submit([ev(5, CARD, "erasure_requested", request_id="R-1")])
    stage.drain()
    stage.submit([ev(10, CARD, ts=T0 + 1_000)])
    stage.drain()

    (fresh,) = stage.live().values()
    assert fresh["customer_id"] == home_of("loyalty_id", "L-9")
    assert fresh["points"] == 0 and fresh["orders"] == {} and fresh["carts"] == {}
    assert fresh["identifiers"] == {"loyalty_id": ["L-9"]}


def test_access_request_exports_the_full_state_of_the_linked_customer():
    stage = shopper()
    stage.submit([ev(5, WEB, "access_requested", request_id="A-1")])
    stage.drain()

    (export,) = [d.payload for d in stage.decisions if d.kind == "export"]
    assert export["request_id"] == "A-1"
    assert export["customer_id"] == home_of("loyalty_id", "L-9")
    assert export["ledger"]["points"] == 50 and list(export["ledger"]["orders"]) == ["O-1"]
    assert sorted(export["identifiers"]) == ["device_id", "email", "loyalty_id"]
    assert export["carts"]["C-1"]["value"] == 900
    assert export["profile"]["points"] == 50


# -- access exports in parts ---------------------------------------------------------------

HOSTILE = 'quote " backslash \\ newline \n nul \x00 tab \t é ü 漢字 🛒 </script>'


def big_export(orders: int) -> dict:
    return {
        "request_id": "req-1",
        "customer_id": "c-1",
        "profile": {"name": HOSTILE},
        "ledger": {
            "points": 10,
            "orders": {
                f"O-{i}": {"total_minor": i, "note": HOSTILE * (i % 7)} for i in range(orders)
            },
        },
        "at": T0,
    }


@pytest.mark.parametrize("budget", [2_048, 10_000, 1_000_000])
def test_a_huge_export_is_split_into_parts_within_budget_that_reassemble(budget: int) -> None:
    export = big_export(20_000)  # several MB of JSON, escapes and multi-byte text included
    parts = export_parts(export, budget)
    whole = len(orjson.dumps(export))
    assert whole > 3 * 1_000_000
    assert len(parts) >= whole // budget
    for number, part in enumerate(parts, start=1):
        assert len(orjson.dumps(part)) <= budget
        assert (part["request_id"], part["customer_id"]) == ("req-1", "c-1")
        assert (part["part"], part["parts"]) == (number, len(parts))
    assert reassemble(list(reversed(parts)) + parts[:3]) == export


def test_a_small_export_is_one_part_holding_it_whole() -> None:
    export = big_export(2)
    (part,) = export_parts(export, 1_000_000)
    assert (part["part"], part["parts"]) == (1, 1)
    assert orjson.loads(part["data"]) == export


def test_the_parts_are_the_same_on_replay_and_a_missing_one_is_noticed() -> None:
    export = big_export(500)
    parts = export_parts(export, 4_096)
    assert parts == export_parts(export, 4_096)
    with pytest.raises(ValueError, match="missing"):
        reassemble(parts[:-1])


def test_an_event_naming_an_erased_identifier_does_not_link_it_to_another_profile():
    stage = shopper()
    stage.submit([ev(5, CARD, "erasure_requested", request_id="R-1")])
    stage.drain()
    other = {"device_id": "dev-other"}
    stage.submit([ev(10, other, ts=T0 + 1_000)])  # someone else's live profile
    stage.drain()
    # a page view of that device with her email: the email stays erased, not linked
    stage.submit([ev(11, {**other, **MAIL}, ts=T0 + 1_001)])
    stage.drain()
    (live,) = stage.live().values()
    assert live["identifiers"] == {"device_id": ["dev-other"]}
    assert is_erased(stage.table[home_of("email", "hash-9")])


def test_the_core_counts_the_timers_the_erased_profile_had_pending_on_its_receipt():
    stage = shopper()
    root = home_of("loyalty_id", "L-9")
    assert pending(stage.table[root], RULES) == 2  # the cart's reminder and the open session

    stage.submit([ev(5, CARD, "erasure_requested", request_id="R-1")])
    stage.drain()

    (receipt,) = [d.payload for d in stage.decisions if d.kind == "receipt"]
    assert receipt["removed"]["timers"] == 2


@pytest.mark.parametrize("again_ts", [T0 + 5, T0 + 700], ids=["same-ingest", "ingested-again"])
def test_an_erasure_delivered_again_leaves_the_profile_she_started_since(again_ts: int):
    # the request claims a time ahead of the ingest clock (within its tolerance), so event
    # time alone does not tell its second delivery from a new request
    stage = shopper()
    erasure = ev(500, CARD, "erasure_requested", ts=T0 + 5, request_id="R-1")
    stage.submit([erasure])
    stage.drain()
    signup = ev(600, {**CARD, **MAIL}, "loyalty_signup", ts=T0 + 600)
    stage.submit([signup])
    stage.drain()
    (fresh,) = stage.live().values()

    stage.submit([dict(erasure, ts=again_ts)])  # a producer's retry, or ingest's replay
    stage.drain()

    assert stage.live() == {fresh["customer_id"]: fresh}
    assert receipts_of(stage) == ["R-1"]


def test_an_erasure_delivered_again_to_its_marker_sends_no_second_receipt():
    stage = unsuppressed(shopper())
    erasure = ev(500, CARD, "erasure_requested", ts=T0 + 5, request_id="R-1")
    stage.submit([erasure])
    stage.drain()
    markers = dict(stage.table)

    stage.submit([dict(erasure, ts=T0 + 700)])  # ingested again, after the erasure
    stage.drain()

    assert receipts_of(stage) == ["R-1"]
    assert stage.table == markers


def test_a_merged_profile_keeps_the_erasures_its_parts_were_started_after():
    stage = shopper()
    erasure = ev(500, CARD, "erasure_requested", ts=T0 + 5, request_id="R-1")
    stage.submit([erasure])
    stage.drain()
    # she signs up again with her card; later her email (also erased) joins that profile,
    # and a customer id from the CRM outranks both
    stage.submit(
        [
            ev(600, CARD, "loyalty_signup", ts=T0 + 600),
            ev(601, {**CARD, **MAIL}, ts=T0 + 601),
            ev(602, {**CARD, "customer_id": "C-1"}, ts=T0 + 602),
        ]
    )
    stage.drain()
    (merged,) = stage.live().values()
    assert merged["customer_id"] == "C-1" and merged["erased_by"] == marks(500, "R-1")

    stage.submit([dict(erasure, ts=T0 + 700)])
    stage.drain()
    assert list(stage.live()) == ["C-1"]


def test_an_earlier_erasure_delivered_again_after_a_second_one_erases_nothing():
    # erased, back, erased again by a new request, back again: then the first request, dated
    # ahead of both, arrives a second time
    stage = shopper()
    first = erased_ahead(stage)
    stage.submit([ev(100, CARD, "loyalty_signup", ts=T0 + 100)])
    stage.drain()
    second = ev(200, CARD, "erasure_requested", ts=T0 + 200, request_id="R-2")
    stage.submit([second])
    stage.drain()
    stage.submit([ev(300, CARD, "loyalty_signup", ts=T0 + 300)])
    stage.drain()
    (fresh,) = stage.live().values()
    assert fresh["erased_by"] == [*marks(500, "R-1"), *marks(200, "R-2")]

    stage.submit([dict(first, ts=T0 + 400)])
    stage.drain()

    assert stage.live() == {fresh["customer_id"]: fresh}
    receipts = receipts_of(stage)
    assert receipts == ["R-1", "R-2"]


def test_an_earlier_request_delivered_again_at_a_home_erased_since_erases_nothing():
    # erased, back with her card, then merged into a CRM profile that is erased in turn
    # her card's home becomes that profile's marker, and still knows R-1
    stage = unsuppressed(shopper())
    first = erased_ahead(stage)
    stage.submit([ev(100, CARD, "loyalty_signup", ts=T0 + 100)])
    stage.drain()
    stage.submit([ev(101, {**CARD, "customer_id": "C-9"}, ts=T0 + 101)])
    stage.drain()
    second = ev(200, {"customer_id": "C-9"}, "erasure_requested", ts=T0 + 200, request_id="R-2")
    stage.submit([second])
    stage.drain()
    assert stage.live() == {}
    home = stage.table[home_of("loyalty_id", "L-9")]
    assert isinstance(home, Erased)
    assert home.requests == [*marks(500, "R-1"), *marks(200, "R-2")]

    stage.submit([dict(first, ts=T0 + 400)])
    stage.drain()

    assert stage.live() == {}
    receipts = receipts_of(stage)
    assert receipts == ["R-1", "R-2"]


def test_a_new_request_at_a_marker_keeps_the_requests_the_marker_knew():
    stage = unsuppressed(shopper())
    first = erased_ahead(stage)
    # a second request for the erased customer, while nothing lives there
    stage.submit([ev(200, CARD, "erasure_requested", ts=T0 + 200, request_id="R-2")])
    stage.drain()
    root = stage.table[home_of("loyalty_id", "L-9")]
    assert isinstance(root, Erased)
    assert root.requests == [*marks(500, "R-1"), *marks(200, "R-2")]

    stage.submit([dict(first, ts=T0 + 400)])
    stage.drain()
    receipts = receipts_of(stage)
    assert receipts == ["R-1", "R-2"]


class Hand:
    """The customer stage driven by hand: each home's records queue up, and the test decides
    which home handles its next records when (the races of linked identifiers)."""

    def __init__(self, rules: Any = RULES) -> None:
        self.rules = rules
        self.table: dict[str, Any] = {}
        self.queues: dict[str, list[dict[str, Any]]] = {}
        self.receipts: list[str] = []

    def run(self, target: str, msg: dict[str, Any]) -> None:
        step = handle(target, self.table.get(target), msg, self.rules)
        if step.delete:
            self.table.pop(target, None)
        elif step.store is not None:
            self.table[target] = step.store
            if isinstance(step.store, Erased) and step.store.unconfirmed is not None:
                confirm = {"k": "confirm", "version": step.store.version, "ts": T0}
                self.queues.setdefault(target, []).append(confirm)
        self.receipts += [d.payload["request_id"] for d in step.decisions if d.kind == "receipt"]
        for home, out in step.sends:
            self.queues.setdefault(home, []).append(out)

    def deliver(self, home: str) -> None:
        records, self.queues[home] = self.queues.get(home, []), []
        for record in records:
            self.run(home, record)

    def settle(self) -> None:
        while any(self.queues.values()):
            for home in list(self.queues):
                self.deliver(home)


def test_a_request_forwarded_by_a_home_erased_meanwhile_is_known_there_too():
    # R-B by her email reaches its home while that is still a redirect to her card's profile;
    # meanwhile R-A erased that profile and she signed up again with her card
    hand = Hand()
    card, mail = home_of("loyalty_id", "L-9"), home_of("email", "hash-9")
    hand.run(card, ev(1, {**CARD, **MAIL}, "loyalty_signup"))
    hand.settle()
    request_b = ev(101, MAIL, "erasure_requested", request_id="R-B")
    hand.run(card, ev(100, CARD, "erasure_requested", request_id="R-A"))
    hand.deliver(card)  # Redis confirms R-A; its forget to the email's home is queued
    hand.run(mail, request_b)  # still a redirect: forwarded to the card's home
    hand.run(card, ev(102, CARD, "loyalty_signup"))  # back, before R-B lands
    hand.deliver(card)  # R-B erases that new profile
    hand.settle()
    assert isinstance(hand.table[mail], Erased)
    assert set(marks(101, "R-B")) <= set(hand.table[mail].requests or ())

    hand.run(mail, ev(200, MAIL, "loyalty_signup"))  # later, she signs up with her email
    hand.settle()
    hand.run(mail, dict(request_b, ts=T0 + 300))  # and R-B is delivered again
    hand.settle()

    assert any(isinstance(s, dict) for s in hand.table.values())
    assert hand.receipts == ["R-A", "R-B"]


def test_every_request_reaching_a_marker_gets_its_receipt_and_a_newer_marker():
    hand = Hand()
    card = home_of("loyalty_id", "L-9")
    hand.run(card, ev(1, CARD, "loyalty_signup"))
    hand.run(card, ev(10, CARD, "erasure_requested", request_id="R-1"))
    first = hand.table[card]
    hand.queues.clear()  # Redis has not confirmed R-1 yet
    hand.run(card, ev(11, CARD, "erasure_requested", request_id="R-2"))  # suppression on
    second = hand.table[card]
    assert isinstance(first, Erased) and isinstance(second, Erased)
    assert second.version > first.version  # Redis's tombstone never outranks the marker
    # the worker's Redis queue merged the two removals: one confirmation, both receipts
    hand.settle()
    assert hand.receipts == ["R-1", "R-2"]
    assert second.requests == [*marks(10, "R-1"), *marks(11, "R-2")]


def test_her_own_request_is_applied_whenever_dated_after_her_profile_absorbed_an_erased_one():
    # she signed up (t=1000); a device erased by another request (t=2000) then joined her
    # profile, which so remembers that erasure; her own request, dated t=1500 (before it), is
    # ingested at t=4000: it still erases her
    stage = OfflineStage(RULES)
    device = {"device_id": "dev-9"}
    stage.submit([ev(1000, CARD, "loyalty_signup")])
    stage.drain()
    stage.submit([ev(1900, device, "erasure_requested", ts=T0 + 2000, request_id="R-dev")])
    stage.drain()
    stage.submit([ev(3000, {**CARD, **device}, "loyalty_signup")])
    stage.drain()
    (her,) = stage.live().values()
    assert her["erased_before"] == T0 + 2000  # the device's erasure, through the merge

    stage.submit([ev(1500, CARD, "erasure_requested", ts=T0 + 4000, request_id="R-her")])
    stage.drain()

    assert stage.live() == {}
    receipts = receipts_of(stage)
    assert receipts == ["R-dev", "R-her"]


def test_every_redirect_a_request_passed_knows_it_once_applied():
    # device -> email -> card: a request by her device passes two redirects; the middle one
    # becomes a marker of an earlier erasure before the request's own forget could reach it
    hand = Hand()
    dev, mail, card = (home_of(k, v) for k, v in (*WEB.items(), *MAIL.items(), *CARD.items()))
    for n, ids in enumerate([WEB, {**MAIL, **WEB}, {**CARD, **MAIL}], 1):
        seen = ev(n, ids)
        hand.run(seen["cid"], seen)  # (ingest's routing: the home of its strongest identifier)
        hand.settle()
    assert hand.table[dev].into == mail and hand.table[mail].into == card
    hand.run(card, ev(40, CARD, "erasure_requested", request_id="R-a"))
    hand.deliver(card)  # its confirm: R-a's receipt; its forgets wait at the two homes
    request_b = ev(41, WEB, "erasure_requested", request_id="R-b")
    hand.queues[dev].insert(0, request_b)
    hand.run(dev, hand.queues[dev].pop(0))  # still a redirect: forwarded to the email's home
    hand.run(mail, hand.queues[mail].pop())  # still a redirect: forwarded to the card's home
    hand.settle()
    assert set(marks(41, "R-b")) <= set(hand.table[mail].requests or ())

    hand.run(dev, dict(request_b, ts=T0 + 500))  # the producer's retry
    hand.settle()
    assert hand.receipts == ["R-a", "R-b"]
