"""Loyalty (docs/domain.md, "Loyalty"): the points ledger, tiers with grace, expiry, VIP, rewards.

One module per concern, each importing only those before it in this list:

- ``outcomes``: the ledger's outcomes for ``loyalty.outcomes`` and their published record;
- ``tiers``: qualifying spend, the tier it earns, the tier held with grace, the moments a tier
  was reached and the spend fell below it (``vip_status``, ``tier_downgrade_risk``);
- ``pricing``: the points an order earns and a refund takes back, and repricing in event time;
- ``rewards``: ``reward_unlocked`` when the balance crosses a threshold;
- ``expiry``: points expiring after the last purchase (``points_expiring``);
- ``evaluation``: bringing tier, expiry and rewards up to an event time, and the next moment
  they can change by themselves (``due``, for ``domain.timers``);
- ``handlers``: the events that change the ledger (order, return, redemption, signup).

A trigger type's check that it still holds at emit time lives in the module that proposes it
(``domain/trigger_catalog.py`` names it by module and function).

The ledger lives in the customer record (``orders``, ``returns``, ``redemptions``, ``points``)
and ``loyalty`` holds what was last announced, a ``LoyaltyMarks`` record (``evaluation.default``;
its fold rule ``evaluation.fold``). The ledger is a pure
function of the facts, not of the order they arrived in or of which worker saw what first, so a
merge of two profiles prices their orders exactly as one profile that had seen them all
(``domain.fold``).

The rest of the core uses the names re-exported here (``loyalty.evaluate``, ``loyalty.purchase``,
...): the capability's interface.
"""

from touchstream.domain.loyalty.evaluation import default, due, evaluate, fold, next_change
from touchstream.domain.loyalty.expiry import expiry_owed, expiry_times
from touchstream.domain.loyalty.handlers import purchase, redeem, refund, signup
from touchstream.domain.loyalty.outcomes import outcome, published
from touchstream.domain.loyalty.pricing import (
    default_orders,
    default_returns,
    fold_orders,
    fold_returns,
    held_points,
    priced,
    sole_ledger,
)
from touchstream.domain.loyalty.rewards import reward_owed, rewards
from touchstream.domain.loyalty.tiers import held_tier, tier_name, tier_rank, tier_spend

__all__ = [
    "default",
    "default_orders",
    "default_returns",
    "due",
    "evaluate",
    "expiry_owed",
    "expiry_times",
    "fold",
    "fold_orders",
    "fold_returns",
    "held_points",
    "held_tier",
    "next_change",
    "outcome",
    "priced",
    "published",
    "purchase",
    "redeem",
    "refund",
    "reward_owed",
    "rewards",
    "signup",
    "sole_ledger",
    "tier_name",
    "tier_rank",
    "tier_spend",
]
