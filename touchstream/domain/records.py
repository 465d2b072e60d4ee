"""The customer state as typed records: msgspec Structs, the shape written once.

docs/design/typed-state.md holds the measurement, the pick (msgspec Structs, ``gc=False``) and
the order of the rewrite. The records convert to and from today's flat dict (state format 2,
``domain.migrate.FORMAT``) with nothing lost. The core holds a live profile as the flat dict
(``domain.state.State``) still, and since step 4 a redirect and an erasure marker as their
records (``Redirect``, ``Erased``: ``domain.linking`` and ``domain.privacy`` build them,
``domain.migrate.read`` makes a stored one its record), stored as the dicts they were
(``flat_marker``, by ``tables.state_codec``). Since step 3 the values of a live profile's keys
in ``LEAVES`` are records (consent, the open session, carts, RFM, the loyalty marks, the
trigger log, the ledger's orders, returns, ``past`` and ``ids``); ``lift`` builds them from the
builtins orjson reads, and ``json_default`` writes them back for orjson where the codec's own
hook is not used.

A customers-table value is a tagged union, told apart by the tag field ``t`` instead of by
which keys a dict holds (``"into"``, ``"erased_at"``):

- ``Live``: a profile, one sub-record per capability (``identity``, ``guard``, ``ledger``,
  ``loyalty``, ``activity``, ``cart_book``, ``consent``, ``trigger_log``, ``session``,
  ``rfm``), each keeping today's key names for its fields, so ``GROUPS`` (which flat keys each
  grouped sub-record owns) is the whole conversion from a format-2 value;
- ``Redirect``: an absorbed id, where its shopper lives now;
- ``Erased``: the marker an erasure leaves.

Every record is declared ``gc=False``: the cycle collector does not track it (a state is a
tree of values, no record refers back to one that holds it; the dicts and lists inside a record
are still tracked). Records are not frozen (the design measured plain Structs); the core
treats them as values all the same and changes them through ``msgspec.structs.replace``.

``from_flat``/``to_flat`` convert a format-2 dict (as ``tables.customers.decode_state`` returns
it) to records and back. The normalisations are ones the code already makes when it reads: an
order without ``ref`` reads ``ref=0``, loyalty marks without ``vips`` read 0, a cart without
``since`` reads None, a state without ``clock_at`` reads None; a None ``erased_before``,
``erased_by`` or ``rfm.figures`` is written back as an absent key. Pairs stored as lists are tuples here.
"""

from __future__ import annotations

from typing import Any

import msgspec

from touchstream.errors import TouchstreamError

FORMAT = 3  # the typed state format's version (a Live's ``fmt``); the flat dict is format 2
# domain.migrate.FORMAT, which imports this module to read redirects and erasure markers as
# records (tests/unit/domain/test_records.py checks that the two agree)
FLAT_FORMAT = 2

Rank = tuple[int, int, str]  # strongest identifier kind, profile's first time, its id
Delivered = tuple[str, int, str]  # a delivered trigger: (type, event time, trigger id)


class RecordFormatError(TouchstreamError):
    """A value that is not a customer state of a shape these records hold: never guessed."""


class Record(msgspec.Struct, kw_only=True, gc=False):
    """Base of every record: untracked by the cycle collector (inherited; ``kw_only`` is not,
    so each record declares it)."""


# -- leaves -------------------------------------------------------------------------------


class Order(Record, kw_only=True):
    at: int
    net: int  # minor units
    eff: int  # net x the tier multiplier in effect, per mille
    pts: int
    ref: int = 0  # refunded so far


class Return(Record, kw_only=True):
    order: str
    at: int
    refund: int


class Past(Record, kw_only=True):
    """Aggregates of orders folded out of the windows (``domain.state_bounds``)."""

    orders: int
    counted: int
    spend: int
    held: int
    first: int | None
    last: int | None


class Ids(Record, kw_only=True):
    """Ids of folded orders ("o") and returns ("r") (``domain.state_bounds``)."""

    o: dict[str, int]
    r: dict[str, int]


class Cart(Record, kw_only=True):
    items: dict[str, tuple[int, int]]  # sku -> (quantity, unit price)
    at: int
    since: int | None = None
    closed_at: int | None = None
    reminded: tuple[str, int] | None = None  # (contents digest, reminders sent)
    value: int = 0


