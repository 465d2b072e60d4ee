"""Fuzzing the inbound path on bytes: whatever a producer sends, ``decode`` returns an event or
refuses it with a PoisonEvent whose reason is one of the DLQ reasons of the contract
(touchstream/schemas/events/v1/README.md, "Rejected events (dead-letter queue)"), and the ingest normalisation of an accepted event refuses only with a PoisonEvent too.
Anything else escapes the poison path: the ingest agent quarantines it (stage ``ingest``,
streams/isolation.py), a bug rather than a contract violation.

``TOUCHSTREAM_FUZZ_EXAMPLES`` sets the number of examples per test (default 300), so a long fuzz
is ``TOUCHSTREAM_FUZZ_EXAMPLES=20000 pytest tests/unit/schemas/test_decode_fuzz.py``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
from dataclasses import replace
from functools import cache
from importlib import resources
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from touchstream.config.rules import Rules, load_rules
from touchstream.config.settings import DEV_HMAC_SECRET, Settings
from touchstream.domain.identity import IdentityNormaliser
from touchstream.domain.ingest import MONEY_FIELDS, Ingest
from touchstream.errors import PoisonEvent
from touchstream.schemas.decode import EVENT_TYPES, decode, load_validators
from touchstream.schemas.dlq import KEPT_WHOLE_BYTES, dlq_record, original_bytes

MAX = Settings().max_event_bytes
NOW = 1_795_183_500_000  # the wall clock of ingest: every seed event happened just before
# the DLQ reasons of the contract (touchstream/schemas/events/v1/README.md, "Rejected events")
REASONS = frozenset(
    {
        "invalid_json",
        "invalid_utf8",
        "too_large",
        "unknown_type",
        "unsupported_version",
        "schema_violation",
        "unsupported_currency",
    }
)
FUZZ = settings(
    max_examples=int(os.environ.get("TOUCHSTREAM_FUZZ_EXAMPLES", "300")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def ingest_for(rules: Rules, settings_: Settings) -> Ingest:
    """As ``streams.topology.Topology`` builds it."""
    normaliser = IdentityNormaliser(
        settings_.hmac_secret, rules.identity.blocked_values, rules.identity.default_country_code
    )
    return Ingest(rules.program, normaliser, settings_.future_tolerance_s * 1000)


DEFAULT_RULES = load_rules(None)
# a program with an exchange table (the rules file allows one), a country code and blocked values
EXCHANGE_RULES = replace(
    DEFAULT_RULES,
    program=replace(
        DEFAULT_RULES.program,
        exchange_rates_per_major={"USD": 0.92, "GBP": 1.17, "JPY": 0.006},
    ),
    identity=replace(
        DEFAULT_RULES.identity, default_country_code="49", blocked_values=("test", "n/a")
    ),
)
SETTINGS = Settings(hmac_secret=DEV_HMAC_SECRET)
INGESTS = {
    "default rules": ingest_for(DEFAULT_RULES, SETTINGS),
    "exchange table": ingest_for(EXCHANGE_RULES, SETTINGS),
}

# --- one valid event of every type: the seeds of the mutations --------------------------------

ENVELOPE: dict[str, Any] = {
    "event_id": "web-eu-000001",
    "schema_version": 1,
    "occurred_at": "2026-11-20T14:03:27.512+01:00",
    "channel": "web",
    "source": "web-eu",
    "identity": {"loyalty_id": "L-0042-118877"},
}
LINES = [
    {"sku": "SKU-10442", "quantity": 1, "unit_price_minor": 8999, "category": "shoes"},
    {"sku": "SKU-20017", "quantity": 2, "unit_price_minor": 1299},
]
PROPERTIES: dict[str, dict[str, Any]] = {
    "page_view": {"url": "https://shop.example.com/p/1", "referrer": "https://search.example/"},
    "product_view": {"sku": "SKU-1", "category": "shoes", "price_minor": 8999, "currency": "EUR"},
    "search": {"query": "running shoes"},
    "add_to_cart": {
        "cart_id": "C-1",
        "sku": "SKU-1",
        "quantity": 2,
        "unit_price_minor": 899,
        "currency": "EUR",
    },
    "remove_from_cart": {
        "cart_id": "C-1",
        "sku": "SKU-1",
        "quantity": 1,
        "unit_price_minor": 899,
        "currency": "EUR",
    },
    "checkout_started": {"cart_id": "C-1", "value_minor": 1798, "currency": "EUR"},
    "purchase": {
        "order_id": "POS-042-0193",
        "total_minor": 11597,
        "currency": "EUR",
        "discount_minor": 1000,
        "store_id": "store-042",
        "cart_id": "C-1",
        "items": LINES,
    },
    "return": {
        "return_id": "RET-1",
        "order_id": "POS-042-0193",
        "refund_minor": 2598,
        "currency": "EUR",
        "items": LINES[1:],
    },
    "redemption": {"redemption_id": "RD-1", "points": 500},
    "loyalty_signup": {},
    "identify": {"traits": {"first_name": "Ann", "vip": True}},
    "email_open": {"campaign_id": "CMP-1"},
    "email_click": {"campaign_id": "CMP-1", "url": "https://shop.example.com/sale"},
    "social_engagement": {"campaign_id": "CMP-2"},
    "consent_updated": {"purposes": {"email_marketing": True, "profiling": False}},
    "erasure_requested": {"request_id": "ER-1"},
    "access_requested": {"request_id": "AR-1"},
}
IDENTITIES: dict[str, dict[str, str]] = {
    "identify": {"email": " Ann@Example.com ", "phone": "+49 170 1234567", "device_id": "dev-1"},
    "page_view": {"anonymous_id": "anon-7f3a"},
    "email_open": {"email": "ann@example.com"},
    "purchase": {"customer_id": "CRM-991", "loyalty_id": "L-0042-118877"},
}
TIMES: dict[str, Any] = {"purchase": 1_795_183_407_512, "return": "2026-11-20 13:03:27Z"}


def valid(event_type: str) -> dict[str, Any]:
    return {
        **copy.deepcopy(ENVELOPE),
        "event_id": f"{event_type}-000001",
        "type": event_type,
        "occurred_at": TIMES.get(event_type, ENVELOPE["occurred_at"]),
        "identity": dict(IDENTITIES.get(event_type, ENVELOPE["identity"])),
        "properties": copy.deepcopy(PROPERTIES[event_type]),
    }


SEEDS = {t: valid(t) for t in EVENT_TYPES}
SEED_BYTES = {t: orjson.dumps(e) for t, e in SEEDS.items()}


# --- the property --------------------------------------------------------------------------------


def dead_letter(exc: PoisonEvent, raw: bytes | None) -> None:
    """The DLQ record of a refused record can be written and gives back the original bytes
    (or, over the kept-whole bound, their size, digest and first bytes)."""
    record = orjson.loads(
        dlq_record(exc.reason, exc.message, "touchpoints", 3, 1234, None, b"k", raw)
    )
    if raw is not None and len(raw) > KEPT_WHOLE_BYTES:
        assert record["value_size"] == len(raw)
        assert record["value_sha256"] == hashlib.sha256(raw).hexdigest()
        assert raw.startswith(base64.b64decode(record["value_prefix_b64"]))
        return
    assert original_bytes(record) == (b"k", raw)


def through_ingest(
    raw: bytes | None, max_bytes: int = MAX, serialise: bool = False
) -> dict[str, Any] | None:
    """The ingest agent's path for one record: the decoded event, or None when it was refused
    as poison (and its DLQ record keeps the original bytes). Any other exception escapes (the
    failure this file looks for). ``serialise``: also encode the internal record, as the agent
    then does to send it on (outside its try)."""
    try:
        event = decode(raw, max_bytes)
    except PoisonEvent as exc:
        assert exc.reason in REASONS, f"unknown DLQ reason {exc.reason!r}"
        assert isinstance(exc.message, str) and exc.message
        dead_letter(exc, raw)
        return None
    assert isinstance(event, dict)
    for name, ingest in INGESTS.items():
        try:
            internal = ingest.normalise(event, NOW, 3, 1234)
        except PoisonEvent as exc:
            assert exc.reason in REASONS, f"{name}: unknown DLQ reason {exc.reason!r}"
            dead_letter(exc, raw)
            continue
        assert internal["id"] == event["event_id"] and internal["type"] == event["type"], name
        if serialise:
            orjson.dumps(internal)
    return event


def to_json(value: Any, ascii_only: bool = True) -> bytes:
    """JSON text as a sloppy producer writes it: NaN/Infinity literals, integers of any size,
    lone surrogates passed through as (invalid) UTF-8 bytes."""
    text = json.dumps(value, allow_nan=True, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")


def test_every_seed_event_is_accepted_and_normalised():
    load_validators()
    for event_type, raw in SEED_BYTES.items():
        assert through_ingest(raw) == SEEDS[event_type]
        for name, ingest in INGESTS.items():
            internal = ingest.normalise(SEEDS[event_type], NOW, 0, 0)
            assert internal["type"] == event_type, name


# --- strategies ----------------------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.sampled_from([0, -1, 1, 2**53, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**400 // 10**300])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0.0, -0.0, 1.0, 12.5, 1e308, 5e-324])
    | st.text(max_size=20)
    | st.sampled_from(["", " ", "EUR", "USD", "GBP", "JPY", "eur", "null", "0", "\u0000", "\ud800"])
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
TOKENS = st.sampled_from(
    [
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"1e400",
        b"-1e400",
        b"18446744073709551616",
        b"99999999999999999999999999999",
        b"1.5",
        b"-0",
        b"null",
        b"true",
        b"[]",
        b"{}",
        b'"',
        b"\\",
        b"\\u0000",
        b"\\ud800",
        b"\\udc00\\ud800",
        b"\xff",
        b"\xc3\x28",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xef\xbb\xbf",
        b",",
        b":",
        b"[" * 64,
        b'{"a":' * 32,
        b"\x00",
    ]
) | st.binary(max_size=8)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid event's bytes after a few bit flips, truncations, insertions and deletions."""
    raw = bytearray(SEED_BYTES[draw(st.sampled_from(EVENT_TYPES))])
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=len(raw)))
        how = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "repeat"]))
        if how == "flip" and at < len(raw):
            raw[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "truncate":
            del raw[at:]
        elif how == "insert":
            raw[at:at] = draw(TOKENS)
        elif how == "delete":
            del raw[at : at + draw(st.integers(1, 8))]
        else:
            raw[at:at] = raw[at : at + draw(st.integers(1, 16))]
    return bytes(raw)


@cache
def documented_paths(event_type: str) -> tuple[tuple[str, ...], ...]:
    """Every field the schema of ``event_type`` names, as a path into the event."""
    text = resources.files("touchstream.schemas").joinpath(f"events/v1/{event_type}.json")
    schema = orjson.loads(text.read_text("utf-8"))
    out: list[tuple[str, ...]] = []

    def walk(node: dict[str, Any], path: tuple[str, ...]) -> None:
        for name, sub in node.get("properties", {}).items():
            out.append((*path, name))
            walk(sub, (*path, name))
        if isinstance(node.get("items"), dict):
            walk(node["items"], (*path, "0"))

    walk(schema, ())
    return tuple(out)


DELETE = object()


def put(event: Any, path: tuple[str, ...], value: Any) -> None:
    """Set (creating objects on the way) or, when ``value`` is DELETE, remove a field."""
    *parents, leaf = path
    target = event
    for key in parents:
        if isinstance(target, list):
            if not target or not isinstance(target[0], dict | list):
                target[:1] = [{}]  # a scalar element cannot hold the field: an object does
            target = target[0]
        else:
            if not isinstance(target.get(key), dict | list):
                target[key] = {}
            target = target[key]
    if isinstance(target, list):
        target[:] = [] if value is DELETE else [value]
    elif value is DELETE:
        target.pop(leaf, None)
    else:
        target[leaf] = value


@st.composite
def wrong_documented_fields(draw: st.DrawFn) -> bytes:
    """A valid event with some of its documented fields (envelope, identity, properties, order
    lines, consent purposes) given values of any JSON type, or removed."""
    event_type = draw(st.sampled_from(EVENT_TYPES))
    event = valid(event_type)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(documented_paths(event_type)))
        put(event, path, draw(st.just(DELETE) | JSON_VALUES))
    return to_json(event, draw(st.booleans()))


