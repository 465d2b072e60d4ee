"""Typed customer state, measured: ``python bench/typed_state_probe.py [events] [customers] [rounds]``.

Issue 29 asks, before the typed-state rewrite, for msgspec Structs or slotted dataclasses to be
measured on the bench data and one picked (docs/design/typed-state.md holds the numbers and the
pick). This probe takes the final customers table of the bench's data set (the pure core over
``touchstream.bench.replay``, as ``bench/core_speed.py`` runs it; defaults 50,000 events of
5,000 customers) and compares the in-memory forms of each state:

- ``dict``: today's form, stored as orjson compressed with zstd against ``DICTIONARY_1``
  (``touchstream.tables.state_codec``, read back through ``tables.customers.decode_state``);
- ``msgspec``: the Structs of ``touchstream/domain/records.py`` (the tagged union
  ``Live | Redirect | Erased``) tracked by the cycle collector (copies derived in
  ``bench/typed_state_records.py``), encoded and decoded by msgspec's typed JSON codec;
- ``msgspec gc=F``: the domain's own Structs, declared ``gc=False`` (the cycle collector does
  not track them; records hold no cycles): the form the design picked;
- ``dataclass``: the same records as slotted dataclasses (derived from the Structs), encoded by
  orjson (which serialises dataclasses) and decoded with orjson plus a hand-written builder per
  record.

Both typed forms store the same bytes (a nested layout: one object per capability, the tag
``t`` first; checked below, as is msgspec encoding today's dicts to orjson's very bytes) through
the same zstd dictionary step. For each form, per state:

- ``decode``: stored value -> in-memory form (zstd included);
- ``encode``: in-memory form -> stored value (zstd included);
- each of those for the JSON alone, without zstd (``its JSON alone``);
- ``read old``: a value today's worker wrote (format 2) -> this form: the migration path;
- ``update``: a typical event (a page view): copy-on-write of the state with a changed delivery
  guard (version, route offset, a new event id), activity (time, event count) and session,
  through ``dict(state, ...)``, ``msgspec.structs.replace`` or ``dataclasses.replace``;
- ``reads``: the fields the profile projection (``domain.profile.project``) reads;
- memory per state held decoded (tracemalloc), and the stored size (mean bytes), with
  ``DICTIONARY_1`` and with a dictionary of the typed layout's names (``DICTIONARY_2`` below,
  a sketch of the new format byte such a layout would need).

CPU is ``time.process_time``, the best of ``rounds`` rounds (default 5), the forms alternating in a
rotating order within each round, with the collector set as the worker sets it (msgspec is the
project's pinned 0.22.0, the version measured).
"""

from __future__ import annotations

import dataclasses
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import typed_state_records as records
from touchstream.bench.replay import bench_events, replay
from touchstream.domain.migrate import migrate
from touchstream.domain.records import json_default, lift
from touchstream.runtime.worker import GC_THRESHOLDS
from touchstream.tables import state_codec
from touchstream.tables.customers import decode_state

NOW_MS = 1_795_400_000_000  # fixed, as bench/core_speed.py: the data must not depend on the day


def _dictionary_2() -> bytes:
    """DICTIONARY_1's placeholders in the typed layout, after a redirect and an erasure marker."""
    flat = orjson.loads(state_codec.DICTIONARY_1)
    redirect = {"t": "redirect", "customer_id": flat["customer_id"], "into": flat.pop("into")}
    redirect |= {"rank": flat["rank"], "version": 1}
    erased = {"t": "erased", "customer_id": flat["customer_id"]}
    erased |= {"erased_at": flat.pop("erased_at"), "version": 1}
    flat |= {"fmt": 2, "past": None, "ids": None, "clock_at": 1_700_000_000_000}
    live = records.nest(flat)
    return b"".join(orjson.dumps(v) for v in (redirect, erased, live))


DICTIONARY_2 = _dictionary_2()


