"""The trigger emit path: deterministic ids, and the guard chain in the order of docs/domain.md,
"Guard chain"."""

import ast
import inspect
import json
import textwrap
from dataclasses import replace
from pathlib import Path

import fastjsonschema
import pytest

import touchstream.schemas
from touchstream.config.rules import load_rules
from touchstream.domain import triggers
from touchstream.domain.clock import MS_PER_DAY, iso
from touchstream.domain.customer import new_state
from touchstream.domain.identity import home_of
from touchstream.domain.linking import handle
from touchstream.domain.records import Grant
from touchstream.domain.timers import fire
from touchstream.domain.triggers import guard, propose, trigger_id
from touchstream.errors import TouchstreamError
from touchstream.simulator.factory import internal

RULES = load_rules(None)
NOW = 1_795_179_807_512
HOUR = 3_600_000
CID = home_of("loyalty_id", "L-1")
IDS = {"loyalty_id": "L-1"}
SCHEMA = Path(touchstream.schemas.__file__).parent / "triggers" / "v1" / "trigger.json"


class Shopper:
    """One customer's partition, as the agent runs it: timers due by the clock fire first."""

    def __init__(self) -> None:
        self.state = None
        self.n = 0
        self.clock = 0
        self.out: list = []

    def send(self, type_: str, at: int, ts: int = NOW, **props):
        self.n += 1
        e = internal(CID, IDS, type_, f"e{self.n}", self.n, at=at, **props)
        e["ts"] = ts
        self.clock = max(self.clock, at)
        fired = fire(CID, self.state, self.clock, ts, RULES)
        self.state = fired.store or self.state
        self.out += [d for d in fired.decisions if d.kind.startswith("trigger")]
        step = handle(CID, self.state, e, RULES)
        self.state = step.store or self.state
        self.out += [d for d in step.decisions if d.kind.startswith("trigger")]
        return self

    def buy(self, order_id: str, total: int, at: int):
        return self.send(
            "purchase", at, order_id=order_id, total_minor=total, currency="EUR", items=[]
        )

    def kinds(self):
        return [(d.kind, d.payload["type"], d.payload.get("suppressed_reason")) for d in self.out]


def opted_in(at: int = NOW - 500 * MS_PER_DAY) -> Shopper:
    return Shopper().send("consent_updated", at, purposes={"email_marketing": True})


def test_a_lapsed_big_spender_opening_an_email_gets_no_vip_invitation():
    # the seed miscue: 3,000.00 lifetime, last purchase 400 days ago, opens a campaign email
    s = opted_in().buy("OLD-1", 300_000, NOW - 400 * MS_PER_DAY)
    s.out.clear()  # that backfilled purchase's own decision is audited as stale (below)
    s.send("email_open", NOW, campaign_id="vip-evening")

    # time moved on by a year: no VIP invitation, only last year's warnings, stale
    assert s.kinds() == [
        ("trigger_audit", "points_expiring", "stale"),
        ("trigger_audit", "tier_downgrade_risk", "stale"),
    ]
    assert s.state["loyalty"].tier == "member" and s.state["points"] == 0


def test_a_backfilled_purchase_never_sends_last_years_vip_invitation():
    s = opted_in().buy("OLD-1", 300_000, NOW - 400 * MS_PER_DAY)

    # 3,000 points cross the reward threshold too: both decisions are a year old
    assert s.kinds() == [
        ("trigger_audit", "vip_status", "stale"),
        ("trigger_audit", "reward_unlocked", "stale"),
    ]


def test_crossing_the_top_tier_today_with_consent_sends_exactly_one_vip_status():
    s = opted_in().buy("OLD-1", 300_000, NOW - 400 * MS_PER_DAY)
    s.out.clear()
    s.buy("NEW-1", 60_000, NOW - HOUR).buy("NEW-2", 50_000, NOW)  # 1,100.00 in 365 days
    s.buy("NEW-3", 10_000, NOW)  # still gold: no second invitation

    # the old points expired (their warning and the tier's downgrade risk came a year late,
    # so they are stale); the new ones unlock the 500-point reward again
    assert s.kinds() == [
        ("trigger_audit", "points_expiring", "stale"),
        ("trigger_audit", "tier_downgrade_risk", "stale"),
        ("trigger_out", "reward_unlocked", None),
        ("trigger_out", "vip_status", None),
    ]
    envelope = s.out[3].payload
    assert envelope["channels"] == ["email"]
    assert envelope["evidence"]["qualifying_spend_minor"] == 110_000
    assert envelope["rule"] == {"name": "vip_status", "version": RULES.version}
    # named by the times the top tier was reached before (OLD-1 made it gold a year ago), not
    # by the order that reached it: the same whichever order came last
    assert envelope["trigger_id"] == trigger_id(CID, "vip_status", "gold:1")
    assert envelope["occurred_at"] == iso(NOW)
    assert envelope["evidence"]["order_id"] == "NEW-2"


def test_without_marketing_consent_the_trigger_is_audited_not_sent():
    s = Shopper().buy("NEW-1", 120_000, NOW)

    assert s.kinds() == [
        ("trigger_audit", "vip_status", "no_consent"),
        ("trigger_audit", "reward_unlocked", "no_consent"),
    ]
    assert s.out[0].payload["channels"] == []


def test_reward_unlocked_once_when_the_balance_crosses_the_threshold():
    s = opted_in().buy("A", 30_000, NOW - 2 * HOUR).buy("B", 30_000, NOW - HOUR)
    s.buy("C", 10_000, NOW)

    assert s.kinds() == [("trigger_out", "reward_unlocked", None)]
    assert s.out[0].payload["evidence"] == {"threshold": 500, "points": 600}


