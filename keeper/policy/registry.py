"""Build a policy from plain config: {"kind": "threshold", ...} -> Policy.

Each policy module registers its own pydantic config class with `@register_policy("kind")`;
adding a kind means adding a module (and importing it), nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from keeper.policy.base import Policy


class PolicyConfig(BaseModel):
    """Base of every policy config model; subclasses add `kind: Literal[...]` and fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def build(self) -> Policy[Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement build()")


C = TypeVar("C", bound=type[PolicyConfig])

_KINDS: dict[str, type[PolicyConfig]] = {}


def register_policy(kind: str) -> Callable[[C], C]:
    def register(cls: C) -> C:
        if kind in _KINDS and _KINDS[kind] is not cls:
            raise ValueError(f"policy kind {kind!r} is already registered by {_KINDS[kind].__name__}")
        _KINDS[kind] = cls
        return cls

    return register


def registered_kinds() -> tuple[str, ...]:
    return tuple(sorted(_KINDS))


def parse_policy_config(raw: Mapping[str, object] | PolicyConfig) -> PolicyConfig:
    """Validate a config dict into its kind's model (pydantic's error says which field is wrong)."""
    if isinstance(raw, PolicyConfig):
        return raw
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ValueError(f"unknown policy kind {kind!r}; set 'kind' to one of {list(registered_kinds())}")
    return _KINDS[kind].model_validate(dict(raw))


def build_policy(raw: Mapping[str, object] | PolicyConfig) -> Policy[Any]:
    return parse_policy_config(raw).build()
