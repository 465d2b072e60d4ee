"""A typed shape of today's customer state, for the probe only (``bench/typed_state_probe.py``).

Issue 29 asks whether the customer state (today one flat dict of ~35 keys,
``touchstream.domain.customer.new_state``) should become typed records, msgspec Structs or
slotted dataclasses. These are the records the measurement needs, written once here as slotted
dataclasses; the msgspec Structs of the same shape are derived from them (``structs()``), so
both candidates are measured on exactly one shape. Nothing in ``touchstream`` imports this.

The shape (docs/design/typed-state.md):

- a tagged union of the three things a customers-table value can be: ``Live`` (a profile),
  ``Redirect`` (an absorbed id: where its shopper lives now) and ``Erased`` (the marker an
  erasure leaves). Today they are told apart by which keys a dict holds (``"into"``,
  ``"erased_at"``); typed, by the tag ``t``;
- one sub-record per capability of ``Live``: ``identity`` (linking), ``guard`` (delivery
  idempotency), ``ledger`` (orders, returns, redemptions, points), ``loyalty`` (tier marks),
  ``activity``, ``cart_book``, ``consent``, ``trigger_log``, ``session`` and ``rfm``. Each
  sub-record keeps today's key names for its fields, so ``GROUPS`` (which flat keys each
  sub-record owns) is the whole migration from a dict value.

``from_flat``/``to_flat`` convert a state dict (as ``tables.state_codec.decode`` returns it,
after ``domain.migrate``) to the typed form and back; ``tests/unit/bench/test_typed_state.py``
holds that the round trip loses nothing on the bench data. Normalisations, all equal under the
code's own reads: an order without ``ref`` gets ``ref=0`` (``o.get("ref", 0)``), loyalty marks
without ``vips`` get 0, a cart without ``since`` gets None, a state without ``clock_at`` gets
None, and a None ``erased_before`` or ``rfm.figures`` is written as an absent key.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass
from typing import Any, Literal

FORMAT = 3  # the typed format's version (today's dict is format 2: domain.migrate.FORMAT)

Rank = tuple[int, int, str]  # strongest identifier kind, profile's first time, its id


def _record(cls: type) -> type:
    return dataclass(slots=True, kw_only=True)(cls)


# -- leaves -------------------------------------------------------------------------------


@_record
class Order:
    at: int
    net: int  # minor units
    eff: int  # net x the tier multiplier in effect, per mille
    pts: int
    ref: int = 0  # refunded so far


@_record
class Return:
    order: str
    at: int
    refund: int


@_record
class Past:  # domain.state_bounds: aggregates of orders folded out of the windows
    orders: int
    counted: int
    spend: int
    held: int
    first: int | None
    last: int | None


@_record
class Ids:  # domain.state_bounds: ids of folded orders ("o") and returns ("r")
    o: dict[str, int]
    r: dict[str, int]


@_record
class Cart:
    items: dict[str, tuple[int, int]]  # sku -> (quantity, unit price)
    at: int
    since: int | None = None
    closed_at: int | None = None
    reminded: tuple[str, int] | None = None  # (contents digest, reminders sent)
    value: int = 0


@_record
class Grant:
    granted: bool
    at: int


@_record
class Scores:
    r: int
    f: int
    m: int
    segment: str


@_record
class Figures:
    orders_365: int
    spend_365_minor: int
    avg_order_value_minor: int
    avg_days_between_purchases: float | None


# -- one sub-record per capability --------------------------------------------------------


@_record
class Identity:  # domain.linking, domain.identity
    customer_id: str
    rank: Rank
    merged: list[str]  # fold marks "<id>@<version>"
    refused: list[str]  # link marks
    asked: list[str]
    pending: dict[str, dict[str, list[str]]]  # peer -> identifiers reserved for its fold
    identifiers: dict[str, list[str]]
    erased_before: int | None = None


@_record
class Guard:  # domain.customer: at-least-once delivery, applied once
    version: int
    src: dict[str, int]  # route -> highest inbound offset applied
    seen: dict[str, int]  # event fingerprint -> event time, oldest first
    clock_at: int | None = None


@_record
class Ledger:  # domain.loyalty: what was bought, returned, redeemed; the balance
    points: int
    qualifying_spend_minor: int
    orders: dict[str, Order]
    returns: dict[str, Return]
    redemptions: dict[str, tuple[int, int]]  # id -> (points, event time)
    past: Past | None
    ids: Ids | None
    signup_bonus_at: int | None
    first_purchase_at: int | None
    last_purchase_at: int | None
    rewards: list[int]
    unlocks: dict[str, int]


@_record
class LoyaltyMarks:  # domain.loyalty.evaluation: the tier last announced and what is owed
    tier: str | None
    at: int | None
    due: int | None
    spend: int
    risk: tuple[str, int] | None
    warned: int | None
    expired: int | None
    vips: int = 0


@_record
class Activity:
    first_seen_at: int | None
    last_event_at: int | None
    events: dict[str, int]
    late_events: int


@_record
class CartBook:  # domain.carts
    carts: dict[str, Cart]
    carts_closed_until: int | None


@_record
class TriggerLog:  # domain.triggers
    delivered: list[tuple[str, int, str]]  # (type, event time, trigger id)
    deferred: list[dict[str, Any]]  # trigger envelopes held by quiet hours


@_record
class Session:  # domain.sessions
    start: int
    last: int
    channel: str
    page_views: int
    product_views: int
    searches: int
    cart_adds: int
    converted: bool
    views: dict[str, int]
    added: list[str]


@_record
class Rfm:  # domain.rfm
    at: int | None
    scores: Scores | None
    due: int | None
    lapse: int | None
    figures: Figures | None = None


# -- the tagged union ---------------------------------------------------------------------


@_record
class Live:
    t: Literal["live"] = "live"
    fmt: int = FORMAT
    identity: Identity
    guard: Guard
    ledger: Ledger
    loyalty: LoyaltyMarks
    activity: Activity
    cart_book: CartBook
    consent: dict[str, Grant]
    trigger_log: TriggerLog
    session: Session | None
    rfm: Rfm


@_record
class Redirect:
    t: Literal["redirect"] = "redirect"
    customer_id: str
    into: str
    rank: Rank
    version: int


@_record
class Erased:
    t: Literal["erased"] = "erased"
    customer_id: str
    erased_at: int
    version: int


CustomerState = Live | Redirect | Erased

# which flat keys of today's dict each grouped sub-record owns; the other sub-records of Live
# are one flat key each (loyalty, consent, session, rfm)
GROUPS: dict[str, tuple[type, tuple[str, ...]]] = {
    name: (cls, tuple(f.name for f in dataclasses.fields(cls)))
    for name, cls in (
        ("identity", Identity),
        ("guard", Guard),
        ("ledger", Ledger),
        ("activity", Activity),
        ("cart_book", CartBook),
        ("trigger_log", TriggerLog),
    )
}
SINGLE = ("loyalty", "consent", "session", "rfm")
DROPPED_WHEN_NONE = ("erased_before",)


# -- dict value <-> nested (the typed format's JSON layout) -------------------------------


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Today's flat dict (format 2) as the typed format's nested layout (builtins only)."""
    if "into" in flat:
        return {"t": "redirect", **flat}
    if "erased_at" in flat:
        return {"t": "erased", **flat}
    out: dict[str, Any] = {"t": "live", "fmt": FORMAT}
    for name, (_, keys) in GROUPS.items():
        out[name] = {k: flat[k] for k in keys if k in flat}
    for name in SINGLE:
        out[name] = flat[name]
    return out


