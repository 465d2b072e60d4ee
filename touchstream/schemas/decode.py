"""Decode and validate one inbound record: bytes in, a schema-valid event dict or PoisonEvent."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema
import msgspec
import orjson

from touchstream.errors import (
    InvalidJson,
    InvalidUtf8,
    SchemaViolation,
    TooLarge,
    UnknownType,
    UnsupportedVersion,
)
from touchstream.schemas import structs

SCHEMA_VERSION = 1
EVENT_TYPES = (
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout_started",
    "purchase",
    "return",
    "redemption",
    "loyalty_signup",
    "identify",
    "email_open",
    "email_click",
    "social_engagement",
    "consent_updated",
    "erasure_requested",
    "access_requested",
)
# The deepest nesting an event may have, the event object itself being level 1. The contract's
# deepest field is level 4 (event > properties > items > order line) and unknown keys are accepted
# for forward compatibility, so 64 leaves a wide margin. The bound matters because orjson reads
# 1,024 levels but writes only 255: an event nested deeper than that would be accepted here and
# then fail to encode when ingest sends it on; 64 also leaves room below 255 for any record that
# keeps part of an event nested inside its own structure. Refused as ``invalid_json``, like JSON
# nested deeper than the parser reads (the simulator's "deep_nesting" kind).
MAX_DEPTH = 64


def schema_text(event_type: str, version: int = SCHEMA_VERSION) -> str:
    path = resources.files("touchstream.schemas").joinpath(f"events/v{version}/{event_type}.json")
    return path.read_text("utf-8")


@cache
def validator(event_type: str) -> Callable[[Any], Any]:
    return fastjsonschema.compile(orjson.loads(schema_text(event_type)))


def load_validators() -> None:
    """Compile every schema, and generate its Struct (schemas.structs), up front so a broken
    or untranslatable schema file stops start-up, not an event."""
    for event_type in EVENT_TYPES:
        validator(event_type)
        structs.struct(event_type)


def decode(raw: bytes | None, max_bytes: int, schema_only: bool = False) -> dict[str, Any]:
    """The event ``raw`` holds, or the PoisonEvent saying why it is refused. An event the
    Struct of its type accepts (schemas.structs: generated from the schema, never more lenient
    than it) is schema-valid; any other is validated against the schema itself (fastjsonschema),
    which accepts it or refuses it with its message. ``schema_only``: skip the Struct (the
    reference path the tests compare with)."""
    if raw is None or raw == b"":
        raise InvalidJson("the record has no value")
    if len(raw) > max_bytes:
        raise TooLarge(f"the record is {len(raw)} bytes, more than the {max_bytes} allowed")
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as uexc:
            raise InvalidUtf8(f"the record is not UTF-8 (byte {uexc.start})") from None
        raise InvalidJson(f"the record is not JSON: {exc}") from None
    # each level needs its own "[" or "{": a record with few of them cannot be too deep, so
    # the common case costs two byte counts, and only the others are walked
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _deeper_than(event, MAX_DEPTH):
        raise InvalidJson(f"the record's JSON nests deeper than {MAX_DEPTH} levels")
    if not isinstance(event, dict):
        raise SchemaViolation(f"an event must be a JSON object, got {type(event).__name__}")
    event_type = event.get("type")
    if not isinstance(event_type, str):
        raise SchemaViolation("type is required and must be a string")
    if event_type not in EVENT_TYPES:
        raise UnknownType(f"type {event_type[:64]!r} is not a known event type")
    version = event.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise SchemaViolation("schema_version is required and must be an integer")
    if version != SCHEMA_VERSION:
        raise UnsupportedVersion(
            f"schema_version {version} is not supported (this worker reads {SCHEMA_VERSION})"
        )
    if not schema_only:
        try:
            msgspec.convert(event, structs.struct(event_type))
        except msgspec.ValidationError:
            schema_only = True  # the schema decides, and words the refusal
    if schema_only:
        try:
            validator(event_type)(event)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise SchemaViolation(_message(exc)) from None
    _reject_float_money(event["properties"])
    return event


INTEGER_FIELDS = ("points", "quantity")


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays and objects more than ``limit`` levels deep (iterative:
    no recursion however deep the input)."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list):
                if depth == limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _reject_float_money(props: dict[str, Any]) -> None:
    # JSON Schema draft-07 counts 12.0 as an integer; money and counts must never be floats.
    for name, value in props.items():
        if isinstance(value, float) and (name.endswith("_minor") or name in INTEGER_FIELDS):
            raise SchemaViolation(f"properties.{name} must be an integer, got {value!r}")
    items = props.get("items")
    # only purchase and return define items (an array); in any other type it is an unknown key
    # of any JSON type, accepted and ignored
    for i, item in enumerate(items if isinstance(items, list) else ()):
        if not isinstance(item, dict):
            continue
        for name in ("unit_price_minor", "quantity"):
            if isinstance(item.get(name), float):
                raise SchemaViolation(
                    f"properties.items[{i}].{name} must be an integer, got {item[name]!r}"
                )


def _message(exc: fastjsonschema.JsonSchemaValueException) -> str:
    message = exc.message
    if message.startswith("data."):
        message = message[5:]
    elif message.startswith("data "):
        message = "the event " + message[5:]
    return message[:300]
