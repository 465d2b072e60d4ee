"""The typed-state rewrite's step 3 (docs/design/typed-state.md): the state stays today's dict,
but the values of its leaf keys (``domain.records.LEAVES``) are records. A value read from the
table, or carried by a fold message through Kafka as JSON, gets its records; what is stored,
sent and exported is the JSON it was before; a stored value of the wrong shape is refused with
the field named, never read as something else."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from touchstream.agents.ports import Output
from touchstream.config.rules import load_rules
from touchstream.domain import records, triggers
from touchstream.domain.customer import apply, new_state
from touchstream.domain.fold import fold
from touchstream.domain.identity import home_of
from touchstream.domain.privacy import everything
from touchstream.domain.profile import project
from touchstream.simulator.factory import internal
from touchstream.tables.customers import decode_state
from touchstream.tables.state_codec import StateFormatError, encode, pack

RULES = load_rules(None)
T0 = 1_795_179_807_512
A = home_of("email", "hash-a")
B = home_of("loyalty_id", "L-1")
MARKS = {"tier": None, "at": T0, "due": None, "spend": 0, "risk": None, "warned": None}


def shopper(cid: str, ids: dict[str, str], n0: int = 0, profiling: bool = False) -> dict[str, Any]:
    """A profile that has stated its consent and has a session open."""
    events = [
        ("consent_updated", {"purposes": {"email_marketing": True, "profiling": profiling}}),
        ("product_view", {"sku": "SKU-1"}),
        ("add_to_cart", {"cart_id": "C-1", "sku": "SKU-1", "quantity": 2, "unit_price_minor": 450}),
    ]
    state = None
    for n, (kind, props) in enumerate(events, start=n0 + 1):
        ev = internal(cid, ids, kind, f"{cid}-{n}", n, at=T0 + n * 1000, **props)
        state = apply(state, ev, RULES).state
    assert state is not None
    return state


def plain(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` as the builtins of its JSON (what a fold message carries through Kafka)."""
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(state, default=records.json_default))
    return loaded


def test_the_core_holds_consent_as_grant_records() -> None:
    state = shopper(A, {"email": "hash-a"})
    assert state["consent"] == {
        "email_marketing": records.Grant(granted=True, at=T0 + 1000),
        "profiling": records.Grant(granted=False, at=T0 + 1000),
    }


def test_the_core_holds_the_open_session_as_a_session_record() -> None:
    state = shopper(A, {"email": "hash-a"})
    session = state["session"]
    assert isinstance(session, records.Session)
    assert (session.product_views, session.cart_adds, session.views, session.added) == (
        1,
        1,
        {"SKU-1": 1},
        ["SKU-1"],
    )


def test_the_core_holds_carts_as_cart_records() -> None:
    state = shopper(A, {"email": "hash-a"})
    assert state["carts"] == {
        "C-1": records.Cart(
            items={"SKU-1": (2, 450)},
            at=T0 + 3000,
            since=T0 + 3000,
            closed_at=None,
            reminded=None,
            value=900,
        )
    }


def buyer(cid: str, ids: dict[str, str]) -> dict[str, Any]:
    """A shopper who bought twice, so RFM scored them."""
    state = shopper(cid, ids)
    for n, net in ((7, 12_000), (8, 3_000)):
        props = {"order_id": f"O-{n}", "total_minor": net, "currency": "EUR", "items": []}
        ev = internal(cid, ids, "purchase", f"{cid}-{n}", n, at=T0 + n * 86_400_000, **props)
        state = apply(state, ev, RULES).state
    return state


def test_the_core_holds_rfm_as_an_rfm_record() -> None:
    state = buyer(A, {"email": "hash-a"})
    marks = state["rfm"]
    assert isinstance(marks, records.Rfm)
    assert marks.at == T0 + 8 * 86_400_000
    assert marks.figures == records.Figures(
        orders_365=2,
        spend_365_minor=15_000,
        avg_order_value_minor=7_500,
        avg_days_between_purchases=1.0,
    )
    assert marks.scores is None  # profiling refused
    view = project(state, RULES)
    assert (view["orders_365"], view["avg_order_value_minor"], view["segment"]) == (2, 7_500, None)


def test_rfm_never_evaluated_is_stored_without_figures_as_before() -> None:
    state = new_state(A)
    assert state["rfm"] == records.Rfm(at=None, scores=None, due=None, lapse=None)
    stored = orjson.loads(orjson.dumps(state["rfm"], default=records.json_default))
    assert stored == {"at": None, "scores": None, "due": None, "lapse": None}
    assert decode_state(encode(state)) == state


