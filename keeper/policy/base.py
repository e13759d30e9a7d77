"""What every policy sees and returns, and the guards they all share (pure).

A policy is a pure function of (context, memory) -> (decision, new memory). Memory is the
policy's own frozen state (last calendar check, a volatility estimate...), carried by the
caller between ticks: the daemon keeps it in process, the backtester in its loop, so the
same policy object runs in both without hidden state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from keeper.costs import CostView
from keeper.model import Snapshot, ValidPrice
from keeper.portfolio import PortfolioState, portfolio_state

M = TypeVar("M")


class DecisionCode(StrEnum):
    """Codes of the core policies; new policies may use their own strings."""

    COOLDOWN = "cooldown"
    EMPTY_VAULT = "empty_vault"
    ON_TARGET = "on_target"
    CALENDAR_DUE = "calendar_due"
    CALENDAR_NOT_DUE = "calendar_not_due"
    BAND_BREACH = "band_breach"
    TOTAL_DRIFT_BREACH = "total_drift_breach"
    WITHIN_BANDS = "within_bands"
    COST_OVER_BUDGET = "cost_over_budget"
    CHECK_NOT_DUE = "check_not_due"
    OVERDUE = "overdue"


@dataclass(frozen=True, slots=True)
class PolicyContext(Generic[M]):
    """Inputs of one decision. `portfolio.targets_bps` are the vault's configured targets."""

    now_s: int
    last_rebalance_s: int  # the vault's lastRebalance(); 0 if it never rebalanced
    cooldown_s: int
    portfolio: PortfolioState
    memory: M
    # Oracle prices (USD per token) for policies that keep statistics in memory (volatility).
    prices_usd: Mapping[str, Decimal] = field(default_factory=dict)
    # The one cost model at this tick (keeper/costs.py), for policies that size trades by cost.
    costs: CostView | None = None

    @property
    def ready_at_s(self) -> int:
        return self.last_rebalance_s + self.cooldown_s

    @property
    def in_cooldown(self) -> bool:
        # As the vault: a vault that never rebalanced (lastRebalance == 0) has no cooldown.
        return self.last_rebalance_s != 0 and self.now_s < self.ready_at_s

    @property
    def config_targets_bps(self) -> dict[str, int]:
        return dict(zip(self.portfolio.symbols, self.portfolio.targets_bps, strict=True))


@dataclass(frozen=True, slots=True)
class PolicyDecision(Generic[M]):
    """`target_weights_bps` is what the planner trades to (sums to 10000).

    The core policies return the configured targets; adaptive or cost-aware policies may
    return intermediate weights, which is why the planner takes them from here, not config.
    """

    should_rebalance: bool
    code: str
    message: str
    target_weights_bps: Mapping[str, int]
    memory: M


def context_for(
    snapshot: Snapshot, prices: Mapping[str, ValidPrice], memory: M, costs: CostView | None = None
) -> PolicyContext[M]:
    """The context of one tick: block time as now (the vault judges cooldown by it).

    Needs a valid price for every asset (KeyError otherwise): with a rejected price the vault
    cannot value itself, so there is nothing for a policy to decide.
    """
    return PolicyContext(
        now_s=snapshot.timestamp,
        last_rebalance_s=snapshot.last_rebalance_ts,
        cooldown_s=snapshot.limits.cooldown_s,
        portfolio=portfolio_state(snapshot.assets, prices),
        memory=memory,
        prices_usd={s: p.usd for s, p in prices.items()},
        costs=costs,
    )


class Policy(Protocol[M]):
    def initial_memory(self) -> M: ...

    def decide(self, ctx: PolicyContext[M]) -> PolicyDecision[M]: ...


class QuietSteps(Protocol):
    """The next steps of a backtest at fixed balances (keeper/backtest/fast.py), for a policy's
    optional screen `quiet_steps(view, memory, last_rebalance_s) -> (count, code)`: how many of
    them are certainly a "no" with `code` that leaves the memory unchanged. A screen may answer
    too few (the exact `decide` then runs), never too many. (A policy whose memory moves on a
    "no" answers `quiet_run(view, memory, last_rebalance_s) -> (count, code, memory after)`;
    the adaptive policy's is the backtester's own, keeper/backtest/vol_screen.py.)"""

    @property
    def assets(self) -> Sequence[tuple[str, int]]:
        """(symbol, target_bps) of each asset, in vault order."""
        ...

    def __len__(self) -> int: ...

    def value_usd_max(self) -> float:
        """The vault's largest value over these steps (USD, float: screens only)."""
        ...

    def cost_floor(self) -> CostView | None:
        """The cost model at these steps' cheapest gas (lowest base fee, lowest native price)."""
        ...

    def first_near_band(self, bands_bps: Sequence[float], total_drift_bps: float | None = None) -> int: ...

    def first_at_or_after(self, time_s: float) -> int: ...

    def now_s(self) -> int:
        """The current step's block time."""
        ...


def decision(ctx: PolicyContext[M], should: bool, code: str, message: str, memory: M) -> PolicyDecision[M]:
    """A decision towards the configured targets."""
    return PolicyDecision(should, code, message, ctx.config_targets_bps, memory)


def empty_vault(ctx: PolicyContext[M]) -> PolicyDecision[M] | None:
    if ctx.portfolio.is_empty:
        return decision(
            ctx, False, DecisionCode.EMPTY_VAULT, "vault holds no value; nothing to rebalance", ctx.memory
        )
    return None


def honour_cooldown(ctx: PolicyContext[M], wanted: PolicyDecision[M]) -> PolicyDecision[M]:
    """Turn a trigger inside the vault's cooldown into a no, keeping the input memory.

    Memory is not advanced, so whatever triggered is re-evaluated on the first tick after
    the cooldown instead of being consumed by a run the vault would have rejected.
    """
    if not wanted.should_rebalance or not ctx.in_cooldown:
        return wanted
    left_s = ctx.ready_at_s - ctx.now_s
    return PolicyDecision(
        False,
        DecisionCode.COOLDOWN,
        f"{wanted.message}; but the vault cooldown runs until {ctx.ready_at_s} ({left_s}s left)",
        wanted.target_weights_bps,
        ctx.memory,
    )
