"""Event-time timers of the pure core: cart reminders, session ends, quiet hours, erasure.

Driven through the offline stage (the oracle), which fires timers exactly as the agent does:
when a partition's clock passes them, before the record that moved the clock is applied.
"""

import dataclasses
import json
from pathlib import Path

import fastjsonschema
import pytest

import touchstream.schemas
from touchstream.config.rules import QuietHours, load_rules
from touchstream.domain.identity import home_of
from touchstream.domain.sessions import published
from touchstream.domain.timers import next_due, pending
from touchstream.offline import OfflineStage
from touchstream.simulator.factory import internal

RULES = load_rules(None)
MIN = 60_000
HOUR = 60 * MIN
T0 = 1_795_083_600_000  # 2026-11-19T10:20:00Z
IDS = {"loyalty_id": "L-1"}
CID = home_of("loyalty_id", "L-1")
OTHER = {"loyalty_id": "L-OTHER"}


class Run:
    """One shopper (and a bystander whose events move the clock) through the offline stage."""

    def __init__(self, rules=RULES, consent=True) -> None:
        self.stage = OfflineStage(rules, partitions=1)
        self.n = 0
        if consent:
            self.send("consent_updated", T0 - HOUR, purposes={"email_marketing": True})

    def send(self, type_, at, ids=IDS, rt=None, **props):
        self.n += 1
        cid = home_of(*next(iter(ids.items())))
        ev = internal(cid, ids, type_, f"e{self.n}", self.n, at=at, **props)
        ev["ts"] = at + 1_000  # ingest saw it live
        if rt is not None:  # the record's broker timestamp, as ingest records it
            ev["rt"] = rt
            ev["ts"] = rt + 1_000
        self.stage.submit([ev])
        self.stage.drain()
        return self

    def add(self, at, sku="SKU-1", qty=1, price=2_500, cart="C-1"):
        return self.send(
            "add_to_cart", at, cart_id=cart, sku=sku, quantity=qty, unit_price_minor=price
        )

    def bystander(self, at, rt=None):
        return self.send("page_view", at, ids=OTHER, rt=rt, url="/")

    def decided(self, kind_prefix="trigger"):
        return [d for d in self.stage.decisions if d.kind.startswith(kind_prefix)]

    def triggers(self, type_="abandoned_cart"):
        return [d.payload for d in self.decided("trigger_out") if d.payload["type"] == type_]

    def state(self):
        return self.stage.table[CID]


def test_a_cart_with_two_items_gets_one_reminder_after_the_delay_and_one_at_24_hours():
    run = Run().add(T0, "SKU-1", 2, 2_500).add(T0 + MIN, "SKU-2", 1, 1_000)

    run.bystander(T0 + MIN + 59 * MIN)  # clock just short of the delay: nothing yet
    assert run.triggers() == []
    run.bystander(T0 + MIN + 60 * MIN)
    (first,) = run.triggers()
    assert first["evidence"]["value_minor"] == 6_000
    assert first["evidence"]["items"] == [
        {"sku": "SKU-1", "quantity": 2, "unit_price_minor": 2_500},
        {"sku": "SKU-2", "quantity": 1, "unit_price_minor": 1_000},
    ]
    assert first["occurred_at"] == "2026-11-19T11:21:00.000Z"  # its due time, not the clock's
    assert first["channels"] == ["email"]

    run.bystander(T0 + 10 * HOUR)
    assert len(run.triggers()) == 1
    run.bystander(T0 + MIN + 24 * HOUR)
    assert [t["evidence"]["reminder"] for t in run.triggers()] == [1, 2]
    run.bystander(T0 + 30 * 24 * HOUR)
    assert len(run.triggers()) == 2  # the list of delays is used up
    assert pending(run.state(), RULES) == 0


def test_a_purchase_on_any_channel_before_the_delay_cancels_the_reminder():
    run = Run().add(T0, qty=2)
    run.send("purchase", T0 + 30 * MIN, order_id="O-1", total_minor=5_000, items=[])
    run.bystander(T0 + 3 * 24 * HOUR)

    assert run.triggers() == []