def test_the_core_holds_the_loyalty_marks_as_a_loyalty_marks_record() -> None:
    state = buyer(A, {"email": "hash-a"})
    marks = state["loyalty"]
    assert isinstance(marks, records.LoyaltyMarks)
    assert (marks.tier, marks.at, marks.spend, marks.risk, marks.vips) == (
        None,
        T0 + 8 * 86_400_000,
        15_000,
        None,
        0,
    )
    assert plain({"loyalty": marks})["loyalty"] == {
        "tier": None,
        "at": T0 + 8 * 86_400_000,
        "due": marks.due,
        "spend": 15_000,
        "risk": None,
        "warned": None,
        "expired": None,
        "vips": 0,
    }
    assert project(state, RULES)["qualifying_spend_minor"] == 15_000


def test_loyalty_marks_written_before_vips_was_kept_read_as_none_announced() -> None:
    state = plain(buyer(A, {"email": "hash-a"}))
    del state["loyalty"]["vips"]
    read = decode_state(pack(orjson.dumps(state)))
    assert read is not None and read["loyalty"].vips == 0


def returned(cid: str, ids: dict[str, str]) -> dict[str, Any]:
    """A buyer who returned part of their first order."""
    state = buyer(cid, ids)
    props = {"return_id": "R-1", "order_id": "O-7", "refund_minor": 2_000, "currency": "EUR"}
    ev = internal(cid, ids, "return", f"{cid}-9", 9, at=T0 + 9 * 86_400_000, **props)
    return apply(state, ev, RULES).state


def test_the_core_holds_the_orders_and_returns_as_order_and_return_records() -> None:
    before = buyer(A, {"email": "hash-a"})
    first = before["orders"]["O-7"]
    assert isinstance(first, records.Order)
    assert first == records.Order(
        at=T0 + 7 * 86_400_000, net=12_000, eff=12_000_000, pts=first.pts, ref=0
    )
    state = returned(A, {"email": "hash-a"})
    refunded = state["orders"]["O-7"]
    assert (refunded.net, refunded.ref) == (12_000, 2_000)
    assert refunded.pts == first.pts and refunded is not first
    assert first.ref == 0  # the state before the return still holds its order as it was
    assert plain({"orders": state["orders"]})["orders"]["O-7"] == {
        "at": T0 + 7 * 86_400_000,
        "net": 12_000,
        "eff": 12_000_000,
        "pts": first.pts,
        "ref": 2_000,
    }
    assert state["returns"] == {
        "R-1": records.Return(order="O-7", at=T0 + 9 * 86_400_000, refund=2_000)
    }
    assert plain({"returns": state["returns"]})["returns"] == {
        "R-1": {"order": "O-7", "at": T0 + 9 * 86_400_000, "refund": 2_000}
    }
    view = project(state, RULES)
    assert (view["orders"], view["points"]) == (2, state["points"])
    doc = everything(state, {"at": T0, "props": {"request_id": "r-1"}}, view)
    assert orjson.dumps(doc) == orjson.dumps(
        everything(plain(state), {"at": T0, "props": {"request_id": "r-1"}}, view)
    )
    assert doc["ledger"]["orders"]["O-7"]["ref"] == 2_000
    assert doc["ledger"]["returns"] == {
        "R-1": {"order": "O-7", "at": T0 + 9 * 86_400_000, "refund": 2_000}
    }


def folded(cid: str, ids: dict[str, str]) -> dict[str, Any]:
    """A buyer whose returned orders are beyond every window: folded into ``past``, their
    ids (and the return's) kept in ``ids`` (domain.state_bounds)."""
    state = returned(cid, ids)
    props = {"order_id": "O-800", "total_minor": 4_000, "currency": "EUR", "items": []}
    ev = internal(cid, ids, "purchase", f"{cid}-800", 800, at=T0 + 800 * 86_400_000, **props)
    return apply(state, ev, RULES).state


def test_the_core_holds_folded_orders_as_past_and_ids_records() -> None:
    state = folded(A, {"email": "hash-a"})
    past = state["past"]
    assert isinstance(past, records.Past)
    assert (past.orders, past.counted, past.spend) == (2, 2, 13_000)
    assert (past.first, past.last) == (T0 + 7 * 86_400_000, T0 + 8 * 86_400_000)
    assert state["ids"] is None  # their ids are older than ID_SPAN: forgotten
    view = project(state, RULES)
    assert view["orders"] == 3  # the live order and the two folded
    ev = {"at": T0, "props": {"request_id": "r-1"}}
    doc = everything(state, ev, view)
    assert orjson.dumps(doc) == orjson.dumps(everything(plain(state), ev, view))
    assert doc["ledger"]["orders_folded"]["spend"] == 13_000
    other = shopper(B, {"loyalty_id": "L-1"}, n0=900)
    merged = fold(other, plain(state), RULES)
    assert merged["past"] == past and merged["ids"] is None


