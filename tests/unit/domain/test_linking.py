"""Identity resolution across partitions: one shopper ends up as one profile with one balance,
the strongest identifier's home survives, the per-profile limits hold, and the outcome does
not depend on delivery order or on redelivery."""

import itertools
import random
from typing import Any

import pytest

from touchstream.config.rules import load_rules
from touchstream.domain.identity import home_of, mint_customer_id
from touchstream.domain.linking import handle, is_redirect, redirect
from touchstream.offline import OfflineStage

RULES = load_rules(None)
T0 = 1_795_179_807_512  # 2026-11-20T13:03:27.512Z
MIN = 60_000
DAY = 86_400_000
INBOUND_PARTITIONS = 3


def ev(event_id: str, at: int, ids: dict[str, str], type_: str = "page_view", **props: Any):
    """An internal event as ingest emits it, without its inbound position (see ``numbered``)."""
    return {
        "id": event_id,
        "type": type_,
        "at": T0 + at,
        "ch": "web",
        "src": "web-eu",
        "ids": ids,
        "cid": mint_customer_id(ids),
        "props": props or {"url": "https://shop.example.com/"},
        "ts": T0 + at + 1_000,
    }


def purchase(event_id: str, at: int, ids: dict[str, str], order_id: str, total: int):
    return ev(
        event_id,
        at,
        ids,
        "purchase",
        order_id=order_id,
        total_minor=total,
        discount_minor=0,
        currency="EUR",
        items=[],
    )


def signup(event_id: str, at: int, ids: dict[str, str]):
    return ev(event_id, at, ids, "loyalty_signup", program="default")