def test_the_timer_fires_before_the_event_that_moved_the_clock_past_it():
    # docs/domain.md, "Event time and timers": the purchase came after the due time, so the reminder went out
    run = Run().add(T0, qty=2)
    run.send("purchase", T0 + 61 * MIN, order_id="O-1", total_minor=5_000, items=[])

    assert len(run.triggers()) == 1
    run.bystander(T0 + 3 * 24 * HOUR)
    assert len(run.triggers()) == 1  # the cart is closed: no second reminder


def test_a_privileged_command_read_ahead_of_a_backlog_sends_no_reminder_before_the_purchase():
    """docs/domain.md, "Event time and timers": behind a backlog a worker reads the privileged
    input's few records before the ordinary events around them (they are separate topics).
    Another shopper's consent grant dated two hours on must not move the clock past the cart
    whose purchase still waits in ``touchpoints``: the shopper bought, and gets no reminder."""
    run = Run()
    other = home_of("loyalty_id", "L-OTHER")
    grant = internal(other, OTHER, "consent_updated", "g-1", 1, at=T0 + 2 * HOUR)
    grant.update(ts=T0 + 2 * HOUR + 1_000, props={"purposes": {"email_marketing": True}})
    run.stage.submit([grant])
    run.stage.drain()

    run.add(T0, qty=2)
    run.send("purchase", T0 + 30 * MIN, order_id="O-1", total_minor=5_000, items=[])
    run.bystander(T0 + 3 * 24 * HOUR)

    assert run.triggers() == []
    assert run.stage.table[other]["consent"]["email_marketing"].granted  # the grant applied


@pytest.mark.parametrize("bystander_first", [True, False], ids=["bystander-first", "grant-first"])
def test_a_shoppers_own_command_fires_its_timers_due_before_it_whoever_moved_the_clock(
    bystander_first,
):
    """docs/domain.md, "Event time and timers": a command moves no partition clock, but its own
    customer's timers due by its time fire before it is applied, as before any event of theirs.
    The reminder fell due an hour before the shopper opted in, so it is held back for want of
    consent, whether or not another shopper's visit at the same moment came first (when the
    grant came first, it used to be delivered on the strength of the later grant)."""
    run = Run(consent=False).add(T0)
    if bystander_first:
        run.bystander(T0 + 2 * HOUR)
    run.send("consent_updated", T0 + 2 * HOUR, purposes={"email_marketing": True})
    if not bystander_first:
        run.bystander(T0 + 2 * HOUR)
    run.bystander(T0 + 3 * 24 * HOUR)

    assert run.triggers() == []
    (held,) = [
        d.payload for d in run.decided("trigger_audit") if d.payload["evidence"]["reminder"] == 1
    ]
    assert (held["type"], held["suppressed_reason"]) == ("abandoned_cart", "no_consent")
    assert run.state()["consent"]["email_marketing"].granted  # the grant applied after it


def test_an_unchanged_cart_never_triggers_twice_and_a_changed_one_re_arms_once():
    rules = dataclasses.replace(
        RULES,
        triggers=dataclasses.replace(RULES.triggers, cooldown_hours={"abandoned_cart": 0}),
        carts=dataclasses.replace(RULES.carts, reminder_delays_minutes=(60,)),
    )
    run = Run(rules).add(T0, qty=2)
    run.bystander(T0 + 2 * HOUR)
    run.bystander(T0 + 5 * HOUR)  # the clock moves on: the same contents stay reminded
    assert len(run.triggers()) == 1

    run.add(T0 + 6 * HOUR, "SKU-9", 1, 300)
    run.bystander(T0 + 8 * HOUR)
    run.bystander(T0 + 48 * HOUR)
    reminders = run.triggers()
    assert len(reminders) == 2
    assert reminders[1]["evidence"]["value_minor"] == 5_300
    assert reminders[0]["trigger_id"] != reminders[1]["trigger_id"]


def test_a_cart_below_the_minimum_value_is_not_reminded():
    run = Run().add(T0, price=99)
    run.bystander(T0 + 48 * HOUR)

    assert run.triggers() == []


