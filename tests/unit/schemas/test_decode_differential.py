"""Differential fuzz of the typed check of ``decode`` against the published JSON Schemas.

``decode`` accepts an event the msgspec Struct of its type accepts (schemas/structs.py, generated
from touchstream/schemas/events/v1/*.json) and asks the schema itself (fastjsonschema) about
every other one. The events here are drawn from the schemas: valid ones, and near-valid ones
(strings at and beyond their length bounds, near-misses of the patterns and enums, wrong JSON
types, integral and fractional floats for integers, integers at and beyond 64 bits, missing
required fields, extra keys where the schema allows and forbids them, empty objects where one
field is the minimum, arrays at and beyond their bound), then written as JSON and, some of them,
broken as bytes (non-UTF-8, deep nesting). For each:

- the Struct never accepts what the schema refuses, and refuses what the schema accepts only
  for an integral float where the schema says ``integer`` (JSON Schema counts 12.0 as one);
- ``decode`` gives exactly the outcome of the schema-only path: the same event, or the same
  exception class (DLQ reason) and message.

``TOUCHSTREAM_FUZZ_EXAMPLES`` sets the number of examples per test (default 300).
"""

from __future__ import annotations

import json
import os
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import event as label
from hypothesis import strategies as st

from tests.unit.schemas.test_event_schemas import ACCEPTED, REJECTED
from tests.unit.schemas.test_event_schemas import example as readme_example
from touchstream.errors import PoisonEvent
from touchstream.schemas import structs
from touchstream.schemas.decode import EVENT_TYPES, decode, schema_text, validator