@st.composite
def envelope_like(draw: st.DrawFn) -> bytes:
    """An object made of envelope fields (each valid, random or missing) and random ones."""
    base = valid(draw(st.sampled_from(EVENT_TYPES)))
    base["type"] = draw(st.sampled_from(EVENT_TYPES) | JSON_VALUES)
    event: dict[str, Any] = {}
    for key, value in base.items():
        choice = draw(st.sampled_from(["keep", "keep", "random", "drop"]))
        if choice == "keep":
            event[key] = value
        elif choice == "random":
            event[key] = draw(JSON_VALUES)
    event.update(draw(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3)))
    return to_json(event, draw(st.booleans()))


DEEP_PLACES = [
    ("properties", "nested"),
    ("properties", "items"),
    ("properties", "traits"),
    ("identity", "email"),
    ("nested",),
    ("occurred_at",),
]


def nested_event(event_type: str, place: tuple[str, ...], depth: int, bracket: str) -> bytes:
    """A valid event with a value ``depth`` arrays or objects deep at ``place``."""
    event = valid(event_type)
    put(event, place, "@@deep@@")
    opening, closing = ("[", "]") if bracket == "[" else ('{"a":', "}")
    deep = opening * depth + "1" + closing * depth
    return orjson.dumps(event).replace(b'"@@deep@@"', deep.encode())