def test_without_marketing_consent_the_reminder_is_audited_as_no_consent():
    run = Run(consent=False).add(T0, qty=2)
    run.bystander(T0 + 2 * HOUR)

    (audit,) = run.decided("trigger_audit")
    assert (audit.payload["type"], audit.payload["suppressed_reason"]) == (
        "abandoned_cart",
        "no_consent",
    )


def test_a_session_closes_after_the_gap_with_its_summary_and_browse_abandonment():
    run = Run()
    run.send("page_view", T0, url="/")
    for i in range(3):
        run.send("product_view", T0 + (i + 1) * MIN, sku="SKU-7")
    run.send("product_view", T0 + 5 * MIN, sku="SKU-8")
    run.send("search", T0 + 6 * MIN, query="boots")
    run.bystander(T0 + 6 * MIN + 29 * MIN)
    assert run.decided("session_closed") == []

    run.bystander(T0 + 6 * MIN + 30 * MIN)
    (summary,) = [
        d.payload for d in run.decided("session_closed") if d.payload["customer_id"] == CID
    ]
    assert (summary["start"], summary["end"]) == (
        "2026-11-19T10:20:00.000Z",
        "2026-11-19T10:26:00.000Z",
    )
    assert (summary["page_views"], summary["product_views"], summary["searches"]) == (1, 4, 1)
    assert summary["converted"] is False
    (browse,) = run.triggers("browse_abandoned")
    assert browse["evidence"]["products"] == [{"sku": "SKU-7", "views": 3}]


def test_viewing_then_adding_the_product_is_not_browse_abandonment():
    run = Run()
    for i in range(3):
        run.send("product_view", T0 + i * MIN, sku="SKU-7")
    run.add(T0 + 4 * MIN, "SKU-7")
    run.bystander(T0 + 2 * HOUR)

    assert run.triggers("browse_abandoned") == []
    (summary,) = [
        d.payload for d in run.decided("session_closed") if d.payload["customer_id"] == CID
    ]
    assert summary["cart_adds"] == 1


def test_a_session_is_cut_at_the_cap_even_while_the_shopper_stays_active():
    run = Run()
    for i in range(0, 26 * 60, 20):  # a view every 20 minutes for 26 hours
        run.send("page_view", T0 + i * MIN, url="/")

    closed = [d.payload for d in run.decided("session_closed") if d.payload["customer_id"] == CID]
    assert len(closed) == 1
    assert closed[0]["duration_s"] <= 24 * 3600


def test_a_trigger_due_in_quiet_hours_waits_for_their_end():
    rules = dataclasses.replace(
        RULES,
        triggers=dataclasses.replace(RULES.triggers, quiet_hours=QuietHours("21:00", "08:00")),
    )
    evening = T0 + 11 * HOUR  # 21:20 UTC
    run = Run(rules).add(evening, qty=2)
    run.bystander(evening + 2 * HOUR)
    assert run.triggers() == []
    assert [d.payload["type"] for d in run.decided("trigger_deferred")] == ["abandoned_cart"]

    run.bystander(evening + 10 * HOUR + 40 * MIN)  # 08:00 the next morning
    (reminder,) = run.triggers()
    assert reminder["occurred_at"] == "2026-11-19T22:20:00.000Z"  # still the time of its cause


def test_an_erased_shopper_s_pending_reminder_never_fires():
    run = Run().add(T0, qty=2)
    assert pending(run.state(), RULES) == 2  # the cart reminder and the open session
    run.send("erasure_requested", T0 + 10 * MIN, request_id="R-1")
    run.bystander(T0 + 3 * 24 * HOUR)

    assert run.triggers() == []
    assert next_due(run.stage.table[CID], RULES) is None


def test_a_replay_gives_the_same_reminders_with_the_same_trigger_ids():
    def once():
        run = Run().add(T0, qty=2).add(T0 + 5 * MIN, "SKU-2")
        run.bystander(T0 + 5 * MIN + 24 * HOUR)  # both fall due on this event, both still fresh
        return [t["trigger_id"] for t in run.triggers()]

    first = once()
    assert len(first) == 2
    assert once() == first


def test_the_idle_fallback_tick_fires_what_is_due():
    run = Run().add(T0, qty=2)
    run.stage.tick(T0 + 61 * MIN, now_ms=T0 + 61 * MIN)

    assert len(run.triggers()) == 1


