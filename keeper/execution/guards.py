"""The breaker and the daily budgets as the tick sees them: state in the journal, rules pure.

The journal holds the breaker, so a restart does not forget it was open, a second process on
the same journal honours it, and `keeper reset-breaker` can close it from outside.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

from keeper.execution import breaker, budgets
from keeper.execution.breaker import BreakerRules, BreakerState
from keeper.execution.budgets import BudgetCaps
from keeper.execution.journal import JournalStore, Spend
from keeper.log import get_logger
from keeper.metrics import KeeperMetrics

log = get_logger("keeper.guards")


class SendGuards:
    def __init__(
        self,
        store: JournalStore,
        scope: str,
        rules: BreakerRules,
        caps: BudgetCaps,
        metrics: KeeperMetrics,
        clock: Callable[[], float] = time.time,
        breaker_key: str | None = None,
    ) -> None:
        self.store = store
        self.scope = scope
        # The breaker counts one vault's failures: in a fleet, vaults sharing a key (one scope)
        # each have their own, so a vault on a dead contract cannot stop its neighbours.
        self.breaker_key = breaker_key or scope
        self.rules = rules
        self.caps = caps
        self.metrics = metrics
        self._clock = clock

    # ------------------------------------------------------------------ breaker

    def breaker(self) -> BreakerState:
        stored = BreakerState.from_dict(self.store.load_breaker(self.breaker_key))
        now_state = breaker.current(stored, self._clock(), self.rules)
        if now_state != stored:
            log.info("breaker_closed", detail="cool-down over; half-open: one more failure reopens it")
            self.store.save_breaker(self.breaker_key, now_state.as_dict())
        self.metrics.breaker_open.set(1 if now_state.open else 0)
        return now_state

    def record_tick(self, failed: bool) -> BreakerState:
        before = self.breaker()
        after = breaker.record_tick(before, failed, self._clock(), self.rules)
        if after != before:
            self.store.save_breaker(self.breaker_key, after.as_dict())
        if after.open and not before.open:
            log.error("breaker_opened", reason=after.reason, open_until=after.open_until)
        self.metrics.breaker_open.set(1 if after.open else 0)
        return after

    def trip(self, reason: str) -> BreakerState:
        before = self.breaker()
        after = breaker.trip(before, reason, self._clock(), self.rules)
        if after != before:
            self.store.save_breaker(self.breaker_key, after.as_dict())
            log.error("breaker_opened", reason=reason, open_until=after.open_until)
        self.metrics.breaker_open.set(1 if after.open else 0)
        return after

    # ------------------------------------------------------------------ budgets

    def spend_today(self) -> Spend:
        spend = self.store.spend_since(self.scope, budgets.day_start(self._clock()))
        for name, ratio in budgets.used_ratios(spend, self.caps).items():
            self.metrics.budget_used_ratio.labels(budget=name).set(ratio)
        return spend

    def check_budgets(self) -> str | None:
        """Trip the breaker when a daily budget is used up; returns the breached budget."""
        spent = self.spend_today()
        name = budgets.breached(spent, self.caps)
        if name is not None:
            self.trip(f"budget_{name}")
        return name

    def gas_problem(self, worst_wei: int, native_usd: Decimal | None) -> str | None:
        return budgets.gas_would_exceed(self.spend_today(), self.caps, worst_wei, native_usd)