def numbered(events: list[dict[str, Any]], start: int = 0) -> list[dict[str, Any]]:
    """Give events inbound positions in the order they arrive: round-robin over inbound
    partitions, offsets increasing per partition (Kafka's per-partition order)."""
    out = []
    for i, e in enumerate(events, start=start):
        out.append(dict(e, **{"in": [i % INBOUND_PARTITIONS, i // INBOUND_PARTITIONS]}))
    return out


class Shop:
    """The customer stage fed like the running system: arriving events get inbound positions
    in arrival order; ``seed`` picks the interleaving of the messages between homes."""

    def __init__(self, seed: int | None = None):
        self.stage = OfflineStage(RULES, seed=seed)
        self.arrived = 0

    def send(self, *events: dict[str, Any]) -> "Shop":
        """These events arrive together, then everything they cause settles."""
        self.stage.submit(numbered(list(events), start=self.arrived))
        self.arrived += len(events)
        self.stage.drain()
        return self

    def send_one_by_one(self, events: list[dict[str, Any]]) -> "Shop":
        for e in events:
            self.send(e)
        return self

    def decisions(self, kind: str) -> list[dict[str, Any]]:
        return [d.payload for d in self.stage.decisions if d.kind == kind]

    def live(self) -> dict[str, dict[str, Any]]:
        return self.stage.live()

    def profile(self, kind: str, value: str) -> dict[str, Any]:
        """The live profile the identifier belongs to now."""
        cid = self.stage.resolve(home_of(kind, value))
        assert cid is not None, f"no profile for {kind}={value}"
        return self.stage.table[cid]


def ids_of(state: dict[str, Any]) -> dict[str, list[str]]:
    return {kind: sorted(values) for kind, values in state["identifiers"].items() if values}


# --- one shopper across touchpoints -------------------------------------------------------

ANON = {"anonymous_id": "anon-1"}
LOGIN = {"email": "hash-ann", "anonymous_id": "anon-1"}
IDENTIFY = {"loyalty_id": "L-100", "email": "hash-ann"}
POS = {"loyalty_id": "L-100"}


def journey() -> list[dict[str, Any]]:
    return [
        ev("browse-1", 0, ANON),
        ev("browse-2", 5 * MIN, ANON),
        ev("identify", 10 * MIN, IDENTIFY),  # loyalty app links card and email
        ev("login", 20 * MIN, LOGIN),
        purchase("pos-1", 60 * MIN, POS, "R-1", 12_345),
    ]


@pytest.mark.parametrize("seed", [None, 1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("together", [True, False], ids=["together", "one-by-one"])
def test_browse_login_and_store_purchase_end_up_in_one_profile(seed, together):
    shop = Shop(seed)
    if together:
        shop.send(*journey())
    else:
        shop.send_one_by_one(journey())

    live = shop.live()
    member = home_of("loyalty_id", "L-100")
    assert list(live) == [member]
    profile = live[member]
    assert ids_of(profile) == {
        "loyalty_id": ["L-100"],
        "email": ["hash-ann"],
        "anonymous_id": ["anon-1"],
    }
    for kind, values in profile["identifiers"].items():
        for value in values:
            assert shop.stage.resolve(home_of(kind, value)) == member, (kind, value)
    assert profile["points"] == 123
    assert profile["qualifying_spend_minor"] == 12_345
    assert profile["events"] == {"page_view": 4, "purchase": 1}
    assert profile["first_seen_at"] == T0


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_events_arriving_before_their_link_completes_ask_for_it_once(seed):
    """A shopper's burst of events all carry an email the profile does not hold yet. The first
    asks the email's home to join; the rest must not ask again while that link is on its way
    (each ask set off another merge/absorb/release round), and the link still completes."""
    shop = Shop(seed)
    burst = [ev(f"b-{i}", i * MIN, {"loyalty_id": "L-7", "email": "hash-eve"}) for i in range(8)]
    counted: dict[str, int] = {}
    stage = shop.stage
    apply = stage._apply

    def counting(partition, target, step):
        for _, out in step.sends:
            counted[out.get("k", "ev")] = counted.get(out.get("k", "ev"), 0) + 1
        apply(partition, target, step)

    stage._apply = counting  # type: ignore[method-assign]
    stage.submit(numbered(burst))  # all eight queued before any link message moves
    stage.drain()

    member = home_of("loyalty_id", "L-7")
    assert list(shop.live()) == [member]
    assert ids_of(shop.live()[member]) == {"loyalty_id": ["L-7"], "email": ["hash-eve"]}
    assert shop.live()[member]["events"] == {"page_view": 8}
    assert shop.live()[member]["asked"] == [], "a joined link is no longer asked for"
    assert counted.get("release", 0) == 0, counted
    assert counted["merge"] <= 2, counted  # the ask, and the weaker home's reply


def test_two_profiles_with_points_merge_into_one_balance():
    shop = Shop().send(
        purchase("web-1", 0, {"email": "hash-bo"}, "W-1", 10_000),
        signup("join", MIN, {"loyalty_id": "L-200"}),
        purchase("pos-1", 2 * MIN, {"loyalty_id": "L-200"}, "R-1", 5_000),
    )
    before = {cid: s["points"] for cid, s in shop.live().items()}
    email_home, member = home_of("email", "hash-bo"), home_of("loyalty_id", "L-200")
    assert before == {email_home: 100, member: 150}

    shop.send(ev("identify", 3 * MIN, {"loyalty_id": "L-200", "email": "hash-bo"}))

    assert list(shop.live()) == [member]
    survivor = shop.live()[member]
    assert survivor["points"] == 250
    assert survivor["qualifying_spend_minor"] == 15_000
    assert set(survivor["orders"]) == {"W-1", "R-1"}
    assert shop.stage.resolve(email_home) == member
    merges = [(m["survivor"], m["absorbed"]) for m in shop.decisions("merged")]
    assert merges == [(member, email_home)]


# --- convergence --------------------------------------------------------------------------


def crowd() -> list[dict[str, Any]]:
    """Four shoppers; their links form chains that the events introduce out of chain order.
    Orders stay small so every purchase earns at the base tier whatever the order."""
    return [
        # Ann: anon-1 -> email -> loyalty card, plus an app device that saw anon-2
        ev("a1", 0, {"anonymous_id": "anon-1"}),
        ev("a2", 1 * MIN, {"device_id": "dev-a", "anonymous_id": "anon-2"}),
        ev("a3", 2 * MIN, {"email": "hash-ann", "anonymous_id": "anon-1"}),
        purchase("a4", 3 * MIN, {"loyalty_id": "L-ann"}, "RA-1", 4_000),
        ev("a5", 4 * MIN, {"email": "hash-ann", "device_id": "dev-a"}),
        signup("a6", 5 * MIN, {"loyalty_id": "L-ann"}),
        ev("a7", 6 * MIN, {"loyalty_id": "L-ann", "email": "hash-ann"}),
        purchase("a8", 7 * MIN, {"email": "hash-ann"}, "WA-1", 2_500),
        purchase("a9", 8 * MIN, {"anonymous_id": "anon-2"}, "WA-2", 1_000),
        # Bo: two emails chained through a shared device, a phone and an anonymous web id:
        # phone -> anon-3 and mail-2 -> phone come before mail-1 -> device -> mail-2
        purchase("b1", 0, {"anonymous_id": "anon-3"}, "WB-1", 3_000),
        ev("b2", 2 * MIN, {"phone": "hash-p1", "anonymous_id": "anon-3"}),
        purchase("b3", 3 * MIN, {"email": "hash-bo2", "phone": "hash-p1"}, "WB-2", 2_000),
        purchase("b4", 4 * MIN, {"email": "hash-bo1", "device_id": "dev-b"}, "WB-3", 1_500),
        ev("b5", 5 * MIN, {"email": "hash-bo2", "device_id": "dev-b"}),
        # Cy: CRM customer with a card; the card's email and the app device come later
        purchase("c1", 0, {"email": "hash-cy"}, "WC-1", 2_200),
        ev("c2", 1 * MIN, {"device_id": "dev-c", "email": "hash-cy"}),
        ev("c3", 2 * MIN, {"customer_id": "CRM-9", "loyalty_id": "L-cy"}),
        signup("c4", 3 * MIN, {"loyalty_id": "L-cy", "email": "hash-cy"}),
        purchase("c5", 4 * MIN, {"customer_id": "CRM-9"}, "RC-1", 900),
        # Di: browses, never identified
        ev("d1", 0, {"anonymous_id": "anon-9"}),
        ev("d2", 1 * MIN, {"anonymous_id": "anon-9"}),
    ]


def snapshot(shop: Shop) -> list[tuple[Any, ...]]:
    """What each shopper ends up with: identifiers, balance, spend, orders; then the id."""
    out = []
    for cid, s in shop.live().items():
        ids = tuple(sorted((k, tuple(v)) for k, v in ids_of(s).items()))
        orders = tuple(sorted((o, r.net, r.pts) for o, r in s["orders"].items()))
        out.append((ids, s["points"], s["qualifying_spend_minor"], orders, cid))
    return sorted(out)


def expected_crowd() -> dict[str, tuple[int, int]]:
    """(points, spend) per shopper, keyed by the home of their strongest identifier."""
    return {
        home_of("loyalty_id", "L-ann"): (100 + 40 + 25 + 10, 7_500),
        home_of("email", "hash-bo2"): (30 + 20 + 15, 6_500),  # seen before hash-bo1
        "CRM-9": (100 + 22 + 9, 3_100),
        home_of("anonymous_id", "anon-9"): (0, 0),
    }


def test_crowd_settles_to_one_profile_per_shopper():
    shop = Shop().send(*crowd())

    got = {cid: (s["points"], s["qualifying_spend_minor"]) for cid, s in shop.live().items()}
    assert got == expected_crowd()
    assert ids_of(shop.profile("email", "hash-bo2")) == {
        "email": ["hash-bo1", "hash-bo2"],
        "phone": ["hash-p1"],
        "device_id": ["dev-b"],
        "anonymous_id": ["anon-3"],
    }
    assert shop.decisions("link_refused") == []


@pytest.mark.parametrize("seed", range(30))
def test_crowd_outcome_does_not_depend_on_how_messages_interleave(seed):
    baseline = snapshot(Shop().send(*crowd()))

    assert snapshot(Shop(seed).send(*crowd())) == baseline


def _orders_of_arrival() -> list[tuple[str, list[dict[str, Any]]]]:
    events = crowd()
    orders = [("reversed", events[::-1])]
    for n in range(12):
        shuffled = list(events)
        random.Random(n).shuffle(shuffled)
        orders.append((f"shuffled-{n}", shuffled))
    return orders


def test_crowd_outcome_does_not_depend_on_arrival_order():
    """Reversed and shuffled arrival of the same events, each under a few interleavings."""
    baseline = snapshot(Shop().send(*crowd()))
    served_as = {row[0]: row[-1] for row in baseline}
    other_ledger, other_id = [], []
    for name, arrival in _orders_of_arrival():
        for seed in (None, 1, 2):
            got = snapshot(Shop(seed).send(*arrival))
            if [row[:-1] for row in got] != [row[:-1] for row in baseline]:
                other_ledger.append((name, seed))
                continue
            for row in got:
                if row[-1] != served_as[row[0]]:
                    other_id.append((row[0], row[-1]))

    # what the shoppers see: identifiers, balances, spend, orders
    assert other_ledger == []
    # Which id serves a shopper whose strongest identifiers tie in kind (Bo's two emails) may
    # follow arrival: "the older profile" is the one whose home was created by the earlier
    # event, and a rank never changes once given (that is what rules out redirect cycles).
    # It is always the home of one of the tied identifiers.
    bo_homes = {home_of("email", "hash-bo1"), home_of("email", "hash-bo2")}
    assert {got for _, got in other_id} <= bo_homes
    assert all(served_as[shopper] in bo_homes for shopper, _ in other_id)


@pytest.mark.parametrize("together", [True, False], ids=["together", "one-by-one"])
def test_shopper_with_a_card_settles_the_same_whatever_the_arrival_order(together):
    """Every arrival order of a shopper's four linking events, under a few interleavings."""
    base = [
        ev("x1", 0, {"anonymous_id": "anon-x"}),
        purchase("x2", MIN, {"email": "hash-x", "anonymous_id": "anon-x"}, "X-1", 2_000),
        signup("x3", 2 * MIN, {"loyalty_id": "L-x", "device_id": "dev-x"}),
        ev("x4", 3 * MIN, {"device_id": "dev-x", "email": "hash-x"}),
    ]
    tail = [purchase("x5", 4 * MIN, {"loyalty_id": "L-x"}, "X-2", 1_000)]
    results = set()
    for first_four in itertools.permutations(base):
        arrival = [*first_four, *tail]
        for seed in (None, 11, 12):
            shop = Shop(seed)
            if together:
                shop.send(*arrival)
            else:
                shop.send_one_by_one(arrival)
            results.add(tuple(snapshot(shop)))
    assert len(results) == 1
    ((row,),) = results
    assert row[1:3] == (100 + 20 + 10, 3_000)
    assert row[-1] == home_of("loyalty_id", "L-x")


def test_an_order_both_profiles_hold_counts_the_same_whatever_the_interleaving():
    # The same receipt reached two profiles of one shopper: her gold profile (first email)
    # earned it at 1.5x, the profile of her second email at 1.0x. An app device and then her
    # card link everything. However the merge messages interleave, she must end with one
    # balance.
    events = [
        purchase("big", 0, {"email": "hash-gold"}, "BIG", 100_000),
        purchase("rcpt-web", MIN, {"email": "hash-gold"}, "SHARED", 10_000),
        purchase("rcpt-pos", MIN, {"email": "hash-new"}, "SHARED", 10_000),
        ev("app-1", 2 * MIN, {"email": "hash-gold", "device_id": "dev-g"}),
        ev("app-2", 3 * MIN, {"email": "hash-new", "device_id": "dev-g"}),
        ev("card", 4 * MIN, {"loyalty_id": "L-g", "email": "hash-new"}),
    ]
    balances = {}
    for seed in [None, *range(30)]:
        (profile,) = Shop(seed).send(*events).live().values()
        balances[seed] = (profile["points"], profile["orders"]["SHARED"].pts)

    assert len(set(balances.values())) == 1, balances


# --- who survives -------------------------------------------------------------------------

STRONGER_WEAKER = [
    ({"customer_id": "CRM-1"}, {"loyalty_id": "L-1"}),
    ({"loyalty_id": "L-1"}, {"email": "hash-e1"}),
    ({"email": "hash-e1"}, {"device_id": "dev-1"}),
    ({"customer_id": "CRM-1"}, {"device_id": "dev-1"}),
]


@pytest.mark.parametrize("older", ["weaker", "stronger"])
@pytest.mark.parametrize(
    ("stronger", "weaker"),
    STRONGER_WEAKER,
    ids=[f"{next(iter(s))}>{next(iter(w))}" for s, w in STRONGER_WEAKER],
)
def test_profile_of_the_stronger_identifier_survives_whatever_its_age(stronger, weaker, older):
    first, second = (weaker, stronger) if older == "weaker" else (stronger, weaker)
    shop = Shop().send(
        purchase("first", 0, first, "O-1", 1_000),
        purchase("second", DAY, second, "O-2", 2_000),
    )
    assert len(shop.live()) == 2

    shop.send(ev("link", 2 * DAY, {**stronger, **weaker}))

    strong_home = home_of(*next(iter(stronger.items())))
    weak_home = home_of(*next(iter(weaker.items())))
    assert list(shop.live()) == [strong_home]
    assert shop.stage.resolve(weak_home) == strong_home
    assert shop.live()[strong_home]["points"] == 30
    assert [(m["survivor"], m["absorbed"]) for m in shop.decisions("merged")] == [
        (strong_home, weak_home)
    ]


def test_chain_of_four_kinds_ends_at_the_crm_id_even_though_it_came_last():
    shop = Shop().send_one_by_one(
        [
            purchase("d", 0, {"device_id": "dev-1"}, "O-1", 1_000),
            purchase("e", DAY, {"email": "hash-e1"}, "O-2", 1_000),
            purchase("l", 2 * DAY, {"loyalty_id": "L-1"}, "O-3", 1_000),
            purchase("c", 3 * DAY, {"customer_id": "CRM-1"}, "O-4", 1_000),
            ev("link-1", 4 * DAY, {"email": "hash-e1", "device_id": "dev-1"}),
            ev("link-2", 5 * DAY, {"loyalty_id": "L-1", "email": "hash-e1"}),
            ev("link-3", 6 * DAY, {"customer_id": "CRM-1", "loyalty_id": "L-1"}),
        ]
    )

    assert list(shop.live()) == ["CRM-1"]
    assert shop.live()["CRM-1"]["points"] == 40
    for kind, value in [("device_id", "dev-1"), ("email", "hash-e1"), ("loyalty_id", "L-1")]:
        assert shop.stage.resolve(home_of(kind, value)) == "CRM-1"


# --- per-profile limits -------------------------------------------------------------------


def shared_device_logins(n: int) -> list[dict[str, Any]]:
    """A shop-floor tablet: ``n`` different shoppers log in on it, one after the other."""
    return [
        ev(f"login-{i}", i * MIN, {"email": f"hash-m{i}", "device_id": "kiosk"})
        for i in range(1, n + 1)
    ]


def test_sixth_email_on_one_device_is_refused_and_stays_a_separate_profile():
    shop = Shop().send_one_by_one(shared_device_logins(6))

    cluster = shop.profile("device_id", "kiosk")
    assert cluster["identifiers"]["email"] == [f"hash-m{i}" for i in range(1, 6)]
    sixth = home_of("email", "hash-m6")
    assert shop.stage.resolve(sixth) == sixth
    assert ids_of(shop.live()[sixth]) == {"email": ["hash-m6"]}
    assert len(shop.live()) == 2
    refusals = shop.decisions("link_refused")
    assert len(refusals) == 1
    assert refusals[0]["limit"] == "email"
    assert {refusals[0]["customer_id"], refusals[0]["other_customer_id"]} == {
        cluster["customer_id"],
        sixth,
    }

    # the sixth shopper logs in on the tablet again: a new event, a new inbound record
    shop.send(ev("login-6-again", 30 * MIN, {"email": "hash-m6", "device_id": "kiosk"}))

    assert len(shop.decisions("link_refused")) == 1
    assert len(shop.live()) == 2
    assert len(shop.profile("device_id", "kiosk")["identifiers"]["email"]) == 5


def test_email_limit_holds_when_the_logins_arrive_together():
    # the same six logins, close enough in time that their merges are in flight together
    broken = {}
    for seed in [None, *range(12)]:
        shop = Shop(seed).send(*shared_device_logins(6))
        emails = sorted(len(s["identifiers"].get("email", ())) for s in shop.live().values())
        refused = [r["limit"] for r in shop.decisions("link_refused")]
        if (emails, refused) != ([1, 5], ["email"]):
            broken[seed] = {"emails per profile": emails, "refusals": refused}

    assert broken == {}


def test_sixth_email_on_a_loyalty_card_is_refused_once():
    card = {"loyalty_id": "L-5"}
    shop = Shop().send_one_by_one(
        [ev(f"e{i}", i * MIN, {**card, "email": f"hash-m{i}"}) for i in range(1, 6)]
        + [purchase("pos", 10 * MIN, {**card, "email": "hash-m6"}, "R-1", 4_200)]
    )

    member = shop.live()[home_of("loyalty_id", "L-5")]
    assert member["identifiers"]["email"] == [f"hash-m{i}" for i in range(1, 6)]
    assert member["points"] == 42  # the purchase itself still earns on the card
    refusals = shop.decisions("link_refused")
    assert [(r["identifier_kind"], r["identifier"], r["limit"]) for r in refusals] == [
        ("email", "hash-m6", "email")
    ]

    shop.send(ev("again", 20 * MIN, {**card, "email": "hash-m6"}))

    assert len(shop.decisions("link_refused")) == 1
    assert shop.live()[home_of("loyalty_id", "L-5")]["identifiers"]["email"] == [
        f"hash-m{i}" for i in range(1, 6)
    ]


def test_second_loyalty_card_cannot_join_a_profile_that_has_one():
    shop = Shop().send_one_by_one(
        [
            signup("join-1", 0, {"loyalty_id": "L-1", "email": "hash-ann"}),
            purchase("pos-2", MIN, {"loyalty_id": "L-2"}, "R-2", 3_000),
            ev("identify", 2 * MIN, {"loyalty_id": "L-2", "email": "hash-ann"}),
        ]
    )

    first, second = home_of("loyalty_id", "L-1"), home_of("loyalty_id", "L-2")
    live = shop.live()
    assert set(live) == {first, second}
    assert ids_of(live[first]) == {"loyalty_id": ["L-1"], "email": ["hash-ann"]}
    assert ids_of(live[second]) == {"loyalty_id": ["L-2"]}
    assert (live[first]["points"], live[second]["points"]) == (100, 30)
    refusals = shop.decisions("link_refused")
    assert [r["limit"] for r in refusals] == ["loyalty_id"]
    merges = [(m["survivor"], m["absorbed"]) for m in shop.decisions("merged")]
    assert merges == [(first, home_of("email", "hash-ann"))]  # only the email joined card 1


# --- redelivery ---------------------------------------------------------------------------

CARD, MAIL, TABLET = {"loyalty_id": "L-9"}, {"email": "hash-eve"}, {"device_id": "tab-9"}
CARD_HOME, MAIL_HOME, TABLET_HOME = (home_of(*next(iter(i.items()))) for i in (CARD, MAIL, TABLET))


def inbound(e: dict[str, Any], partition: int, offset: int) -> dict[str, Any]:
    return dict(e, **{"in": [partition, offset]})


def deliver(table: dict[str, Any], target: str, msg: dict[str, Any]):
    """One delivery to one record, as the agent does it: handle, then write the table."""
    step = handle(target, table.get(target), msg, RULES)
    if step.store is not None:
        table[target] = step.store
    return step


def deliver_via_redirects(table: dict[str, Any], msg: dict[str, Any]):
    """Deliver an event to its home and follow the redirects it is forwarded along; the
    step of the live profile that finally handles it, and the records it passed through."""
    target, hops = msg["cid"], []
    step = deliver(table, target, msg)
    while step.forwarded:
        hops.append(target)
        ((target, msg),) = step.sends
        step = deliver(table, target, msg)
    return step, [*hops, target]


def test_redelivered_fold_is_skipped_and_earns_nothing():
    table: dict[str, Any] = {}
    deliver(table, CARD_HOME, inbound(purchase("c", 0, CARD, "R-1", 5_000), 0, 1))
    deliver(table, MAIL_HOME, inbound(purchase("m", 0, MAIL, "W-1", 2_000), 1, 1))
    fold_msg = {"k": "fold", "state": table[MAIL_HOME], "at": T0, "id": "identify"}

    first = deliver(table, CARD_HOME, fold_msg)
    after_first = dict(table[CARD_HOME])
    again = deliver(table, CARD_HOME, fold_msg)

    assert table[CARD_HOME]["points"] == 70
    assert [d.kind for d in first.decisions] == ["merged"]
    assert again.duplicate
    assert again.decisions == [] and again.sends == [] and again.store is None
    assert table[CARD_HOME] == after_first


def test_fold_redelivered_after_the_survivor_was_absorbed_itself_is_still_skipped():
    table: dict[str, Any] = {}
    deliver(table, CARD_HOME, inbound(purchase("c", 0, CARD, "R-1", 5_000), 0, 1))
    deliver(table, MAIL_HOME, inbound(purchase("m", 0, MAIL, "W-1", 2_000), 1, 1))
    deliver(table, "CRM-9", inbound(purchase("k", 0, {"customer_id": "CRM-9"}, "C-1", 1_000), 2, 1))
    mail_fold = {"k": "fold", "state": table[MAIL_HOME], "at": T0, "id": "identify"}
    deliver(table, CARD_HOME, mail_fold)
    # the card's profile is then absorbed by the CRM customer: it folds and becomes a redirect
    card_fold = {"k": "fold", "state": table[CARD_HOME], "at": T0, "id": "crm-link"}
    deliver(table, "CRM-9", card_fold)
    table[CARD_HOME] = redirect(table[CARD_HOME], "CRM-9")
    assert table["CRM-9"]["points"] == 80

    at_card = deliver(table, CARD_HOME, mail_fold)  # the old fold of the email, redelivered
    assert at_card.forwarded and at_card.sends == [("CRM-9", mail_fold)]
    at_root = deliver(table, "CRM-9", mail_fold)

    assert at_root.duplicate and at_root.decisions == []
    assert table["CRM-9"]["points"] == 80


def test_redelivered_event_is_a_duplicate_and_earns_once():
    table: dict[str, Any] = {}
    buy = inbound(purchase("pos-1", 0, CARD, "R-1", 5_000), 0, 7)

    first = deliver(table, CARD_HOME, buy)
    again = deliver(table, CARD_HOME, buy)

    assert [d.payload.get("outcome") for d in first.decisions] == ["points_earned"]
    assert again.duplicate
    assert again.decisions == [] and again.sends == []
    assert table[CARD_HOME]["points"] == 50
    assert table[CARD_HOME]["events"] == {"purchase": 1}


def merged_shop() -> Shop:
    """Eve's email and tablet profiles, each with a purchase, absorbed by her card."""
    shop = Shop().send(
        purchase("m1", 0, MAIL, "W-1", 2_000),
        purchase("t1", 0, TABLET, "T-1", 1_000),
        purchase("c1", 0, CARD, "R-1", 5_000),
    )
    shop.send(ev("link-1", MIN, {**CARD, **MAIL}), ev("link-2", MIN, {**MAIL, **TABLET}))
    assert list(shop.live()) == [CARD_HOME]
    assert is_redirect(shop.stage.table[MAIL_HOME]) and is_redirect(shop.stage.table[TABLET_HOME])
    assert shop.live()[CARD_HOME]["points"] == 80
    return shop


def test_event_for_an_absorbed_home_is_forwarded_and_applied_once_at_the_survivor():
    table = merged_shop().stage.table
    late = inbound(purchase("web-2", 2 * MIN, MAIL, "W-2", 3_300), 1, 50)

    at_home = deliver(table, MAIL_HOME, late)

    assert at_home.forwarded
    assert at_home.sends == [(CARD_HOME, late)]
    assert at_home.store is None and at_home.decisions == []
    assert is_redirect(table[MAIL_HOME])

    first = deliver(table, CARD_HOME, late)
    again = deliver(table, CARD_HOME, late)

    assert [d.payload.get("outcome") for d in first.decisions] == ["points_earned"]
    assert first.sends == []  # the email is already the card's: nothing to link
    assert again.duplicate and again.decisions == []
    assert table[CARD_HOME]["points"] == 80 + 33
    assert set(table[CARD_HOME]["orders"]) == {"W-1", "T-1", "R-1", "W-2"}


def test_forwarded_events_are_deduplicated_per_route_at_the_survivor():
    table = merged_shop().stage.table
    # three inbound records of the same inbound partition 2, for three different homes; the
    # survivor's own record has the highest offset and is applied first, the forwarded ones
    # reach it later and out of offset order (they travelled through different redirects)
    own = inbound(purchase("pos-2", 2 * MIN, CARD, "R-2", 1_100), 2, 40)
    via_mail = inbound(purchase("web-2", 2 * MIN, MAIL, "W-2", 2_200), 2, 30)
    via_tablet = inbound(purchase("app-2", 2 * MIN, TABLET, "T-2", 4_400), 2, 20)

    deliver(table, CARD_HOME, own)
    for forwarded in (via_mail, via_tablet):
        step, path = deliver_via_redirects(table, forwarded)
        assert path[0] == forwarded["cid"] and path[-1] == CARD_HOME
        assert not step.duplicate

    assert table[CARD_HOME]["points"] == 80 + 11 + 22 + 44

    # the mail home's record is redelivered (a rewound consumer): forwarded again, earns nothing
    redelivered, _ = deliver_via_redirects(table, via_mail)

    assert redelivered.duplicate
    assert table[CARD_HOME]["points"] == 80 + 11 + 22 + 44
    assert table[CARD_HOME]["src"][f"{MAIL_HOME}/2"] == 30
    assert table[CARD_HOME]["src"][f"{TABLET_HOME}/2"] == 20
    assert table[CARD_HOME]["src"]["2"] == 40


def test_a_record_that_stores_nothing_leaves_the_state_it_read_as_it_was(monkeypatch):
    """The worker hands the core the state a batch wrote last, not a copy of it (the state
    cache, ``tables.customers``): a record whose step stores nothing (a duplicate, a forward, a
    link already settled, a timer not due) must not have changed what it read, or the batch
    would write a state no step decided. Checked over the bench's traffic, every link record
    and timer included, with each event delivered twice."""
    import orjson

    from touchstream import offline
    from touchstream.bench.replay import bench_events
    from touchstream.domain.records import json_default

    checked = {"records": 0, "unchanged": 0}

    def guarded(call):
        def run(target, state, *args):
            before = orjson.dumps(state, default=json_default)
            step = call(target, state, *args)
            checked["records"] += 1
            if step.store is None and not step.delete:
                assert orjson.dumps(state, default=json_default) == before, (target, args[0])
                checked["unchanged"] += 1
            return step

        return run

    monkeypatch.setattr(offline, "handle", guarded(offline.handle))
    monkeypatch.setattr(offline, "fire", guarded(offline.fire))
    events = bench_events(4_000, 400, T0)
    stage = OfflineStage(RULES, partitions=8)
    for start in range(0, len(events), 100):  # links settle as the traffic goes on
        stage.submit(events[start : start + 100])
        stage.drain()
    stage.submit(events)  # redelivered: duplicates, many forwarded to where a link moved them
    stage.drain()

    assert checked["unchanged"] > len(events)  # the duplicates at least
    assert checked["records"] > 2 * len(events)  # link records and timers besides the events
