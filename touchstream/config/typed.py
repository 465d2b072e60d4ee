"""Build frozen dataclasses from untyped mappings (TOML, env), naming the key on any error."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from touchstream.errors import ConfigError

T = TypeVar("T")


def build(cls: type[T], data: Any, path: str) -> T:
    """Construct ``cls`` from ``data``; unknown keys and wrong types raise ConfigError(path)."""
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a table, got {_kind(data)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}", "unknown key (check the spelling)")
    kwargs: dict[str, Any] = {}
    for name in fields:
        if name in data:
            kwargs[name] = convert(hints[name], data[name], f"{path}.{name}")
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # a required key is missing
        missing = [n for n, f in fields.items() if n not in data and _required(f)]
        key = f"{path}.{missing[0]}" if missing else path
        raise ConfigError(key, "is required") from exc
    check = getattr(obj, "check", None)
    if check is not None:
        check(path)
    return obj


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def convert(tp: Any, value: Any, path: str) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return convert(inner[0], value, path)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, path)  # type: ignore[arg-type]
    if origin is list or origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(path, f"expected a list, got {_kind(value)}")
        (item,) = get_args(tp)[:1]
        return tuple(convert(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a table, got {_kind(value)}")
        _, vt = get_args(tp)
        return {str(k): convert(vt, v, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected true or false, got {_kind(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected an integer, got {_kind(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"expected a number, got {_kind(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a string, got {_kind(value)}")
        return value
    raise ConfigError(path, f"unsupported setting type {tp!r}")  # pragma: no cover


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]