def flatten(nested: dict[str, Any]) -> dict[str, Any]:
    """The nested layout back as today's flat dict (format 2)."""
    tag = nested["t"]
    if tag != "live":
        return {k: v for k, v in nested.items() if k != "t"}
    out: dict[str, Any] = {"fmt": 2}
    for name in GROUPS:
        out.update(nested[name])
    for name in SINGLE:
        out[name] = nested[name]
    for key in DROPPED_WHEN_NONE:
        if out.get(key, 0) is None:
            del out[key]
    rfm = out["rfm"]
    if "figures" in rfm and rfm["figures"] is None:
        out["rfm"] = {k: v for k, v in rfm.items() if k != "figures"}
    return out


# -- slotted dataclasses from the nested layout (orjson gives builtins) -------------------


def _opt(cls: Any, d: dict[str, Any] | None) -> Any:
    return None if d is None else cls(**d)


def _cart(d: dict[str, Any]) -> Cart:
    reminded = d.get("reminded")
    return Cart(
        items={sku: (q, p) for sku, (q, p) in d["items"].items()},
        at=d["at"],
        since=d.get("since"),
        closed_at=d["closed_at"],
        reminded=None if reminded is None else (reminded[0], reminded[1]),
        value=d.get("value", 0),
    )


def dataclass_from_nested(d: dict[str, Any]) -> CustomerState:
    """The dataclass form of a nested value: each record built by hand (no validation)."""
    tag = d["t"]
    if tag == "redirect":
        return Redirect(customer_id=d["customer_id"], into=d["into"], rank=tuple(d["rank"]),
                        version=d["version"])  # fmt: skip
    if tag == "erased":
        return Erased(customer_id=d["customer_id"], erased_at=d["erased_at"], version=d["version"])
    i, led, m, r, tl = d["identity"], d["ledger"], d["loyalty"], d["rfm"], d["trigger_log"]
    risk = m["risk"]
    return Live(
        fmt=d["fmt"],
        identity=Identity(
            customer_id=i["customer_id"],
            rank=tuple(i["rank"]),  # type: ignore[arg-type]
            merged=i["merged"],
            refused=i["refused"],
            asked=i["asked"],
            pending=i["pending"],
            identifiers=i["identifiers"],
            erased_before=i.get("erased_before"),
        ),
        guard=Guard(**d["guard"]),
        ledger=Ledger(
            points=led["points"],
            qualifying_spend_minor=led["qualifying_spend_minor"],
            orders={k: Order(**o) for k, o in led["orders"].items()},
            returns={k: Return(**o) for k, o in led["returns"].items()},
            redemptions={k: (v[0], v[1]) for k, v in led["redemptions"].items()},
            past=_opt(Past, led["past"]),
            ids=_opt(Ids, led["ids"]),
            signup_bonus_at=led["signup_bonus_at"],
            first_purchase_at=led["first_purchase_at"],
            last_purchase_at=led["last_purchase_at"],
            rewards=led["rewards"],
            unlocks=led["unlocks"],
        ),
        loyalty=LoyaltyMarks(
            tier=m["tier"],
            at=m["at"],
            due=m["due"],
            spend=m["spend"],
            risk=None if risk is None else (risk[0], risk[1]),
            warned=m["warned"],
            expired=m["expired"],
            vips=m.get("vips", 0),
        ),
        activity=Activity(**d["activity"]),
        cart_book=CartBook(
            carts={k: _cart(c) for k, c in d["cart_book"]["carts"].items()},
            carts_closed_until=d["cart_book"]["carts_closed_until"],
        ),
        consent={k: Grant(**g) for k, g in d["consent"].items()},
        trigger_log=TriggerLog(
            delivered=[(x[0], x[1], x[2]) for x in tl["delivered"]], deferred=tl["deferred"]
        ),
        session=_opt(Session, d["session"]),
        rfm=Rfm(
            at=r["at"],
            scores=_opt(Scores, r["scores"]),
            due=r["due"],
            lapse=r["lapse"],
            figures=_opt(Figures, r.get("figures")),
        ),
    )