def remembering(cid: str, ids: dict[str, str]) -> dict[str, Any]:
    """A customer whose folded order's id is still remembered (within ``ID_SPAN``), and who
    then returned that order: the return's id is remembered too, nothing applied."""
    state = folded(cid, ids)
    state["ids"] = records.Ids(o={"O-7": T0 + 799 * 86_400_000}, r={})
    props = {"return_id": "R-2", "order_id": "O-7", "refund_minor": 500, "currency": "EUR"}
    ev = internal(cid, ids, "return", f"{cid}-801", 801, at=T0 + 801 * 86_400_000, **props)
    return apply(state, ev, RULES).state


def test_the_core_holds_the_ids_of_folded_orders_and_returns_as_an_ids_record() -> None:
    state = remembering(A, {"email": "hash-a"})
    assert state["ids"] == records.Ids(
        o={"O-7": T0 + 799 * 86_400_000}, r={"R-2": T0 + 801 * 86_400_000}
    )
    assert plain({"ids": state["ids"]})["ids"] == {
        "o": {"O-7": T0 + 799 * 86_400_000},
        "r": {"R-2": T0 + 801 * 86_400_000},
    }
    assert "R-2" not in state["returns"]
    merged = fold(shopper(B, {"loyalty_id": "L-1"}, n0=900), plain(state), RULES)
    assert merged["ids"] == state["ids"]


def test_a_fold_message_carrying_orders_folds_them_as_records() -> None:
    winner = returned(A, {"email": "hash-a"})
    loser = shopper(B, {"loyalty_id": "L-1"}, n0=20)
    props = {"order_id": "O-30", "total_minor": 5_000, "currency": "EUR", "items": []}
    ev = internal(
        B, {"loyalty_id": "L-1"}, "purchase", f"{B}-30", 30, at=T0 + 10 * 86_400_000, **props
    )
    loser = apply(loser, ev, RULES).state
    in_memory = fold(winner, loser, RULES)
    through_kafka = fold(winner, plain(loser), RULES)
    assert through_kafka == in_memory
    assert set(through_kafka["orders"]) == {"O-7", "O-8", "O-30"}
    assert all(isinstance(o, records.Order) for o in through_kafka["orders"].values())
    assert through_kafka["orders"]["O-7"].ref == 2_000
    assert isinstance(through_kafka["returns"]["R-1"], records.Return)


def notified(cid: str, ids: dict[str, str]) -> dict[str, Any]:
    """A shopper who was sent a trigger and has one held back by quiet hours."""
    state = shopper(cid, ids)
    proposal = triggers.propose(
        "reward_unlocked", "500:0", T0 + 4000, "r", {"threshold": 0, "points": 0}, "reward_unlocked"
    )
    assert triggers.emit(state, proposal, T0 + 5000, RULES).kind == "trigger_out"
    held = dict(proposal.trigger, cause="500:1", due=T0 + 9000, released=True)
    state["deferred"] = [held]
    return state


def test_the_core_holds_the_delivered_triggers_as_tuples() -> None:
    state = notified(A, {"email": "hash-a"})
    (entry,) = state["delivered"]
    assert entry == (
        "reward_unlocked",
        T0 + 4000,
        triggers.trigger_id(A, "reward_unlocked", "500:0"),
    )
    assert plain(state)["delivered"] == [list(entry)]
    # read back from the table, or folded from a fold message, the log holds tuples again
    assert decode_state(encode(state))["delivered"] == [entry]  # type: ignore[index]
    other = shopper(B, {"loyalty_id": "L-1"}, n0=10)
    assert fold(other, plain(state), RULES)["delivered"] == [entry]


