"""Erasure and access requests on the pure core: nothing of the customer survives, records in
flight at the erasure are dropped, and the same identifiers seen later start afresh."""

import orjson
import pytest

from touchstream.config.rules import load_rules
from touchstream.domain.identity import home_of, mint_customer_id
from touchstream.domain.linking import is_erased
from touchstream.domain.offline import OfflineStage
from touchstream.domain.privacy import export_parts, reassemble
from touchstream.simulator.factory import internal

RULES = load_rules(None)
T0 = 1_795_179_807_512
CARD, MAIL, WEB = {"loyalty_id": "L-9"}, {"email": "hash-9"}, {"device_id": "dev-9"}


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


def test_erasure_leaves_no_profile_no_identifier_and_reports_what_it_removed():
    stage = shopper()
    root = home_of("loyalty_id", "L-9")
    assert stage.live()[root]["points"] == 50

    stage.submit([ev(5, WEB, "erasure_requested", request_id="R-1")])
    stage.drain()

    assert stage.live() == {}
    for home in (root, home_of("email", "hash-9"), home_of("device_id", "dev-9")):
        assert is_erased(stage.table[home])
        assert set(stage.table[home]) == {"customer_id", "erased_at", "version"}  # no data
    (receipt,) = [d.payload for d in stage.decisions if d.kind == "erased"]
    assert receipt["request_id"] == "R-1" and receipt["customer_id"] == root
    assert receipt["identifiers"] == {"loyalty_id": 1, "email": 1, "device_id": 1}
    assert receipt["orders"] == 1 and receipt["carts"] == 1


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


def test_identifiers_seen_again_after_the_erasure_start_a_new_empty_profile():
    stage = shopper()
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