class Grant(Record, kw_only=True):
    granted: bool
    at: int


class Scores(Record, kw_only=True):
    r: int
    f: int
    m: int
    segment: str


class Figures(Record, kw_only=True):
    orders_365: int
    spend_365_minor: int
    avg_order_value_minor: int
    avg_days_between_purchases: float | None


# -- one sub-record per capability --------------------------------------------------------


class Identity(Record, kw_only=True):  # domain.linking, domain.identity
    customer_id: str
    rank: Rank
    merged: list[str]  # fold marks "<id>@<version>"
    refused: list[str]  # link marks
    asked: list[str]
    pending: dict[str, dict[str, list[str]]]  # peer -> identifiers reserved for its fold
    identifiers: dict[str, list[str]]
    erased_before: int | None = None
    # the erasure requests (their event fingerprints) this profile was started after, so a
    # second delivery of one erases nothing (``domain.linking.handle``); absent: none
    erased_by: list[str] | None = None


class Guard(Record, kw_only=True):  # domain.customer: at-least-once delivery, applied once
    version: int
    src: dict[str, int]  # route -> highest inbound offset applied
    # event fingerprint -> event time, oldest first; a value written before that (format 1)
    # holds a list, of fingerprints or of [fingerprint, time] pairs, until the customer's next
    # event (``domain.customer.seen_entries`` reads all three)
    seen: dict[str, int] | list[str | tuple[str, int]]
    clock_at: int | None = None


class Ledger(Record, kw_only=True):
    """What was bought, returned, redeemed; the balance (``domain.loyalty``)."""

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


class LoyaltyMarks(Record, kw_only=True):
    """The tier last announced and what is owed (``domain.loyalty.evaluation``)."""

    tier: str | None
    at: int | None
    due: int | None
    spend: int
    risk: tuple[str, int] | None
    warned: int | None
    expired: int | None
    vips: int = 0


class Activity(Record, kw_only=True):
    first_seen_at: int | None
    last_event_at: int | None
    events: dict[str, int]
    late_events: int


class CartBook(Record, kw_only=True):  # domain.carts
    carts: dict[str, Cart]
    carts_closed_until: int | None


class TriggerLog(Record, kw_only=True):  # domain.triggers
    delivered: list[Delivered]  # (type, event time, trigger id)
    deferred: list[dict[str, Any]]  # trigger envelopes held by quiet hours (dicts until typed)


class Session(Record, kw_only=True):  # domain.sessions
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


class Rfm(Record, kw_only=True, omit_defaults=True):  # domain.rfm
    """``omit_defaults``: ``figures`` None (never evaluated) is not written, as the dict of
    ``domain.rfm`` before the rewrite had no such key: the stored bytes stay what they were."""

    at: int | None
    scores: Scores | None
    due: int | None
    lapse: int | None
    figures: Figures | None = None


# -- the tagged union ---------------------------------------------------------------------


class Live(Record, kw_only=True, tag_field="t", tag="live"):
    """A profile. Its field order is the fold order the rewrite gives ``domain.fold``."""

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


class Redirect(Record, kw_only=True, tag_field="t", tag="redirect", forbid_unknown_fields=True):
    """An absorbed id (``domain.linking.redirect``) or a re-keyed identifier's home
    (``domain.linking``, ``home``): where its shopper lives now."""

    customer_id: str
    into: str
    rank: Rank
    version: int


class Erased(
    Record,
    kw_only=True,
    tag_field="t",
    tag="erased",
    forbid_unknown_fields=True,
    omit_defaults=True,
):
    """The marker an erasure leaves (``domain.privacy``). ``unconfirmed``: what the marker of
    the erased profile itself waits for Redis with (the alias keys, the identifier homes and
    the receipt, ``privacy.erase``) until Redis confirms the deletion; absent (not stored)
    once confirmed, and on the markers of its identifiers' homes. ``requests``: the event
    fingerprints (``domain.customer.event_fingerprint``) of the erasure that left it and of
    those the erased profile had been started after, by which a second delivery of one is
    known; absent on markers written before they were kept."""

    customer_id: str
    erased_at: int
    version: int
    unconfirmed: dict[str, Any] | None = None
    requests: list[str] | None = None