def test_a_store_purchase_made_before_the_link_still_cancels_the_web_reminder():
    # the till's purchase reaches the card's own profile before the login links the card
    run = Run().add(T0, qty=2)
    crm = {"customer_id": "CRM-9"}
    run.send("purchase", T0 + 10 * MIN, ids=crm, order_id="O-9", total_minor=5_000, items=[])
    run.send("identify", T0 + 20 * MIN, ids={**crm, **IDS})
    run.bystander(T0 + 3 * HOUR)

    assert run.stage.resolve(CID) == "CRM-9"
    assert run.triggers() == []


def test_session_summaries_and_timer_triggers_follow_the_published_schemas():
    schemas = Path(touchstream.schemas.__file__).parent
    session = fastjsonschema.compile(json.loads((schemas / "sessions/v1/session.json").read_text()))
    trigger = fastjsonschema.compile(json.loads((schemas / "triggers/v1/trigger.json").read_text()))
    run = Run()
    for i in range(3):
        run.send("product_view", T0 + i * MIN, sku="SKU-7")
    run.add(T0 + 4 * MIN, "SKU-1", 2)
    run.bystander(T0 + 2 * HOUR)

    summaries = [published(d.payload) for d in run.decided("session_closed")]
    assert summaries
    for summary in summaries:
        session(summary)
    sent = run.decided("trigger_out")
    assert {d.payload["type"] for d in sent} == {"abandoned_cart", "browse_abandoned"}
    for decision in sent:
        trigger(decision.payload)


def test_a_future_dated_event_of_another_shopper_does_not_fire_a_cart_reminder_early():
    # issue 27: one event dated hours ahead moved the partition clock there, and every cart
    # reminder of the partition went out at once. The clock now waits: at most
    # TOUCHSTREAM_MAX_CLOCK_SKEW_S (5 minutes) past the time the record reached the broker.
    run = Run().add(T0, qty=2)
    run.bystander(T0 + 23 * HOUR, rt=T0 + 2 * MIN)  # a device whose clock is a day off
    run.bystander(T0 + 50 * MIN, rt=T0 + 50 * MIN)
    assert run.triggers() == []  # 50 minutes after the add: no reminder yet

    run.bystander(T0 + 60 * MIN, rt=T0 + 60 * MIN + 500)
    (reminder,) = run.triggers()
    assert reminder["occurred_at"] == "2026-11-19T11:20:00.000Z"
    # the future-dated event itself was applied at its claimed time
    assert run.stage.table[home_of("loyalty_id", "L-OTHER")]["last_event_at"] == T0 + 23 * HOUR


def test_a_future_dated_cart_gets_its_reminder_when_the_clock_reaches_its_own_time():
    run = Run().add(T0, cart="C-0", sku="A")  # a cart of now; another shopper's claims 10 h on
    future = {"loyalty_id": "L-FUTURE"}
    run.send("consent_updated", T0 - HOUR, ids=future, purposes={"email_marketing": True})
    run.send(
        "add_to_cart",
        T0 + 10 * HOUR,
        ids=future,
        rt=T0 + MIN,
        cart_id="C-1",
        sku="B",
        quantity=1,
        unit_price_minor=2_500,
    )
    run.bystander(T0 + 50 * MIN, rt=T0 + 50 * MIN)
    assert run.triggers() == []
    carts = run.stage.table[home_of("loyalty_id", "L-FUTURE")]["carts"]
    assert carts["C-1"].at == T0 + 10 * HOUR  # applied at its claimed time
    run.bystander(T0 + HOUR, rt=T0 + HOUR)
    assert [t["evidence"]["cart_id"] for t in run.triggers()] == ["C-0"]
    run.bystander(T0 + 11 * HOUR - 1, rt=T0 + 11 * HOUR - 1)
    assert len(run.triggers()) == 1
    run.bystander(T0 + 11 * HOUR, rt=T0 + 11 * HOUR)
    assert [t["evidence"]["cart_id"] for t in run.triggers()] == ["C-0", "C-1"]
    assert run.triggers()[1]["occurred_at"] == "2026-11-19T21:20:00.000Z"