def test_frequency_cap_lets_three_through_in_24_hours_and_audits_the_fourth():
    state = new_state(CID, "loyalty_id", "L-1", NOW)
    state["consent"] = {"email_marketing": Grant(granted=True, at=NOW)}
    reasons = []
    no_cooldown = replace(RULES, triggers=replace(RULES.triggers, cooldown_hours={"win_back": 0}))
    kinds = ("win_back", "browse_abandoned", "win_back", "browse_abandoned")
    for n, kind in enumerate(kinds):
        proposal = propose(kind, f"c{n}", NOW + n * HOUR, "r", {}, kind).payload
        reasons.append(guard(state, proposal, NOW + n * HOUR, no_cooldown)[1])

    assert reasons == [None, None, None, "frequency_cap"]
    # a day later the window has moved on
    later = propose("win_back", "c9", NOW + 25 * HOUR, "r", {}, "x").payload
    assert guard(state, later, NOW + 25 * HOUR, no_cooldown)[1] is None


def test_cool_down_per_type_and_freshness():
    state = new_state(CID, "loyalty_id", "L-1", NOW)
    state["consent"] = {"sms_marketing": Grant(granted=True, at=NOW)}
    first = propose("browse_abandoned", "s-1", NOW, "r", {}, "browse_abandoned").payload
    again = propose("browse_abandoned", "s-2", NOW + HOUR, "r", {}, "browse_abandoned").payload
    old = propose("win_back", "lapse-1", NOW - 25 * HOUR, "r", {}, "win_back").payload

    assert guard(state, first, NOW, RULES)[1] is None
    assert guard(state, first, NOW, RULES)[0]["channels"] == ["sms"]
    assert guard(state, again, NOW + HOUR, RULES)[1] == "cooldown"
    assert guard(state, old, NOW, RULES)[1] == "stale"


def test_the_same_cause_gives_the_same_trigger_id():
    assert trigger_id(CID, "vip_status", "gold:O-1") == trigger_id(CID, "vip_status", "gold:O-1")
    assert trigger_id(CID, "vip_status", "gold:O-1") != trigger_id(CID, "vip_status", "gold:O-2")


def test_an_undeclared_trigger_held_on_a_profile_is_not_sent_unchecked():
    # a trigger held by quiet hours by an older version, of a type this one does not declare
    state = new_state(CID, "loyalty_id", "L-1", NOW)
    state["consent"] = {"email_marketing": Grant(granted=True, at=NOW)}
    held = {"type": "vip_statuss", "cause": "c", "at": NOW, "reason": "r", "evidence": {}}

    with pytest.raises(TouchstreamError, match="vip_statuss"):
        guard(state, {**held, "rule": "vip_statuss"}, NOW, RULES)


def test_a_trigger_whose_evidence_misses_a_declared_field_fails_the_published_schema():
    validate = fastjsonschema.compile(json.loads(SCHEMA.read_text()))
    state = new_state(CID, "loyalty_id", "L-1", NOW)
    state["consent"] = {"email_marketing": Grant(granted=True, at=NOW)}
    state["points"] = 600
    rules = replace(RULES, triggers=replace(RULES.triggers, cooldown_hours={}))
    good = propose("reward_unlocked", "500:0", NOW, "r", {"threshold": 500, "points": 600}, "x")
    bad = propose("reward_unlocked", "500:1", NOW, "r", {"threshold": 500}, "x")

    validate(guard(state, good.payload, NOW, rules)[0])
    with pytest.raises(fastjsonschema.JsonSchemaValueException, match="points"):
        validate(guard(state, bad.payload, NOW, rules)[0])


def test_delivered_and_audited_envelopes_follow_the_published_schema():
    path = Path(touchstream.schemas.__file__).parent / "triggers" / "v1" / "trigger.json"
    validate = fastjsonschema.compile(json.loads(path.read_text()))
    s = opted_in().buy("OLD-1", 300_000, NOW - 400 * MS_PER_DAY)
    s.buy("NEW-1", 110_000, NOW)
    assert {d.kind for d in s.out} == {"trigger_out", "trigger_audit"}
    for decision in s.out:
        validate(decision.payload)


def test_the_audit_schema_lists_exactly_the_reasons_the_guard_chain_gives():
    # a consumer of triggers.audit switches on suppressed_reason: the schema's enum must name
    # every reason a record can carry, and no reason that never comes (docs/domain.md,
    # "Guard chain"); the guard returns only named constants, so the tuple is the whole set
    path = Path(touchstream.schemas.__file__).parent / "triggers" / "v1" / "trigger.json"
    schema = json.loads(path.read_text())
    enum = schema["properties"]["suppressed_reason"]["enum"]
    assert enum == list(triggers.SUPPRESSED_REASONS)
    source = textwrap.dedent(inspect.getsource(triggers.guard))
    returned = [
        node.value.elts[1]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple)
    ]
    reasons = {getattr(triggers, n.id) for n in returned if isinstance(n, ast.Name)}
    assert all(isinstance(n, ast.Name | ast.Constant) for n in returned)
    assert [n.value for n in returned if isinstance(n, ast.Constant)] == [None]
    # duplicate: counted, never sent to triggers.audit (agents/customer.py), so not in the enum
    assert reasons == set(triggers.SUPPRESSED_REASONS) | {triggers.DUPLICATE}