def _packer(dictionary: bytes) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]:
    d = zstandard.ZstdCompressionDict(dictionary, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    compress = zstandard.ZstdCompressor(
        level=3, dict_data=d, write_checksum=False, write_dict_id=False
    ).compress
    decompress = zstandard.ZstdDecompressor(dict_data=d).decompress
    return (lambda b: b"\x01" + compress(b)), (lambda b: decompress(memoryview(b)[1:]))


PACK_1, UNPACK_1 = state_codec.pack, state_codec.unpack
PACK_2, UNPACK_2 = _packer(DICTIONARY_2)


@dataclasses.dataclass
class Form:
    """One in-memory form: how it is stored, read, updated and read from."""

    name: str
    to_stored: Callable[[Any], bytes]
    from_stored: Callable[[bytes], Any]
    read_old: Callable[[bytes], Any]  # a format-2 value (today's stored dict) -> this form
    update: Callable[[Any, int], Any]
    reads: Callable[[Any], Any]
    layout: Callable[[Any], bytes]  # the uncompressed bytes
    parse: Callable[[bytes], Any]  # the uncompressed bytes -> this form


# -- today's dict ---------------------------------------------------------------------------


def _flat_builtins(stored: bytes) -> dict[str, Any]:
    """A stored value as the flat dict of builtins (format 2), no leaf records: what the typed
    forms convert from (``decode_state`` builds the leaf records the core's dict now holds)."""
    flat: dict[str, Any] = migrate(orjson.loads(state_codec.unpack(stored)))
    return flat


def _dict_update(s: dict[str, Any], at: int) -> dict[str, Any]:
    src = dict(s["src"])
    src["0"] = src.get("0", 0) + 1
    seen = dict(s["seen"])
    seen[f"{at:016x}"] = at
    events = dict(s["events"])
    events["page_view"] = events.get("page_view", 0) + 1
    session = s["session"]
    if session is not None:
        # a leaf record (step 3)
        session = msgspec.structs.replace(session, last=at, page_views=session.page_views + 1)
    return dict(
        s,
        version=s["version"] + 1,
        src=src,
        seen=seen,
        clock_at=at,
        last_event_at=at,
        events=events,
        session=session,
    )


def _dict_reads(s: dict[str, Any]) -> tuple[Any, ...]:
    m, r = s["loyalty"], s["rfm"]
    scores = r.scores  # a leaf record (step 3)
    past = s["past"]
    return (
        s["customer_id"],
        s["points"],
        sum(s["events"].values()),
        m.tier,  # leaf records (step 3)
        m.spend,
        m.risk,
        len(s["orders"]) + (past.orders if past is not None else 0),  # a Past record (step 3)
        s["last_purchase_at"],
        s["signup_bonus_at"],
        sum(c.value for c in s["carts"].values() if c.closed_at is None),
        (scores.r, scores.f, scores.m, scores.segment) if scores else None,
        r.figures,
        [g.granted for g in s["consent"].values()],  # a leaf record (step 3)
        s["last_event_at"],
        s["version"],
    )


DICT = Form(
    "dict",
    to_stored=state_codec.encode,
    from_stored=decode_state,
    read_old=decode_state,
    update=_dict_update,
    reads=_dict_reads,
    layout=lambda s: orjson.dumps(s, default=state_codec._record),
    parse=lambda b: lift(orjson.loads(b)),
)

# -- typed records: the same code reads both typed forms (attributes) -----------------------


def _typed_update(replace: Callable[..., Any]) -> Callable[[Any, int], Any]:
    def update(s: Any, at: int) -> Any:
        g, a = s.guard, s.activity
        src = dict(g.src)
        src["0"] = src.get("0", 0) + 1
        seen = dict(g.seen)
        seen[f"{at:016x}"] = at
        events = dict(a.events)
        events["page_view"] = events.get("page_view", 0) + 1
        session = s.session
        if session is not None:
            session = replace(session, last=at, page_views=session.page_views + 1)
        return replace(
            s,
            guard=replace(g, version=g.version + 1, src=src, seen=seen, clock_at=at),
            activity=replace(a, last_event_at=at, events=events),
            session=session,
        )

    return update


def _typed_reads(s: Any) -> tuple[Any, ...]:
    led, m, r = s.ledger, s.loyalty, s.rfm
    scores, past = r.scores, led.past
    return (
        s.identity.customer_id,
        led.points,
        sum(s.activity.events.values()),
        m.tier,
        m.spend,
        m.risk,
        len(led.orders) + (past.orders if past else 0),
        led.last_purchase_at,
        led.signup_bonus_at,
        sum(c.value for c in s.cart_book.carts.values() if c.closed_at is None),
        (scores.r, scores.f, scores.m, scores.segment) if scores else None,
        r.figures,
        [g.granted for g in s.consent.values()],
        s.activity.last_event_at,
        s.guard.version,
    )


def _dataclass_form() -> Form:
    def from_old(stored: bytes) -> Any:
        return records.dataclass_from_flat(_flat_builtins(stored))  # type: ignore[arg-type]

    return Form(
        "dataclass",
        to_stored=lambda r: PACK_1(orjson.dumps(r)),
        from_stored=lambda b: records.dataclass_from_nested(orjson.loads(UNPACK_1(b))),
        read_old=from_old,
        update=_typed_update(dataclasses.replace),
        reads=_typed_reads,
        layout=orjson.dumps,
        parse=lambda b: records.dataclass_from_nested(orjson.loads(b)),
    )


def _msgspec_form(gc: bool) -> Form:
    union = records.structs(gc)["CustomerState"]
    encode = msgspec.json.Encoder().encode
    decode = msgspec.json.Decoder(union).decode

    def from_old(stored: bytes) -> Any:
        return msgspec.convert(records.nest(_flat_builtins(stored)), union)  # type: ignore[arg-type]

    return Form(
        "msgspec" if gc else "msgspec gc=F",
        to_stored=lambda r: PACK_1(encode(r)),
        from_stored=lambda b: decode(UNPACK_1(b)),
        read_old=from_old,
        update=_typed_update(msgspec.structs.replace),
        reads=_typed_reads,
        layout=encode,
        parse=decode,
    )


# -- the measurement ------------------------------------------------------------------------


def _cpu(fn: Callable[[Any], Any], items: list[Any]) -> float:
    gc.collect()
    started = time.process_time()
    for item in items:
        fn(item)
    return time.process_time() - started


def _held_bytes(decode: Callable[[bytes], Any], stored: list[bytes]) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held = [decode(b) for b in stored]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del held
    return (after - before) / len(stored)


def main(events: int = 50_000, customers: int = 5_000, rounds: int = 5) -> None:
    table = replay(bench_events(events, customers, NOW_MS)).table
    old = {cid: state_codec.encode(s) for cid, s in table.items()}  # as today's worker stores
    # msgspec encodes today's dicts to orjson's very bytes (state_codec.encode uses it)
    encode = msgspec.json.Encoder().encode
    assert all(
        encode(s) == orjson.dumps(s, default=json_default)
        for s in table.values()
        if isinstance(s, dict)
    )
    live_ids = [cid for cid, s in table.items() if isinstance(s, dict)]  # redirects are records
    other_ids = [cid for cid in table if cid not in set(live_ids)]
    forms = [DICT, _dataclass_form(), _msgspec_form(gc=True), _msgspec_form(gc=False)]
    print(
        f"bench data: {events:,} events of {customers:,} customers -> {len(live_ids):,} live "
        f"profiles, {len(other_ids):,} redirects and markers; best of {rounds} rounds, "
        f"process_time, forms alternating; msgspec {msgspec.__version__}"
    )

    # each form's stored values and in-memory states, from today's stored values
    stored: dict[str, dict[str, bytes]] = {}
    memory: dict[str, dict[str, Any]] = {}
    for form in forms:
        memory[form.name] = {cid: form.read_old(b) for cid, b in old.items()}
        stored[form.name] = {cid: form.to_stored(v) for cid, v in memory[form.name].items()}
    typed = [f for f in forms if f is not DICT]
    for cid in table:  # both typed forms store the same bytes and read back what they hold
        layouts = {form.layout(memory[form.name][cid]) for form in typed}
        assert len(layouts) == 1, cid
        for form in forms:
            assert form.from_stored(stored[form.name][cid]) == memory[form.name][cid], cid
        flat = records.dataclass_to_flat(memory["dataclass"][cid])
        assert flat == _flat_builtins(old[cid]), cid

    at = NOW_MS + 1
    ops: dict[str, Callable[[Form], tuple[Callable[[Any], Any], list[Any]]]] = {
        "decode": lambda f: (f.from_stored, list(stored[f.name].values())),
        "  its JSON alone": lambda f: (f.parse, [f.layout(v) for v in memory[f.name].values()]),
        "encode": lambda f: (f.to_stored, list(memory[f.name].values())),
        "  its JSON alone ": lambda f: (f.layout, list(memory[f.name].values())),
        "read old": lambda f: (f.read_old, list(old.values())),
        "update": lambda f: (
            lambda s: f.update(s, at),
            [memory[f.name][c] for c in live_ids],
        ),
        "reads": lambda f: (f.reads, [memory[f.name][c] for c in live_ids]),
    }
    gc.set_threshold(*GC_THRESHOLDS)
    best = {(op, f.name): float("inf") for op in ops for f in forms}
    for round_ in range(rounds):
        order = forms[round_ % len(forms) :] + forms[: round_ % len(forms)]
        for op, make in ops.items():
            for form in order:
                fn, items = make(form)
                best[op, form.name] = min(best[op, form.name], _cpu(fn, items) / len(items))
    gc.set_threshold(700, 10, 10)

    names = [f.name for f in forms]
    width = 26
    print(f"\n{'per state':<{width}}" + "".join(f"{n:>14}" for n in names))
    for op in ops:
        cells = "".join(f"{best[op, n] * 1e6:>11.2f} us" for n in names)
        print(f"{op.rstrip() + ' (CPU)':<{width}}{cells}")
    for label, ids in (("held, live", live_ids), ("held, redirect", other_ids)):
        held = [_held_bytes(f.from_stored, [stored[f.name][c] for c in ids]) for f in forms]
        print(f"{label + ' (bytes)':<{width}}" + "".join(f"{h:>14,.0f}" for h in held))
    for label, ids in (("stored, live", live_ids), ("stored, redirect", other_ids)):
        sizes = [statistics.mean(len(stored[n][c]) for c in ids) for n in names]
        print(f"{label + ' (bytes)':<{width}}" + "".join(f"{s:>14,.0f}" for s in sizes))
        plain = [statistics.mean(len(f.layout(memory[f.name][c])) for c in ids) for f in forms]
        print(f"{'  its JSON, uncompressed':<{width}}" + "".join(f"{s:>14,.0f}" for s in plain))
    layout = typed[0]
    for label, ids in (("  typed, DICTIONARY_2", live_ids), ("  typed, DICTIONARY_2 redir", other_ids)):  # fmt: skip
        packed = [PACK_2(layout.layout(memory[layout.name][c])) for c in ids]
        assert all(
            UNPACK_2(p) == layout.layout(memory[layout.name][c])
            for p, c in zip(packed, ids, strict=True)
        )
        print(f"{label:<{width}}{statistics.mean(len(p) for p in packed):>14,.0f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