@st.composite
def deeply_nested(draw: st.DrawFn, max_depth: int = 3_000) -> bytes:
    return nested_event(
        draw(st.sampled_from(EVENT_TYPES)),
        draw(st.sampled_from(DEEP_PLACES)),
        draw(st.integers(min_value=1, max_value=max_depth)),
        draw(st.sampled_from(["[", "{"])),
    )


# --- the fuzz tests ------------------------------------------------------------------------------


@FUZZ
@given(st.none() | st.binary(max_size=2048), st.sampled_from([MAX, 1024, 64, 1]))
def test_arbitrary_bytes_are_an_event_or_poison(raw, max_bytes):
    through_ingest(raw, max_bytes)


@FUZZ
@given(mutated())
def test_mutated_valid_events_are_an_event_or_poison(raw):
    through_ingest(raw)


@FUZZ
@given(JSON_VALUES, st.booleans())
def test_any_json_document_is_an_event_or_poison(value, ascii_only):
    through_ingest(to_json(value, ascii_only))


@FUZZ
@given(envelope_like())
def test_envelope_like_objects_are_an_event_or_poison(raw):
    through_ingest(raw)


@FUZZ
@given(deeply_nested())
def test_deeply_nested_values_are_an_event_or_poison(raw):
    through_ingest(raw, max_bytes=max(MAX, len(raw)))