SCHEMAS = {t: orjson.loads(schema_text(t)) for t in EVENT_TYPES}
MAX = 65_536
FUZZ = settings(
    max_examples=int(os.environ.get("TOUCHSTREAM_FUZZ_EXAMPLES", "300")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
# integers a JSON document can carry, inside and beyond the 64-bit ranges parsers hold
INTEGERS = st.sampled_from(
    [-(2**64), -(2**63) - 1, -(2**63), -1, 0, 1, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64]
)
NOT_INTEGRAL = st.sampled_from([0.5, -0.5, 1.5, 1e-300, 12.25])
INTEGRAL_FLOATS = st.sampled_from([0.0, -0.0, 1.0, 12.0, 1e15, 1e300, -1.0])
# strings that a pattern's author may not have thought of: a final newline (Python's "$" allows
# it, JSON Schema's does not), digits and letters outside ASCII, spaces, empty
PATTERN_NEAR_MISSES = st.sampled_from(["", " ", "\n", "\u0663", "\uff11", "\u00e9", "a", "Z", "z"])


def outcome(raw: bytes, schema_only: bool) -> Any:
    try:
        return decode(raw, MAX, schema_only=schema_only)
    except PoisonEvent as exc:
        return (type(exc), exc.message)


class Plan:
    """Which field of an event is drawn near-valid: the ``left``-th value drawn (about half
    of the events have none and are valid as a whole, the others are invalid in one field)."""

    def __init__(self, left: int) -> None:
        self.left = left

    def miss(self) -> bool:
        self.left -= 1
        return self.left == 0


@st.composite
def string_for(draw: st.DrawFn, node: dict[str, Any], miss: bool) -> str:
    low, high = node.get("minLength", 0), node.get("maxLength", 40)
    if "pattern" in node:
        text = draw(st.from_regex(node["pattern"].removesuffix("$") + r"\Z"))
        if not miss:
            return text
        how = draw(st.sampled_from(["append", "prepend", "replace", "cut"]))
        extra = draw(PATTERN_NEAR_MISSES)
        at = draw(st.integers(0, len(text)))
        if how == "append":
            return text + extra
        if how == "prepend":
            return extra + text
        if how == "replace":
            return text[: max(0, at - 1)] + extra + text[at:]
        return text[:at]
    if miss:
        size = max(0, draw(st.sampled_from([low - 1, high + 1, high + 1])))
    else:
        size = draw(st.sampled_from([low, high]) | st.integers(low, min(high, low + 12)))
    # characters beyond ASCII and the BMP count once (code points), in JSON Schema as in Python
    alphabet = draw(st.sampled_from(["a", "\u00e9", "\U0001f600", "x\u0301"]))
    return (alphabet * size)[:size]


@st.composite
def integer_for(draw: st.DrawFn, node: dict[str, Any], miss: bool) -> Any:
    low = node.get("minimum", -(2**63))
    valid = st.integers(min_value=max(low, 0), max_value=10**6) | st.sampled_from(
        [low, low + 1, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1]
    )
    if not miss:
        return draw(valid)
    how = draw(st.sampled_from(["below", "integral float", "float", "bool", "huge"]))
    if how == "below":
        return low - draw(st.sampled_from([1, 2, 2**64]))
    if how == "integral float":
        return draw(INTEGRAL_FLOATS)
    if how == "float":
        return draw(NOT_INTEGRAL)
    if how == "bool":
        return draw(st.booleans())
    return draw(INTEGERS)


@st.composite
def value_for(draw: st.DrawFn, node: dict[str, Any], plan: Plan) -> Any:
    """A value valid for ``node``, or (rarely) close to valid or of another JSON type."""
    miss = plan.miss()
    if miss and draw(st.integers(0, 3)) == 0:
        return draw(ANY_JSON)
    if "const" in node or "enum" in node:
        values = [node["const"]] if "const" in node else node["enum"]
        value = draw(st.sampled_from(values))
        if not miss:
            return value
        if isinstance(value, int):
            return draw(st.sampled_from([True, float(value), value + 1, str(value)]))
        return draw(st.sampled_from([value.upper(), value + "\n", " " + value, "", value[:-1]]))
    kinds = node.get("type")
    if isinstance(kinds, list):
        kinds = draw(st.sampled_from(kinds))
    if kinds == "string":
        return draw(string_for(node, miss))
    if kinds == "integer":
        return draw(integer_for(node, miss))
    if kinds == "boolean":
        return draw(st.sampled_from([0, 1, "true", None] if miss else [True, False]))
    if kinds == "array":
        bound = node.get("maxItems", 5)
        size = draw(st.sampled_from([bound + 1] if miss else [0, 1, 2, 3, bound]))
        # the schema and the Struct check every element alike: a few drawn ones and copies
        drawn = [draw(value_for(node["items"], plan)) for _ in range(min(size, 3))]
        return drawn + drawn[-1:] * (size - len(drawn))
    if kinds == "object":
        return draw(object_for(node, plan, miss))
    return draw(ANY_JSON)


@st.composite
def object_for(
    draw: st.DrawFn, node: dict[str, Any], plan: Plan, miss: bool = False
) -> dict[str, Any]:
    properties = node.get("properties", {})
    required = node.get("required", ())
    out: dict[str, Any] = {}
    for name, sub in properties.items():
        if name in required or draw(st.booleans()):
            out[name] = draw(value_for(sub, plan))
    least = node.get("minProperties", 0)
    for name, sub in list(properties.items())[: max(0, least - len(out))]:
        out.setdefault(name, draw(value_for(sub, plan)))
    if not properties or node.get("additionalProperties", True):
        # keys the schema does not name, where it allows them (identify's free-form traits)
        out.update(draw(st.dictionaries(st.text(max_size=5), ANY_JSON, max_size=2)))
    if miss:
        forbids = node.get("additionalProperties", True) is False
        how = draw(st.sampled_from(["drop required", "empty"] + ["extra key"] * 3 * forbids))
        if how == "drop required" and required:
            out.pop(draw(st.sampled_from(required)), None)
        elif how == "extra key":  # a key the schema does not name, where it forbids them
            out[draw(st.sampled_from(["extra", "Email", "", "f0", "customer_id "]))] = 1
        else:
            out.clear()
    return out


@st.composite
def schema_events(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    event_type = draw(st.sampled_from(EVENT_TYPES))
    plan = Plan(draw(st.integers(0, 24)) if draw(st.booleans()) else -1)
    event = draw(object_for(SCHEMAS[event_type], plan, plan.miss()))
    # mostly of the right type and version, so that the schema, not the envelope checks, decides
    if draw(st.integers(0, 19)):
        event["type"] = event_type
        event["schema_version"] = 1
    return event_type, event


def struct_accepts(event_type: str, event: Any) -> bool:
    try:
        msgspec.convert(event, structs.struct(event_type))
    except msgspec.ValidationError:
        return False
    return True


def schema_accepts(event_type: str, event: Any) -> bool:
    try:
        validator(event_type)(event)
    except Exception:  # fastjsonschema.JsonSchemaValueException
        return False
    return True


def integral_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: integral_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral_floats_as_ints(v) for v in value]
    return value


def assert_struct_agrees(event_type: str, event: Any) -> None:
    by_struct, by_schema = struct_accepts(event_type, event), schema_accepts(event_type, event)
    agrees = "agrees" if by_struct == by_schema else "refuses"
    label(f"schema {'accepts' if by_schema else 'refuses'}, Struct {agrees}")
    assert not by_struct or by_schema, f"the Struct accepts what the schema refuses: {event!r}"
    if by_schema and not by_struct:
        assert struct_accepts(event_type, integral_floats_as_ints(event)), (
            f"the Struct refuses a schema-valid event: {event!r}"
        )


def as_parsed(event: dict[str, Any]) -> Any:
    """The event as decode sees it: written as JSON, read back by orjson (which refuses some
    integers beyond 64 bits); None when orjson refuses it."""
    try:
        return orjson.loads(json.dumps(event))
    except orjson.JSONDecodeError:
        return None


def valid_event(event_type: str) -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "type": event_type,
        "schema_version": 1,
        "occurred_at": "2026-11-20T14:03:27Z",
        "channel": "web",
        "source": "web-eu",
        "identity": {"customer_id": "C-1"},
        "properties": {
            "purchase": {"order_id": "O-1", "total_minor": 100, "currency": "EUR", "items": []}
        }.get(event_type, {}),
    }


@FUZZ
@given(schema_events())
@example(("purchase", dict(valid_event("purchase"), occurred_at="2026-11-20T14:03:27Z\n")))
@example(("purchase", dict(valid_event("purchase"), identity={})))
@example(("purchase", dict(valid_event("purchase"), schema_version=1.0)))
def test_the_struct_accepts_exactly_what_the_schema_does(drawn):
    event_type, event = drawn
    parsed = as_parsed(event)
    if isinstance(parsed, dict):
        assert_struct_agrees(event_type, parsed)
    assert_struct_agrees(event_type, event)


BREAKS = st.sampled_from(
    [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\\ud800", b"[" * 70, b'{"a":' * 70, b"1e400", b","]
)


# nesting around decode.MAX_DEPTH (64 levels, the event itself being level 1)
DEPTHS = st.none() | st.integers(min_value=60, max_value=66)


@FUZZ
@given(
    schema_events(),
    st.booleans(),
    DEPTHS,
    st.none() | st.tuples(st.integers(0, 10**6), BREAKS),
)
def test_decode_has_exactly_the_outcome_of_the_schema_path(drawn, ascii_only, depth, damage):
    _, event = drawn
    if depth is not None and isinstance(event.get("properties"), dict):
        nested: Any = 1
        for _ in range(depth - 2):
            nested = [nested]
        event["properties"]["nested"] = nested
    raw = bytearray(json.dumps(event, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"))
    if damage is not None:
        at, piece = damage
        at %= len(raw) + 1
        raw[at:at] = piece
    found = outcome(bytes(raw), False)
    label(found[0].reason if isinstance(found, tuple) else "accepted")
    assert found == outcome(bytes(raw), True)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("occurred_at",), "2026-11-20T14:03:27Z\n"),
        (("properties", "currency"), "EUR\n"),
        (("identity",), {}),
        (("identity", "Email"), "a@b.example"),
        (("properties", "total_minor"), True),
        (("properties", "items"), [{"sku": "S", "quantity": 1, "unit_price_minor": 1}] * 501),
        (("channel",), "Web"),
    ],
)
def test_the_struct_refuses_what_the_schema_refuses(path, value):
    event = valid_event("purchase")
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value

    assert not schema_accepts("purchase", event)
    assert not struct_accepts("purchase", event)
    assert outcome(orjson.dumps(event), False) == outcome(orjson.dumps(event), True)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_the_struct_accepts_the_contracts_example_of_every_type(event_type):
    assert struct_accepts(event_type, readme_example(event_type))


@pytest.mark.parametrize(
    ("event_type", "path", "value"), [pytest.param(*case, id=name) for name, *case in ACCEPTED]
)
def test_the_struct_accepts_what_the_contract_tests_accept(event_type, path, value):
    assert struct_accepts(event_type, readme_example(event_type, path, value))


@pytest.mark.parametrize(
    ("event_type", "path", "value"),
    [pytest.param(*case[:3], id=name) for name, *case in REJECTED],
)
def test_the_struct_refuses_what_the_contract_tests_refuse(event_type, path, value):
    assert not struct_accepts(event_type, readme_example(event_type, path, value))


@pytest.mark.parametrize(
    "node",
    [
        {"type": "string", "format": "email"},
        {"type": "integer", "exclusiveMinimum": 0},
        {"type": "object", "maxProperties": 3},
        {"type": "array", "items": {"type": "string"}, "minItems": 1},
        {"type": "number"},
        {"type": "string", "pattern": "^a$|^b$"},
        {"anyOf": [{"type": "string"}]},
    ],
)
def test_a_schema_keyword_the_structs_do_not_translate_stops_generation(node):
    schema = {"type": "object", "properties": {"field": node}}

    with pytest.raises(structs.UntranslatableSchema, match="field"):
        structs.struct_for_schema(schema)
