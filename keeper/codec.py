"""Plain data <-> JSON, exactly: the decision core's frozen dataclasses as stored records (pure).

A decision record keeps the inputs of a tick (snapshot, quotes, limits, parameters, policy
memory) so `keeper replay` can run the decision core on them again; this codec turns those
dataclasses into JSON and back by their type hints, losslessly: integers of any size stay
integers, Decimals travel as strings, floats as their shortest repr, enums by value, tuples
as lists. Only types the core uses are supported; anything else is an error, never a guess.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from functools import cache
from typing import Any, TypeVar, Union, get_args, get_origin

T = TypeVar("T")


class CodecError(ValueError):
    pass


def to_plain(value: Any) -> Any:
    """JSON-ready data (dicts, lists, str, int, float, bool, None) for `value`."""
    if value is None or isinstance(value, bool | int | float | str):
        return value.value if isinstance(value, Enum) else value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [to_plain(v) for v in value]
    raise CodecError(f"cannot store a {type(value).__name__}")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_plain(kind: Any, data: Any) -> Any:
    """The value of type `kind` that `to_plain` turned into `data`."""
    origin = get_origin(kind)
    if kind is Any:
        return data
    if origin in (Union, types.UnionType):
        options = get_args(kind)
        if data is None and type(None) in options:
            return None
        for option in (o for o in options if o is not type(None)):
            try:
                return from_plain(option, data)
            except (CodecError, TypeError, ValueError, KeyError):
                continue
        raise CodecError(f"{data!r} fits none of {kind}")
    if origin is tuple:
        args = get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_plain(args[0], v) for v in data)
        return tuple(from_plain(a, v) for a, v in zip(args, data, strict=True))
    if origin in (dict, Mapping) or kind in (dict, Mapping):
        key_t, value_t = get_args(kind) or (str, Any)
        return {from_plain(key_t, k): from_plain(value_t, v) for k, v in data.items()}
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        hints = _hints(kind)
        # A field missing from older data takes its default (records outlive releases).
        fields = {
            f.name: from_plain(hints[f.name], data[f.name])
            for f in dataclasses.fields(kind)
            if f.init and (f.name in data or not _has_default(f))
        }
        return kind(**fields)
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(data)
    if kind is Decimal:
        return Decimal(data)
    if kind is float:
        return float(data)
    if kind in (int, str, bool):
        if not isinstance(data, kind):
            raise CodecError(f"{data!r} is not a {kind.__name__}")
        return data
    if kind is type(None):
        if data is not None:
            raise CodecError(f"{data!r} is not None")
        return None
    raise CodecError(f"cannot read a {kind}")


def _has_default(f: dataclasses.Field[Any]) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def decode(kind: type[T], data: Any) -> T:
    value: T = from_plain(kind, data)
    return value