def from_flat(flat: dict[str, Any]) -> CustomerState:
    """A format-2 dict value (migrated) as dataclasses: how a new worker reads an old value."""
    return dataclass_from_nested(nest(flat))


def to_nested(record: CustomerState) -> dict[str, Any]:
    """The nested layout of a dataclass record, builtins only (tuples as lists)."""
    return typing.cast(dict[str, Any], _builtins(record))


def _builtins(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _builtins(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _builtins(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_builtins(v) for v in value]
    return value


def to_flat(record: CustomerState) -> dict[str, Any]:
    return flatten(to_nested(record))


# -- the same shape as msgspec Structs (derived, so it is written once) --------------------


def structs(gc: bool = True) -> dict[str, Any]:
    """msgspec Structs of every record above (name -> Struct), the union as ``"CustomerState"``;
    ``gc=False``: Structs the cycle collector does not track (records hold no cycles). Needs
    msgspec (``pip install msgspec`` where it is not installed)."""
    import msgspec

    made: dict[str, Any] = {}
    module = sys.modules[__name__]
    tags = {"Live": "live", "Redirect": "redirect", "Erased": "erased"}

    def convert(tp: Any) -> Any:
        if dataclasses.is_dataclass(tp):
            return build(tp)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is None or not args:
            return tp
        converted = tuple(convert(a) for a in args)
        if origin in (typing.Union, __import__("types").UnionType):
            out = converted[0]
            for a in converted[1:]:
                out = out | a
            return out
        if origin is Literal:
            return tp
        return origin[converted if len(converted) > 1 else converted[0]]

    def build(cls: Any) -> Any:
        name = cls.__name__
        if name in made:
            return made[name]
        hints = typing.get_type_hints(cls, vars(module))
        fields = []
        for f in dataclasses.fields(cls):
            if f.name == "t":  # the tag: msgspec writes and checks it
                continue
            tp = convert(hints[f.name])
            if f.default is not dataclasses.MISSING:
                fields.append((f.name, tp, f.default))
            else:
                fields.append((f.name, tp))
        made[name] = msgspec.defstruct(
            name,
            fields,
            kw_only=True,
            tag=tags.get(name),
            tag_field="t" if name in tags else None,
            gc=gc,
        )
        return made[name]

    for cls in (Live, Redirect, Erased):
        build(cls)
    made["CustomerState"] = made["Live"] | made["Redirect"] | made["Erased"]
    return made


__all__ = [
    "FORMAT",
    "Activity",
    "Cart",
    "CartBook",
    "CustomerState",
    "Erased",
    "Figures",
    "Grant",
    "Guard",
    "Identity",
    "Ids",
    "Ledger",
    "Live",
    "LoyaltyMarks",
    "Order",
    "Past",
    "Redirect",
    "Return",
    "Rfm",
    "Scores",
    "Session",
    "TriggerLog",
]
