"""No silent stall: a vault that is due but not rebalanced, tick after tick, is a failure.

A tick that skips is a success for /healthz and the breaker: most skips are the keeper doing
its job (inside the bands, cooldown, cost too high for now). But when the policy says
"rebalance" and the tick still ends without a transaction, again and again (a drained pool,
a leg that reverts, a gate that never opens), nothing else notices for a long time. So the
ticks in a row that were due and ended without a rebalance are counted; from `limit` on each
such tick counts toward the circuit breaker, /healthz answers degraded with the reason, and
`keeper_rebalance_stalled` (alert KeeperRebalanceStalled) is 1.

What does not count either way: a tick that ends in an error (an RPC outage already counts
toward the breaker by itself, and a node's malformed answer deliberately does not), a dry
run, a paused keeper, an observer that does not hold the lease. A rebalance or a transaction in flight ends the stall; so does the
policy saying the vault is not due.
"""

from __future__ import annotations

from typing import Any

# Reasons that are a choice or another process's job, not this keeper failing to rebalance.
NOT_A_STALL = frozenset({"paused", "no_key", "dry_run", "lease_held_elsewhere", "not_keeper"})
# Skip reasons of legs that an operator needs to see every tick (the rest are dust etc.).
REPORTED_SKIPS = frozenset(
    {"leg_unfillable", "simulation_revert", "quote_deviation", "not_pinned", "no_route"}
)


class StallTracker:
    """Counts consecutive due ticks that ended without a rebalance (state between ticks)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.degraded_reason: str | None = None
        self._due: bool | None = None  # this tick's policy answer; None: not reached

    def start_tick(self) -> None:
        self._due = None

    def observe_policy(self, should_rebalance: bool) -> None:
        self._due = should_rebalance

    def end_tick(self, result: str, reason: str, message: str) -> bool:
        """Update the count with this tick's end; True when the vault is stalled (count >= limit)."""
        if result in ("rebalanced", "pending") or self._due is False:
            self.count = 0
        elif self._due and result in ("skipped", "reverted") and reason not in NOT_A_STALL:
            self.count += 1
        stalled = self.count >= self.limit
        if stalled:
            self.degraded_reason = (
                f"rebalance due but not done for {self.count} ticks in a row "
                f"(limit KEEPER_STALL_TICKS={self.limit}); last: {reason}: {message}"
            )
        elif self.count == 0:
            self.degraded_reason = None
        return stalled


def dropped_assets(plan: dict[str, Any] | None) -> list[str]:
    """The plan's skipped legs an operator must see, as "WETH->LINK: leg_unfillable", for the tick log."""
    if not plan:
        return []
    return [
        f"{s['symbol_in']}->{s['symbol_out']}: {s['reason']}"
        for s in plan.get("skipped", [])
        if s.get("reason") in REPORTED_SKIPS
    ]
