"""The circuit breaker: after N consecutive failed ticks, or a breached daily budget, stop
sending (pure state transitions; the journal stores the state so every process on the same
journal, and `keeper reset-breaker`, see the same breaker).

Open, the keeper keeps reading, validating, planning and exporting metrics, and it still
drives a transaction already in flight to its end (rebroadcast, confirm, cancel): leaving a
signed nonce unresolved is the greater risk. It only stops starting new rebalances.
After the cool-down it closes half-open: one more failure opens it again at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class BreakerRules:
    max_failures: int
    cooldown_s: float


@dataclass(frozen=True, slots=True)
class BreakerState:
    open: bool = False
    reason: str | None = None
    opened_at: float | None = None
    open_until: float | None = None
    consecutive_failures: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> BreakerState:
        if not data:
            return cls()
        return cls(
            open=bool(data.get("open")),
            reason=data.get("reason"),
            opened_at=data.get("opened_at"),
            open_until=data.get("open_until"),
            consecutive_failures=int(data.get("consecutive_failures", 0)),
        )


def current(state: BreakerState, now: float, rules: BreakerRules) -> BreakerState:
    """The state at `now`: an open breaker whose cool-down has passed closes half-open."""
    if state.open and state.open_until is not None and now >= state.open_until:
        return BreakerState(open=False, consecutive_failures=max(rules.max_failures - 1, 0))
    return state


def trip(state: BreakerState, reason: str, now: float, rules: BreakerRules) -> BreakerState:
    if state.open:
        return state
    return replace(state, open=True, reason=reason, opened_at=now, open_until=now + rules.cooldown_s)


def record_tick(state: BreakerState, failed: bool, now: float, rules: BreakerRules) -> BreakerState:
    """Count a tick: a success clears the count, the Nth failure in a row opens the breaker."""
    state = current(state, now, rules)
    if not failed:
        return state if state.open else replace(state, consecutive_failures=0)
    failures = state.consecutive_failures + 1
    state = replace(state, consecutive_failures=failures)
    if failures >= rules.max_failures:
        return trip(state, f"{failures} consecutive failed ticks", now, rules)
    return state


def reset() -> BreakerState:
    return BreakerState()
