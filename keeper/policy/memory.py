"""A policy's memory as stored data and back (pure): what `keeper.records` persists."""

from __future__ import annotations

from typing import Any

from keeper.codec import from_plain, to_plain
from keeper.policy.base import Policy


def memory_to_plain(memory: Any) -> Any:
    return to_plain(memory)


def memory_from_plain(policy: Policy[Any], data: Any) -> Any:
    """The memory `policy` keeps, read back from `memory_to_plain`'s data."""
    initial = policy.initial_memory()
    if initial is None or data is None:
        return initial
    return from_plain(type(initial), data)