@FUZZ
@given(wrong_documented_fields())
def test_documented_fields_of_any_type_are_an_event_or_poison(raw):
    through_ingest(raw)


# --- what the agent sends on: crashes found by this fuzzing (fixed) -----------------------------

# What ingest accepts, the agent must be able to encode with orjson.dumps to send it on (an
# encoding failure would only be quarantined, stage ``ingest``: a bug, not a contract reason).
#
# Depth: orjson serialises at most 255 levels of nesting but parses 1024, so a schema-valid event
# with an unknown property nested 253 deep (a 789-byte page_view with "x": [[[...]]]) was accepted
# by decode and Ingest.normalise, then orjson.dumps(internal) raised TypeError: Recursion limit
# reached. decode now refuses events nested deeper than decode.MAX_DEPTH as invalid_json.
# Overflow: with an exchange rate above 1, a schema-valid amount close to 2**64 converted to an
# integer orjson cannot encode (TypeError: Integer exceeds 64-bit range). Ingest now refuses an
# amount, as sent or converted, above ingest.MAX_MONEY_MINOR as a schema_violation.


def deep_page_view(depth: int) -> bytes:
    return nested_event("page_view", ("properties", "x"), depth, "[")


@FUZZ
@given(wrong_documented_fields() | deeply_nested(max_depth=1_100) | mutated())
@example(raw=deep_page_view(253))
def test_what_ingest_accepts_it_can_send_on(raw):
    through_ingest(raw, max_bytes=max(MAX, len(raw)), serialise=True)


