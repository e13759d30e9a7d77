"""Check the bands only on a calendar, and force a run when the vault is overdue.

Checking on a calendar (say daily) instead of every tick stops a portfolio sitting on its
band edge from trading on every wiggle; the overdue rule bounds how long any drift lasts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, PositiveInt

from keeper.policy.base import (
    DecisionCode,
    PolicyContext,
    PolicyDecision,
    QuietSteps,
    decision,
    empty_vault,
    honour_cooldown,
)
from keeper.policy.registry import register_policy
from keeper.policy.threshold import BandFields, ThresholdPolicy


@dataclass(frozen=True, slots=True)
class HybridMemory:
    last_check_s: int | None = None


@dataclass(frozen=True, slots=True)
class HybridPolicy:
    check_period_s: int
    threshold: ThresholdPolicy
    max_interval_s: int | None = None

    def initial_memory(self) -> HybridMemory:
        return HybridMemory()

    def quiet_run(
        self, view: QuietSteps, memory: HybridMemory, last_rebalance_s: int
    ) -> tuple[int, str, HybridMemory]:
        """Backtest screen (a vault that holds value): the steps before the next band check and
        before the vault is overdue are "check_not_due"; a band check that certainly finds
        every asset inside its band is one "within_bands" step that records the check."""
        overdue_at = None if self.max_interval_s is None else last_rebalance_s + self.max_interval_s
        if memory.last_check_s is not None:
            until = memory.last_check_s + self.check_period_s
            if overdue_at is not None:
                until = min(until, overdue_at)
            count = view.first_at_or_after(until)
            if count > 0:
                return count, DecisionCode.CHECK_NOT_DUE, memory
        now_s = view.now_s()
        if overdue_at is not None and now_s >= overdue_at:
            return 0, DecisionCode.OVERDUE, memory  # overdue (or on target): decided exactly
        t = self.threshold
        if view.first_near_band(t.screen_bands(view.assets), t.total_drift_bps) > 0:
            return 1, DecisionCode.WITHIN_BANDS, HybridMemory(last_check_s=now_s)
        return 0, DecisionCode.WITHIN_BANDS, memory

    def decide(self, ctx: PolicyContext[HybridMemory]) -> PolicyDecision[HybridMemory]:
        if (empty := empty_vault(ctx)) is not None:
            return empty
        checked = HybridMemory(last_check_s=ctx.now_s)
        since_s = ctx.now_s - ctx.last_rebalance_s
        drift = ctx.portfolio.drift_bps
        # "Drift > 0" in the vault's own integer bps: sub-bps residue is not worth a transaction.
        if self.max_interval_s is not None and since_s >= self.max_interval_s and drift > 0:
            wanted = decision(
                ctx,
                True,
                DecisionCode.OVERDUE,
                f"overdue: no rebalance for {since_s}s (max {self.max_interval_s}s), drift {drift} bps",
                checked,
            )
            return honour_cooldown(ctx, wanted)
        last = ctx.memory.last_check_s
        if last is not None and ctx.now_s < last + self.check_period_s:
            next_s = last + self.check_period_s
            return decision(
                ctx, False, DecisionCode.CHECK_NOT_DUE, f"next band check at {next_s}", ctx.memory
            )
        should, code, message = self.threshold.evaluate(ctx.portfolio)
        return honour_cooldown(ctx, decision(ctx, should, code, message, checked))


@register_policy("hybrid")
class HybridConfig(BandFields):
    kind: Literal["hybrid"] = "hybrid"
    check_period_s: PositiveInt
    max_interval_s: PositiveInt | None = Field(default=None)

    def build(self) -> HybridPolicy:
        return HybridPolicy(
            check_period_s=self.check_period_s,
            threshold=self.threshold(),
            max_interval_s=self.max_interval_s,
        )
