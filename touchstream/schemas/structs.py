"""msgspec Structs generated from the published event schemas (schemas/events/v1/*.json): the
fast check of ``schemas.decode``.

The JSON Schemas stay the contract. Each event type's Struct is built from its schema file
(``decode.load_validators`` builds them all at start-up), so the two cannot drift apart; a schema
keyword this generator does not translate stops start-up (``UntranslatableSchema``) rather
than being silently ignored. The Structs are only
ever allowed to be stricter than the schema, never more lenient: ``decode`` accepts an event the
Struct accepts, and asks the schema itself (fastjsonschema) about every other one, so the
schema decides every refusal and writes its message. tests/unit/schemas/test_decode_differential.py
fuzzes the two against each other.

What the Struct refuses and the schema accepts (so such an event takes the slower path, with the
same outcome): a float without fractional part where the schema says ``integer`` (draft-07
counts 12.0 as an integer; ``decode`` then refuses it in money and count fields anyway),
which includes an integer outside -2**63 .. 2**64 - 1 in the record: orjson reads it as a float.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal, Union

import msgspec
import orjson

# keywords that document, not constrain
_ANNOTATIONS = frozenset({"description", "title", "$schema", "$id", "examples"})


class UntranslatableSchema(Exception):
    """A schema uses a keyword or a shape the Struct generator does not translate."""


def _pattern(pattern: str, where: str) -> str:
    """JSON Schema's "$" matches only at the very end (ECMA 262), Python's also before a final
    newline: fastjsonschema rewrites an unescaped "$" as "\\Z" for that reason, and so does this
    (msgspec, like fastjsonschema, looks for the pattern with ``re.search``)."""
    if pattern.count("$") != 1 or not pattern.endswith("$") or pattern.endswith("\\$"):
        raise UntranslatableSchema(f"{where}: pattern {pattern!r} (only a final $ is handled)")
    return pattern[:-1] + r"\Z"


def _scalar(kind: str, node: dict[str, Any], where: str) -> Any:
    meta: dict[str, Any] = {}
    if kind == "string":
        base: Any = str
        if "minLength" in node:
            meta["min_length"] = node["minLength"]
        if "maxLength" in node:
            meta["max_length"] = node["maxLength"]
        if "pattern" in node:
            meta["pattern"] = _pattern(node["pattern"], where)
    elif kind == "integer":
        base = int
        if "minimum" in node:
            meta["ge"] = node["minimum"]
        if "maximum" in node:
            meta["le"] = node["maximum"]
    elif kind == "boolean":
        base = bool
    else:
        raise UntranslatableSchema(f"{where}: type {kind!r}")
    return Annotated[base, msgspec.Meta(**meta)] if meta else base


_SCALAR_KEYWORDS = {
    "string": {"minLength", "maxLength", "pattern"},
    "integer": {"minimum", "maximum"},
    "boolean": set(),
}


def _type(node: dict[str, Any], where: str, structs: list[str]) -> Any:
    keys = set(node) - _ANNOTATIONS
    if "const" in node or "enum" in node:
        values = [node["const"]] if "const" in node else node["enum"]
        value_types = {type(v) for v in values}  # bool is not int here: a boolean is refused
        if keys - {"const", "enum", "type"} or value_types - {str, int}:
            raise UntranslatableSchema(f"{where}: const/enum of strings or integers only")
        named = "string" if value_types == {str} else "integer"
        if node.get("type", named) != named:
            raise UntranslatableSchema(f"{where}: const/enum of type {node.get('type')!r}")
        return Literal[tuple(values)]
    kinds: Any = node.get("type")
    if isinstance(kinds, list):
        allowed = set().union(*(_SCALAR_KEYWORDS.get(k, {"?"}) for k in kinds))
        if keys - {"type"} - allowed:
            raise UntranslatableSchema(f"{where}: keywords {sorted(keys - {'type'} - allowed)}")
        return Union[tuple(_scalar(k, node, where) for k in kinds)]  # noqa: UP007
    if kinds == "object":
        return _object(node, where, structs)
    if kinds == "array":
        if keys - {"type", "items", "maxItems"} or not isinstance(node.get("items"), dict):
            raise UntranslatableSchema(f"{where}: array keywords {sorted(keys)}")
        item = _type(node["items"], f"{where}[]", structs)
        if "maxItems" in node:
            return Annotated[list[item], msgspec.Meta(max_length=node["maxItems"])]  # type: ignore[valid-type]
        return list[item]  # type: ignore[valid-type]
    if kinds in _SCALAR_KEYWORDS:
        if keys - {"type"} - _SCALAR_KEYWORDS[kinds]:
            raise UntranslatableSchema(f"{where}: keywords {sorted(keys)}")
        return _scalar(kinds, node, where)
    raise UntranslatableSchema(f"{where}: type {kinds!r}")


def _object(node: dict[str, Any], where: str, structs: list[str]) -> Any:
    keys = set(node) - _ANNOTATIONS
    extra = keys - {"type", "properties", "required", "additionalProperties", "minProperties"}
    if extra:
        raise UntranslatableSchema(f"{where}: object keywords {sorted(extra)}")
    additional = node.get("additionalProperties", True)
    if additional not in (True, False):
        raise UntranslatableSchema(f"{where}: additionalProperties must be true or false")
    properties = node.get("properties", {})
    required = node.get("required", [])
    if not properties and not required and additional:
        if "minProperties" in node:
            raise UntranslatableSchema(f"{where}: minProperties of a free-form object")
        return dict[str, Any]
    # msgspec has no minProperties: the Struct refuses an object with fewer fields set, which
    # counts its keys only when it has no others
    if "minProperties" in node and additional:
        raise UntranslatableSchema(f"{where}: minProperties needs additionalProperties false")
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    rename: dict[str, str] = {}
    for i, (name, sub) in enumerate(properties.items()):
        attr = f"f{i}"  # any JSON key works, keywords and non-identifiers included
        rename[attr] = name
        kind = _type(sub, f"{where}.{name}", structs)
        if name in required:
            fields.append((attr, kind))
        else:
            fields.append((attr, kind | msgspec.UnsetType, msgspec.UNSET))
    if set(required) - set(properties):
        raise UntranslatableSchema(f"{where}: required fields the schema does not describe")
    # required fields first: a Struct's fields without a default come before those with one
    fields.sort(key=len)
    namespace: dict[str, Any] = {}
    least = node.get("minProperties", 0)
    if least:
        names = tuple(attr for attr, *_ in fields)

        def __post_init__(self: Any) -> None:
            if sum(getattr(self, a) is not msgspec.UNSET for a in names) < least:
                raise ValueError(f"Object must have at least {least} properties")

        namespace["__post_init__"] = __post_init__
    structs.append(where)
    return msgspec.defstruct(
        f"S{len(structs)}",
        fields,
        rename=rename,
        forbid_unknown_fields=not additional,
        namespace=namespace,
    )


def struct_for_schema(schema: dict[str, Any], name: str = "event") -> Any:
    """The msgspec type equivalent to (or stricter than) ``schema``; UntranslatableSchema if
    the schema uses anything this module does not translate."""
    if schema.get("type") != "object":
        raise UntranslatableSchema(f"{name}: an event schema describes an object")
    return _type(schema, name, [])


@cache
def struct(event_type: str, version: int = 1) -> Any:
    """The Struct of ``event_type``, generated from its schema file (decode.schema_text)."""
    path = resources.files("touchstream.schemas").joinpath(f"events/v{version}/{event_type}.json")
    return struct_for_schema(orjson.loads(path.read_text("utf-8")), event_type)


@cache
def checker(event_type: str) -> Callable[[Any], Any]:
    """Raises msgspec.ValidationError unless the Struct of ``event_type`` accepts the event."""
    kind = struct(event_type)

    def check(event: Any) -> Any:
        return msgspec.convert(event, kind)

    return check
