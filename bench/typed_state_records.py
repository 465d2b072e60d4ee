"""The forms of the typed customer state the probe compares (``bench/typed_state_probe.py``).

The shape is written once, as msgspec Structs declared ``gc=False``, in
``touchstream/domain/records.py`` (docs/design/typed-state.md). The probe also measures the
candidates the design did not pick, derived here from those Structs so that every form has
exactly one shape:

- ``structs(gc=True)``: the same Structs tracked by the cycle collector (``gc=False`` gives
  the domain's own);
- ``dataclasses_()``: the same records as slotted dataclasses, with a hand-written builder
  from orjson's builtins (``dataclass_from_nested``; orjson has no typed decoder) and their
  conversion from and to today's flat dict (``dataclass_from_flat``, ``dataclass_to_flat``).

Nothing in ``touchstream`` imports this.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, Literal

import msgspec

from touchstream.domain import records
from touchstream.domain.records import CustomerState, flatten, nest

RECORDS: tuple[type[records.Record], ...] = (records.Live, records.Redirect, records.Erased)


def _derive(make: typing.Callable[[type, list[Any], str | None], Any]) -> dict[str, Any]:
    """Every record reachable from the union, rebuilt by ``make(struct, fields, tag)``, where
    each field is ``(name, type)`` or ``(name, type, default)`` with the types rebuilt too."""
    made: dict[str, Any] = {}

    def convert(tp: Any) -> Any:
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            return build(tp)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is None or not args or origin is Literal:
            return tp
        converted = tuple(convert(a) for a in args)
        if origin in (typing.Union, types.UnionType):
            return functools.reduce(lambda a, b: a | b, converted)
        return origin[converted if len(converted) > 1 else converted[0]]

    def build(cls: type) -> Any:
        name = cls.__name__
        if name not in made:
            fields: list[Any] = []
            for f in msgspec.structs.fields(cls):
                tp = convert(f.type)
                fields.append((f.name, tp) if f.required else (f.name, tp, f.default))
            made[name] = make(cls, fields, cls.__struct_config__.tag)  # type: ignore[attr-defined]
        return made[name]

    union = [build(cls) for cls in RECORDS]
    made["CustomerState"] = functools.reduce(lambda a, b: a | b, union)
    return made


@functools.cache
def structs(gc: bool = False) -> dict[str, Any]:
    """msgspec Structs of every record (name -> Struct), the union as ``"CustomerState"``:
    ``gc=False`` the domain's own, ``gc=True`` copies the cycle collector tracks."""
    if not gc:
        names = {cls.__name__: cls for cls in vars(records).values() if isinstance(cls, type)}
        return _derive(lambda cls, fields, tag: names[cls.__name__])

    def make(cls: type, fields: list[Any], tag: str | None) -> Any:
        tagged = {"tag": tag, "tag_field": "t"} if tag else {}
        # the same encoding: a record that omits its defaults (Rfm's figures, Erased's
        # unconfirmed) omits them tracked too
        omit = cls.__struct_config__.omit_defaults  # type: ignore[attr-defined]
        return msgspec.defstruct(
            cls.__name__, fields, kw_only=True, gc=True, omit_defaults=omit, **tagged
        )

    return _derive(make)


@functools.cache
def dataclasses_() -> dict[str, Any]:
    """The records as slotted, keyword-only dataclasses (the tag ``t`` a field of its own,
    first, so that orjson writes the Structs' very layout)."""

    def make(cls: type, fields: list[Any], tag: str | None) -> Any:
        if tag:
            fields = [("t", Literal[tag], dataclasses.field(default=tag)), *fields]
        return dataclasses.make_dataclass(cls.__name__, fields, slots=True, kw_only=True)

    return _derive(make)


# -- slotted dataclasses from the nested layout (orjson gives builtins) -------------------


def _opt(cls: Any, d: dict[str, Any] | None) -> Any:
    return None if d is None else cls(**d)