@pytest.mark.parametrize("depth", [253, 1_000])
def test_a_deeply_nested_unknown_property_can_be_sent_on(depth):
    assert len(deep_page_view(depth)) < MAX
    through_ingest(deep_page_view(depth), serialise=True)


def test_a_huge_amount_in_a_foreign_currency_can_be_sent_on():
    event = valid("purchase")
    event["properties"].update(currency="GBP", total_minor=18_000_000_000_000_000_000)

    assert through_ingest(orjson.dumps(event), serialise=True) is not None


# --- undocumented properties: crashes found by this fuzzing (fixed) -----------------------------

# The contract accepts and ignores unknown keys inside ``properties`` (schemas/events/v1/README.md:
# forward compatibility), so an event carrying one is schema-valid and must be accepted (or
# refused as poison); these escaped instead:
# - decode._reject_float_money iterated properties.items whatever its type, so an unknown "items"
#   that is a number or a boolean (a page_view with "items": 1; any type but purchase and return)
#   raised TypeError: 'int' object is not iterable. It now looks only into a list.
# - Ingest._money looked properties.currency up in the exchange table whatever its type, so an
#   unknown "currency" that is an array or an object (a page_view with "currency": []) raised
#   TypeError: unhashable type, with the default rules.
# - with an exchange table, Ingest._money converted every MONEY_FIELDS name and every
#   items[].unit_price_minor of an event in a foreign currency without knowing their types, so
#   unknown keys (a page_view with "currency": "USD" and "value_minor": "x", or "items": [1], or
#   "items": [{"sku": "a"}]) raised TypeError or KeyError.
#   Ingest._money now bounds and converts only the money each type carries by contract
#   (ingest.MONEY_BY_TYPE); a type without money keeps its properties untouched.
UNDOCUMENTED_NAMES = st.sampled_from(["items", "currency", "points", "quantity", *MONEY_FIELDS])


@st.composite
def undocumented_properties(draw: st.DrawFn) -> bytes:
    """A valid event with keys its type's schema does not name added to ``properties``."""
    event_type = draw(st.sampled_from(EVENT_TYPES))
    event = valid(event_type)
    names = {path[-1] for path in documented_paths(event_type) if path[0] == "properties"}
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        name = draw(UNDOCUMENTED_NAMES | st.text(max_size=10))
        if name not in names:
            event["properties"][name] = draw(JSON_VALUES)
    return to_json(event)


@FUZZ
@given(undocumented_properties())
@example(raw=orjson.dumps(dict(SEEDS["page_view"], properties={"url": "u", "items": 1})))
def test_undocumented_properties_of_any_type_are_an_event_or_poison(raw):
    through_ingest(raw)


def with_properties(event_type: str, **extra: Any) -> bytes:
    event = valid(event_type)
    event["properties"].update(extra)
    return orjson.dumps(event)


@pytest.mark.parametrize("items", [1, True, 2.5])
@pytest.mark.parametrize("event_type", ["page_view", "checkout_started", "redemption"])
def test_an_unknown_items_key_that_is_not_a_list_is_accepted(event_type, items):
    assert through_ingest(with_properties(event_type, items=items)) is not None


@pytest.mark.parametrize("currency", [[], {}, ["EUR"]])
@pytest.mark.parametrize("event_type", ["page_view", "redemption", "identify"])
def test_an_unknown_currency_key_that_is_not_a_string_is_an_event_or_poison(event_type, currency):
    through_ingest(with_properties(event_type, currency=currency))


@pytest.mark.parametrize(
    "extra",
    [
        {"currency": "USD", "value_minor": "x"},
        {"currency": "USD", "total_minor": None},
        {"currency": "USD", "items": [1]},
        {"currency": "USD", "items": [{"sku": "SKU-1"}]},
    ],
)
def test_unknown_money_keys_of_a_foreign_currency_are_an_event_or_poison(extra):
    through_ingest(with_properties("page_view", **extra))