CustomerState = Live | Redirect | Erased
TAGS: dict[str, type[Record]] = {"live": Live, "redirect": Redirect, "erased": Erased}

# which flat keys of today's dict each grouped sub-record of Live owns; the other sub-records
# are one flat key each (SINGLE)
GROUPS: dict[str, tuple[str, ...]] = {
    name: cls.__struct_fields__
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
FLAT_KEYS = frozenset(k for keys in GROUPS.values() for k in keys) | {"fmt", *SINGLE}
DROPPED_WHEN_NONE = ("erased_before", "erased_by")

# step 3 of the rewrite (docs/design/typed-state.md): the flat dict's keys whose values are
# records already, in the core's own dict (a leaf record for a capability); the rest are still
# the builtins orjson reads
LEAVES: dict[str, Any] = {
    "orders": dict[str, Order],
    "returns": dict[str, Return],
    "past": Past | None,
    "ids": Ids | None,
    "consent": dict[str, Grant],
    "session": Session | None,
    "carts": dict[str, Cart],
    "rfm": Rfm,
    "loyalty": LoyaltyMarks,
    # the trigger log (TriggerLog's two keys): tuples, and the envelopes as dicts (checked to
    # be objects) until the decisions are typed records
    "delivered": list[Delivered],
    "deferred": list[dict[str, Any]],
}
ABSENT = object()
_ENCODE = msgspec.json.Encoder().encode
_DECODE = msgspec.json.Decoder().decode


# -- the leaf records inside today's dict (step 3) -----------------------------------------


# the keys of LEAVES as one record, each field unset when its key is absent (a part of a state,
# as the codec's tests store): one ``msgspec.convert`` of a record type builds them all, about
# a third of the cost of one call per key with a ``dict[str, Grant]`` type (msgspec caches
# what it learns of a record type, not of a ``dict[...]`` alias)
_LEAVES = msgspec.defstruct(
    "_Leaves",
    [(key, kind | msgspec.UnsetType, msgspec.UNSET) for key, kind in LEAVES.items()],
    kw_only=True,
    gc=False,
)
_LEAF_KEYS = tuple(LEAVES)


def lift(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` (a dict as orjson and ``domain.migrate`` leave it) with the values of
    ``LEAVES`` as their records, in place; a redirect or an erasure marker as it is (it holds
    none of those keys). Values that are records already (a state that never left the
    process: a fold message of the offline stage) are kept as they are. A value of another
    shape raises ``RecordFormatError`` naming the key and the bad field, never guessed."""
    if "orders" not in state and not any(key in state for key in _LEAF_KEYS):
        return state  # a redirect or an erasure marker
    if type(state.get("loyalty")) is LoyaltyMarks:
        # built in this process (``customer.new_state`` and the core make every leaf a record
        # at once; a state read or received as JSON has none): nothing to convert, and a merge
        # of two such states skips two conversions
        return state
    try:
        leaves = msgspec.convert({k: state[k] for k in _LEAF_KEYS if k in state}, _LEAVES)
    except msgspec.ValidationError as exc:
        raise RecordFormatError(f"customer state: {exc}") from exc
    for key in _LEAF_KEYS:
        value = getattr(leaves, key)
        if value is not msgspec.UNSET:
            state[key] = value
    return state


def json_default(value: Any) -> Any:
    """orjson's ``default`` hook for a message or document holding records (a digest of
    states): a redirect or an erasure marker as the dict format 2 stores (``flat_marker``),
    any other record as the builtins of its JSON object, so orjson writes it as the dict it
    replaces and ``OPT_SORT_KEYS`` still sorts its keys. (The state codec has a faster hook of
    its own, ``tables.state_codec``, which needs no sorting.)"""
    if isinstance(value, Redirect | Erased):
        return flat_marker(value)
    if isinstance(value, msgspec.Struct):
        return msgspec.to_builtins(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def flat_marker(record: Redirect | Erased) -> dict[str, Any]:
    """A redirect or an erasure marker as format 2 stores it (``tables.state_codec``): the
    dict of its fields, no tag, ``unconfirmed`` only while it waits, ``requests`` only if
    known."""
    out = msgspec.structs.asdict(record)
    for key in ("unconfirmed", "requests"):
        if out.get(key, ABSENT) is None:
            del out[key]
    return out


def marker_of(flat: dict[str, Any]) -> Redirect | Erased | None:
    """A stored redirect (``into``) or erasure marker (``erased_at``) of format 2 as its
    record, checked while built (``RecordFormatError`` naming the bad field, an unknown key
    included); None for any other dict."""
    if "into" in flat:
        kind: type[Redirect] | type[Erased] = Redirect
    elif "erased_at" in flat:
        kind = Erased
    else:
        return None
    try:
        return msgspec.convert(flat, kind)
    except msgspec.ValidationError as exc:
        raise RecordFormatError(f"customer state ({kind.__name__.lower()}): {exc}") from exc


def builtins(value: Any) -> Any:
    """``value`` with every record inside it as the dict of its fields (pairs as lists): for a
    document published as it is built (the privacy export)."""
    return msgspec.to_builtins(value)


# -- flat dict (format 2) <-> nested layout (builtins) ------------------------------------


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Today's flat dict (format 2, migrated) as the typed layout, builtins only: one object
    per sub-record, the tag first. A key no record owns is refused, never dropped."""
    if "into" in flat:
        return {"t": "redirect", **flat}
    if "erased_at" in flat:
        return {"t": "erased", **flat}
    unknown = flat.keys() - FLAT_KEYS
    if unknown:
        raise RecordFormatError(f"customer state: keys no record holds: {sorted(unknown)}")
    if flat.get("fmt") != FLAT_FORMAT:
        raise RecordFormatError(
            f"customer state of format {flat.get('fmt', 1)}: migrate it to {FLAT_FORMAT} first"
        )
    out: dict[str, Any] = {"t": "live", "fmt": FORMAT}
    for name, keys in GROUPS.items():
        out[name] = {k: flat[k] for k in keys if k in flat}
    for name in SINGLE:
        out[name] = flat[name]
    return out


def flatten(nested: dict[str, Any]) -> dict[str, Any]:
    """The typed layout (builtins) back as today's flat dict (format 2)."""
    if nested["t"] != "live":
        return {k: v for k, v in nested.items() if k != "t"}
    out: dict[str, Any] = {"fmt": FLAT_FORMAT}
    for name in GROUPS:
        out.update(nested[name])
    for name in SINGLE:
        out[name] = nested[name]
    for key in DROPPED_WHEN_NONE:
        if out.get(key, ABSENT) is None:
            del out[key]
    rfm = out["rfm"]
    if "figures" in rfm and rfm["figures"] is None:
        out["rfm"] = {k: v for k, v in rfm.items() if k != "figures"}
    return out


# -- flat dict <-> records ----------------------------------------------------------------


def from_flat(flat: dict[str, Any] | Redirect | Erased) -> CustomerState:
    """A format-2 value (as ``tables.customers.decode_state`` returns it: a live profile's
    dict, a redirect or erasure marker as its dict or, since step 4, its record) as records:
    how the typed core reads a value an older worker wrote. Checked while built: a value of
    another shape raises ``RecordFormatError`` naming the bad field."""
    if isinstance(flat, Redirect | Erased):
        return flat
    try:
        state: CustomerState = msgspec.convert(nest(flat), CustomerState)
    except msgspec.ValidationError as exc:
        raise RecordFormatError(f"customer state: {exc}") from exc
    return state


def to_flat(record: CustomerState) -> dict[str, Any]:
    """Records as today's flat dict (format 2): what the core of this release holds (with the
    leaf records of ``LEAVES``), pairs as lists, exactly as it reads a stored value back (through the records' JSON: msgspec's
    ``to_builtins`` would keep the tuples, which the dict core does not compare alike)."""
    nested: dict[str, Any] = _DECODE(_ENCODE(record))
    return lift(flatten(nested))  # the leaf records the core's dict holds (step 3)


__all__ = [
    "FLAT_FORMAT",
    "FORMAT",
    "GROUPS",
    "LEAVES",
    "SINGLE",
    "Activity",
    "Cart",
    "CartBook",
    "CustomerState",
    "Delivered",
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
    "Record",
    "RecordFormatError",
    "Redirect",
    "Return",
    "Rfm",
    "Scores",
    "Session",
    "TriggerLog",
    "builtins",
    "flat_marker",
    "flatten",
    "from_flat",
    "json_default",
    "lift",
    "marker_of",
    "nest",
    "to_flat",
]