def dataclass_from_nested(d: dict[str, Any]) -> Any:
    """The dataclass form of a nested value: each record built by hand (no validation)."""
    dc = dataclasses_()
    tag = d["t"]
    if tag == "redirect":
        return dc["Redirect"](customer_id=d["customer_id"], into=d["into"],
                              rank=tuple(d["rank"]), version=d["version"])  # fmt: skip
    if tag == "erased":
        return dc["Erased"](customer_id=d["customer_id"], erased_at=d["erased_at"],
                            version=d["version"])  # fmt: skip
    i, led, m, r, tl = d["identity"], d["ledger"], d["loyalty"], d["rfm"], d["trigger_log"]
    risk = m["risk"]

    def cart(c: dict[str, Any]) -> Any:
        reminded = c.get("reminded")
        return dc["Cart"](
            items={sku: (q, p) for sku, (q, p) in c["items"].items()},
            at=c["at"],
            since=c.get("since"),
            closed_at=c["closed_at"],
            reminded=None if reminded is None else (reminded[0], reminded[1]),
            value=c.get("value", 0),
        )

    return dc["Live"](
        fmt=d["fmt"],
        identity=dc["Identity"](
            customer_id=i["customer_id"],
            rank=tuple(i["rank"]),
            merged=i["merged"],
            refused=i["refused"],
            asked=i["asked"],
            pending=i["pending"],
            identifiers=i["identifiers"],
            erased_before=i.get("erased_before"),
        ),
        guard=dc["Guard"](**d["guard"]),
        ledger=dc["Ledger"](
            points=led["points"],
            qualifying_spend_minor=led["qualifying_spend_minor"],
            orders={k: dc["Order"](**o) for k, o in led["orders"].items()},
            returns={k: dc["Return"](**o) for k, o in led["returns"].items()},
            redemptions={k: (v[0], v[1]) for k, v in led["redemptions"].items()},
            past=_opt(dc["Past"], led["past"]),
            ids=_opt(dc["Ids"], led["ids"]),
            signup_bonus_at=led["signup_bonus_at"],
            first_purchase_at=led["first_purchase_at"],
            last_purchase_at=led["last_purchase_at"],
            rewards=led["rewards"],
            unlocks=led["unlocks"],
        ),
        loyalty=dc["LoyaltyMarks"](
            tier=m["tier"],
            at=m["at"],
            due=m["due"],
            spend=m["spend"],
            risk=None if risk is None else (risk[0], risk[1]),
            warned=m["warned"],
            expired=m["expired"],
            vips=m.get("vips", 0),
        ),
        activity=dc["Activity"](**d["activity"]),
        cart_book=dc["CartBook"](
            carts={k: cart(c) for k, c in d["cart_book"]["carts"].items()},
            carts_closed_until=d["cart_book"]["carts_closed_until"],
        ),
        consent={k: dc["Grant"](**g) for k, g in d["consent"].items()},
        trigger_log=dc["TriggerLog"](
            delivered=[(x[0], x[1], x[2]) for x in tl["delivered"]], deferred=tl["deferred"]
        ),
        session=_opt(dc["Session"], d["session"]),
        rfm=dc["Rfm"](
            at=r["at"],
            scores=_opt(dc["Scores"], r["scores"]),
            due=r["due"],
            lapse=r["lapse"],
            figures=_opt(dc["Figures"], r.get("figures")),
        ),
    )


def dataclass_from_flat(flat: dict[str, Any]) -> Any:
    """A format-2 dict value (migrated) as dataclasses."""
    return dataclass_from_nested(nest(flat))


def _builtins(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _builtins(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _builtins(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_builtins(v) for v in value]
    return value


def dataclass_to_flat(record: Any) -> dict[str, Any]:
    """Dataclass records as today's flat dict (format 2)."""
    return flatten(typing.cast(dict[str, Any], _builtins(record)))


__all__ = [
    "CustomerState",
    "dataclass_from_flat",
    "dataclass_from_nested",
    "dataclass_to_flat",
    "dataclasses_",
    "nest",
    "structs",
]
