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
from keeper.execution.budgets import BudgetCaps, SpendToday
from keeper.execution.journal import JournalStore
from keeper.log import get_logger
from keeper.metrics import VaultMetrics

log = get_logger("keeper.guards")


class SendGuards:
    def __init__(
        self,
        store: JournalStore,
        scope: str,
        rules: BreakerRules,
        caps: BudgetCaps,
        metrics: VaultMetrics,
        clock: Callable[[], float] = time.time,
        breaker_key: str | None = None,
        vault: str | None = None,
        key_caps: BudgetCaps | None = None,
    ) -> None:
        self.store = store
        self.scope = scope
        # The breaker counts one vault's failures: in a fleet, vaults sharing a key (one scope)
        # each have their own, so a vault on a dead contract cannot stop its neighbours.
        self.breaker_key = breaker_key or scope
        self.rules = rules
        # Budgets: `caps` bound this vault's own spend (its intents: those sent to `vault`),
        # `key_caps` the scope's (every vault on this key and chain). None: one vault, one key,
        # so the same caps bound both (the environment configuration).
        self.caps = caps
        self.vault = vault
        self.key_caps = caps if key_caps is None else key_caps
        self.one_key = key_caps is None
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

    def spend_today(self) -> SpendToday:
        since = budgets.day_start(self._clock())
        key = self.store.spend_since(self.scope, since)
        mine = key if self.vault is None else self.store.spend_since(self.scope, since, vault=self.vault)
        spent = SpendToday(vault=mine, key=key)
        for name, ratio in budgets.used_ratios_both(spent, self.caps, self.key_caps).items():
            self.metrics.budget_used_ratio.labels(budget=name).set(ratio)
        return spent

    def check_budgets(self) -> str | None:
        """Trip this vault's breaker when its own or its key's daily budget is used up; returns
        the breached budget ('gas', 'slippage', 'key_gas', 'key_slippage')."""
        spent = self.spend_today()
        if self.one_key:
            # One vault, one key: the scope's spend (a superset of the vault's) against the
            # same caps, and the reasons a single keeper has always given.
            name = budgets.breached(spent.key, self.caps)
        else:
            name = budgets.breached_either(spent, self.caps, self.key_caps)
        if name is not None:
            self.trip(f"budget_{name}")
        return name

    def gas_problem(self, worst_wei: int, native_usd: Decimal | None) -> str | None:
        spent = self.spend_today()
        if self.one_key:
            return budgets.gas_would_exceed(spent.key, self.caps, worst_wei, native_usd)
        return budgets.gas_would_exceed_either(spent, self.caps, self.key_caps, worst_wei, native_usd)
