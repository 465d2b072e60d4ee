"""The customer agent's table of publishers (agents/publishers.py): every decision type the core
hands the agent is counted and sent, none silently dropped, and the records it sends are the
ones the domain built."""

from __future__ import annotations

from tests.golden.core import publish
from tests.unit.domain.test_privacy import CARD, T0, ev, shopper
from touchstream.agents.publishers import PUBLISHERS
from touchstream.domain import decision
from touchstream.domain.clock import iso
from touchstream.domain.identity import home_of
from touchstream.streams import topics

# never leaves the core: a proposal becomes a delivered, audited or deferred trigger there
INTERNAL = {decision.Proposal}


def test_every_decision_type_the_core_makes_has_a_publisher() -> None:
    # by name: a slotted dataclass is a new class, the one it replaced may linger until collected
    # every concrete type (one with a ``kind``), at any depth (trigger decisions share a base)
    made, bases = set(), [decision.Decision]
    while bases:
        for cls in bases.pop().__subclasses__():
            bases.append(cls)
            if hasattr(cls, "kind"):
                made.add(cls.__name__)
    published = {cls.__name__ for cls in PUBLISHERS}
    assert made - {cls.__name__ for cls in INTERNAL} == published


def test_an_erasure_receipt_counts_the_timers_the_profile_had_and_gives_iso_times() -> None:
    stage = shopper()  # a cart waiting for its reminder, a session still open
    root = home_of("loyalty_id", "L-9")
    stage.submit([ev(5, CARD, "erasure_requested", request_id="R-1")])
    stage.drain()

    (receipt,) = [d for d in stage.decisions if isinstance(d, decision.Receipt)]
    records, counted = publish(receipt)

    assert [(topic, key) for topic, key, _ in records] == [(topics.PRIVACY_RECEIPTS, root)]
    sent = records[0][2]
    assert sent["removed"]["timers"] == 2  # the cart's reminder and the open session
    assert (sent["requested_at"], sent["occurred_at"]) == (iso(T0 + 5), iso(T0 + 5))
    assert counted == [["touchstream_erasures"]]
