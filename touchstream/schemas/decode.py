"""Decode and validate one inbound record: bytes in, a schema-valid event dict or PoisonEvent."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema
import orjson

from touchstream.errors import (
    InvalidJson,
    InvalidUtf8,
    SchemaViolation,
    TooLarge,
    UnknownType,
    UnsupportedVersion,
)

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


def schema_text(event_type: str, version: int = SCHEMA_VERSION) -> str:
    path = resources.files("touchstream.schemas").joinpath(f"events/v{version}/{event_type}.json")
    return path.read_text("utf-8")


@cache
def validator(event_type: str) -> Callable[[Any], Any]:
    return fastjsonschema.compile(orjson.loads(schema_text(event_type)))


def load_validators() -> None:
    """Compile every schema up front so a broken schema file stops start-up, not an event."""
    for event_type in EVENT_TYPES:
        validator(event_type)


def decode(raw: bytes | None, max_bytes: int) -> dict[str, Any]:
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
    try:
        validator(event_type)(event)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise SchemaViolation(_message(exc)) from None
    _reject_float_money(event["properties"])
    return event


INTEGER_FIELDS = ("points", "quantity")


def _reject_float_money(props: dict[str, Any]) -> None:
    # JSON Schema draft-07 counts 12.0 as an integer; money and counts must never be floats.
    for name, value in props.items():
        if isinstance(value, float) and (name.endswith("_minor") or name in INTEGER_FIELDS):
            raise SchemaViolation(f"properties.{name} must be an integer, got {value!r}")
    for i, item in enumerate(props.get("items") or ()):
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
