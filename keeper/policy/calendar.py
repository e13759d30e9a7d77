"""Rebalance every `period_s` seconds, counted from the later of the vault's last rebalance
and this policy's last trigger (so a run that traded nothing does not fire every tick)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import PositiveInt

from keeper.policy.base import (
    DecisionCode,
    PolicyContext,
    PolicyDecision,
    QuietSteps,
    decision,
    empty_vault,
    honour_cooldown,
)
from keeper.policy.registry import PolicyConfig, register_policy


@dataclass(frozen=True, slots=True)
class CalendarMemory:
    last_fired_s: int | None = None


@dataclass(frozen=True, slots=True)
class CalendarPolicy:
    period_s: int

    def initial_memory(self) -> CalendarMemory:
        return CalendarMemory()

    def due_at_s(self, ctx: PolicyContext[CalendarMemory]) -> int:
        return self._due_at_s(ctx.memory, ctx.last_rebalance_s)

    def _due_at_s(self, memory: CalendarMemory, last_rebalance_s: int) -> int:
        fired = memory.last_fired_s
        anchor = last_rebalance_s if fired is None else max(fired, last_rebalance_s)
        return anchor + self.period_s

    def quiet_steps(self, view: QuietSteps, memory: CalendarMemory, last_rebalance_s: int) -> tuple[int, str]:
        """Backtest screen (a vault that holds value): steps before the due time are not due."""
        return view.first_at_or_after(self._due_at_s(memory, last_rebalance_s)), DecisionCode.CALENDAR_NOT_DUE

    def decide(self, ctx: PolicyContext[CalendarMemory]) -> PolicyDecision[CalendarMemory]:
        if (empty := empty_vault(ctx)) is not None:
            return empty
        due_at = self.due_at_s(ctx)
        if ctx.now_s < due_at:
            return decision(
                ctx,
                False,
                DecisionCode.CALENDAR_NOT_DUE,
                f"calendar: next run at {due_at} ({due_at - ctx.now_s}s)",
                ctx.memory,
            )
        fired = CalendarMemory(last_fired_s=ctx.now_s)
        if ctx.portfolio.on_target:
            # The period is consumed: a portfolio exactly on target needs no transaction.
            return decision(ctx, False, DecisionCode.ON_TARGET, "calendar due but already on target", fired)
        wanted = decision(
            ctx,
            True,
            DecisionCode.CALENDAR_DUE,
            f"calendar: {self.period_s}s period elapsed (due at {due_at}); drift {ctx.portfolio.drift_bps} bps",
            fired,
        )
        return honour_cooldown(ctx, wanted)


@register_policy("calendar")
class CalendarConfig(PolicyConfig):
    kind: Literal["calendar"] = "calendar"
    period_s: PositiveInt

    def build(self) -> CalendarPolicy:
        return CalendarPolicy(period_s=self.period_s)