@pytest.mark.parametrize("make", [shopper, buyer, notified, returned, folded, remembering])
def test_a_stored_state_reads_back_with_its_records_and_stores_todays_json(make: Any) -> None:
    state = make(A, {"email": "hash-a"})
    stored = encode(state)
    read = decode_state(stored)
    assert read == state
    for key in records.LEAVES:
        assert read is not None and plain({key: read[key]}) == {key: plain(state)[key]}
    # a worker before the rewrite wrote the dicts of builtins: they read back as records too
    assert decode_state(pack(orjson.dumps(plain(state)))) == state
    assert encode(state) == pack(orjson.dumps(plain(state)))


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("consent", {"email_marketing": {"granted": "yes", "at": T0}}, "granted"),
        ("consent", {"email_marketing": {"granted": True}}, "at"),
        ("session", {"start": T0}, "last"),
        ("session", [T0, T0], "session"),
        ("carts", {"C-1": {"items": {"S": [1]}, "at": T0}}, "items"),
        ("carts", {"C-1": {"items": {}, "at": "yesterday"}}, "at"),
        ("rfm", {"at": T0, "scores": None, "due": None}, "lapse"),
        ("rfm", {"at": T0, "scores": {"r": 5}, "due": None, "lapse": None}, "scores"),
        ("rfm", None, "rfm"),
        ("loyalty", {"tier": "gold", "at": T0}, "due"),
        ("loyalty", dict(MARKS, expired=None, risk=["gold"]), "risk"),
        ("loyalty", dict(MARKS, expired=None, spend="lots"), "spend"),
        ("loyalty", MARKS, "expired"),
        ("delivered", [["reward_unlocked", T0]], "delivered"),
        ("delivered", [["reward_unlocked", "yesterday", "id"]], "delivered"),
        ("deferred", [["reward_unlocked"]], "deferred"),
        ("orders", {"O-1": {"at": T0, "net": 100, "eff": 100_000, "ref": 0}}, "pts"),
        ("orders", {"O-1": {"at": T0, "net": "100", "eff": 0, "pts": 1, "ref": 0}}, "net"),
        ("orders", {"O-1": [T0, 100, 100_000, 1, 0]}, "orders"),
        ("returns", {"R-1": {"order": "O-1", "at": T0}}, "refund"),
        ("returns", {"R-1": {"order": 7, "at": T0, "refund": 100}}, "order"),
        ("past", {"orders": 1, "counted": 1, "spend": 0, "held": 0, "first": T0}, "last"),
        ("past", [1, 1, 0, 0, T0, T0], "past"),
        ("ids", {"o": {"O-1": T0}}, "r"),
        ("ids", {"o": {"O-1": "yesterday"}, "r": {}}, "ids"),
    ],
)
def test_a_stored_leaf_of_the_wrong_shape_is_refused_naming_it(
    key: str, value: Any, field: str
) -> None:
    hostile = dict(plain(shopper(A, {"email": "hash-a"})), **{key: value})
    with pytest.raises(StateFormatError) as raised:
        decode_state(pack(orjson.dumps(hostile)))
    assert key in str(raised.value) and field in str(raised.value)


def test_a_state_carried_as_json_by_a_fold_message_folds_into_records() -> None:
    winner = shopper(A, {"email": "hash-a"}, profiling=True)
    loser = shopper(B, {"loyalty_id": "L-1"}, n0=10)
    in_memory = fold(winner, loser, RULES)
    through_kafka = fold(winner, plain(loser), RULES)
    assert through_kafka == in_memory
    assert through_kafka["consent"]["profiling"] == records.Grant(granted=False, at=T0 + 11_000)
    assert isinstance(through_kafka["session"], records.Session)
    assert through_kafka["session"].views == {"SKU-1": 2}
    assert through_kafka["carts"]["C-1"].items == {"SKU-1": (4, 450)}
    assert through_kafka["carts"]["C-1"].value == 1800


def test_a_fold_message_holding_records_is_sent_as_the_json_of_its_dicts() -> None:
    sent: list[bytes | None] = []
    output = Output(add=lambda topic, key, value: sent.append(value), topic=lambda n: n)
    state = shopper(B, {"loyalty_id": "L-1"})
    output.send("customer.events", A, {"k": "fold", "state": state})
    assert orjson.loads(sent[0] or b"") == {"k": "fold", "state": plain(state)}


def test_the_profile_and_the_export_show_what_they_showed() -> None:
    state = shopper(A, {"email": "hash-a"})
    view = project(state, RULES)
    assert view["consent_email_marketing"] == "granted"
    assert view["consent_profiling"] == "refused"
    ev = {"at": T0 + 5000, "props": {"request_id": "r-1"}}
    doc = everything(state, ev, view)
    assert orjson.dumps(doc) == orjson.dumps(everything(plain(state), ev, view))
    assert doc["consent"]["profiling"] == {"granted": False, "at": T0 + 1000}
    assert orjson.loads(orjson.dumps(doc["carts"])) == {
        "C-1": {
            "items": {"SKU-1": [2, 450]},
            "at": T0 + 3000,
            "since": T0 + 3000,
            "closed_at": None,
            "reminded": None,
            "value": 900,
        }
    }
    assert view["open_cart_value_minor"] == 900
